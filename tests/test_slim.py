"""SLIM: the numba coordinate descent against scikit-learn's ElasticNet, the skip rules, and recommend."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from cf_data import block_matrix

from audience.models import SLIM

# Both solvers run to tol=1e-10 (relative weight change; sklearn also checks its duality gap), so they reach
# the same unique optimum (l1_ratio < 1 makes it strictly convex); weights are stored as float32.
ATOL_W = 1e-4
TIGHT = {"tol": 1e-10, "max_iter": 100_000}


@pytest.mark.parametrize(("alpha", "l1_ratio"), [(2e-3, 0.5), (0.02, 0.5), (0.01, 0.9)])
def test_numba_matches_sklearn(alpha, l1_ratio):
    X, _ = block_matrix(n_users=300, n_items=50, seed=1)
    ref = SLIM(alpha=alpha, l1_ratio=l1_ratio, backend="sklearn", n_jobs=2, **TIGHT).fit(X)
    ours = SLIM(alpha=alpha, l1_ratio=l1_ratio, backend="numba", **TIGHT).fit(X)
    assert ours.threshold_ == pytest.approx(300 * alpha * l1_ratio)  # the exact skip threshold
    W_ref, W = ref.item_item.toarray(), ours.item_item.toarray()
    assert W_ref.max() > 0.01  # a non-trivial solution
    assert np.abs(W - W_ref).max() < ATOL_W
    # the skip rule dropped coordinates, exactly: numba skipped every pair below the threshold, sklearn none
    G = (X.T @ X).toarray()
    np.fill_diagonal(G, np.inf)
    below = G < ours.threshold_
    assert below.any()
    assert (W_ref[below] == 0).all()


def test_weights_nonnegative_zero_diagonal_and_sparse():
    X, _ = block_matrix(seed=2)
    model = SLIM(alpha=5e-3, l1_ratio=0.5).fit(X)
    W = model.item_item
    assert isinstance(W, sp.csr_matrix) and W.dtype == np.float32
    assert (W.data > 0).all()
    assert (W.diagonal() == 0).all()
    assert 0 < W.nnz < 0.5 * W.shape[0] ** 2
    assert model.n_sweeps.max() < model.max_iter


def test_larger_threshold_skips_pairs_and_rare_targets():
    X, _ = block_matrix(seed=3)
    dense = X.toarray()
    dense[200:, 110:] = 0  # ten rare clips (about 20 interactions each)
    X = sp.csr_matrix(dense)
    lam = 40.0
    model = SLIM(alpha=1e-3, l1_ratio=0.5, min_cooccurrence=lam).fit(X)
    W = model.item_item.toarray()
    G = (X.T @ X).toarray()
    assert (W[G < lam] == 0).all()  # rule (i): no weight on pairs co-occurring fewer than lam times
    counts = np.diff(X.tocsc().indptr)
    rare = counts < lam
    assert rare.any()
    assert (W[:, rare] == 0).all()  # rule (ii): rare target clips get an all-zero column
    exact = SLIM(alpha=1e-3, l1_ratio=0.5).fit(X).item_item
    assert model.item_item.nnz < exact.nnz  # an approximation that keeps fewer weights


def test_max_items():
    X, _ = block_matrix(n_users=300, n_items=60, seed=4)
    model = SLIM(alpha=2e-3, max_items=20).fit(X)
    assert model.item_item.shape == (20, 20)
    counts = np.diff(X.tocsc().indptr)
    assert counts[model.scored_items].min() >= np.delete(counts, model.scored_items).max()
    ids, _ = model.recommend(np.arange(300), X, 30)
    assert np.isin(ids[ids >= 0], model.scored_items).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        SLIM(backend="torch")
    with pytest.raises(ValueError):
        SLIM(alpha=0.0)
