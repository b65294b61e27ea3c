"""EASE: the closed form against a direct float64 inverse, max_items, and the shared recommend contract."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from cf_data import block_matrix

from audience.models import EASE

# B from the Cholesky route (float64 solve, float32 storage) vs np.linalg.inv in float64: the float32 cast
# alone is ~1e-8 relative; allow 1e-6 absolute on entries of order 0.01-1.
ATOL_B = 1e-6


def direct_b(X: sp.csr_matrix, items: np.ndarray, lam: float) -> np.ndarray:
    G = (X.T @ X).toarray().astype(np.float64)[np.ix_(items, items)]
    P = np.linalg.inv(G + lam * np.eye(items.size))
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


@pytest.mark.parametrize("method", ["cholesky", "inv"])
def test_matches_direct_inverse(method):
    X, _ = block_matrix(n_users=200, n_items=40, seed=1)
    X.data = np.random.default_rng(2).uniform(0.5, 2.0, X.nnz).astype(np.float32)  # non-binary values too
    model = EASE(regularization=3.0, max_items=None, method=method).fit(X)
    assert model.item_item.dtype == np.float32
    assert model.item_item.shape == (40, 40)
    np.testing.assert_array_equal(np.diag(model.item_item), 0.0)
    np.testing.assert_allclose(model.item_item, direct_b(X, model.scored_items, 3.0), rtol=0, atol=ATOL_B)


def test_float32_factorisation():
    X, _ = block_matrix(n_users=200, n_items=40, seed=1)
    model = EASE(regularization=3.0, max_items=None, dtype=np.float32).fit(X)
    # single-precision potrf/potri: ~1e-7 relative error times the condition number (small here)
    np.testing.assert_allclose(model.item_item, direct_b(X, model.scored_items, 3.0), rtol=0, atol=1e-4)


def test_max_items_keeps_the_most_popular():
    X, _ = block_matrix(n_users=300, n_items=60, seed=3)
    counts = np.diff(X.tocsc().indptr)
    model = EASE(regularization=5.0, max_items=25).fit(X)
    kept = model.scored_items
    assert kept.size == 25 and np.all(np.diff(kept) > 0)
    assert counts[kept].min() >= np.delete(counts, kept).max()
    np.testing.assert_allclose(model.item_item, direct_b(X, kept, 5.0), rtol=0, atol=ATOL_B)
    ids, _ = model.recommend(np.arange(300), X, 40)
    assert np.isin(ids[ids >= 0], kept).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        EASE(method="lu")
