"""Interaction matrices shared by the CF model tests (a helper module, not a test file)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def block_matrix(n_users=600, n_items=120, n_groups=6, p_in=0.5, p_out=0.02, seed=0):
    """Users and clips in groups; a user takes each clip of their group with p_in, others with p_out.
    User 0 has every clip of group 0 except clip 0 (held out, returned separately)."""
    rng = np.random.default_rng(seed)
    ug = rng.integers(0, n_groups, n_users)
    ig = np.arange(n_items) % n_groups
    dense = rng.random((n_users, n_items)) < np.where(ug[:, None] == ig[None, :], p_in, p_out)
    dense[0] = ig == 0
    dense[0, 0] = False
    return sp.csr_matrix(dense.astype(np.float32)), 0
