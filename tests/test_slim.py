"""SLIM: the numba coordinate descent against scikit-learn's ElasticNet, the skip rules, and recommend."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from audience.models import SLIM

# Both solvers run to tol=1e-10 (relative weight change; sklearn also checks its duality gap), so they reach
# the same unique optimum (l1_ratio < 1 makes it strictly convex); weights are stored as float32.
ATOL_W = 1e-4
TIGHT = {"tol": 1e-10, "max_iter": 100_000}


def block_matrix(n_users=600, n_items=120, n_groups=6, p_in=0.5, p_out=0.02, seed=0):
    """Users and clips in groups (see test_ease); user 0 has all of group 0 but clip 0 (held out)."""
    rng = np.random.default_rng(seed)
    ug = rng.integers(0, n_groups, n_users)
    ig = np.arange(n_items) % n_groups
    dense = rng.random((n_users, n_items)) < np.where(ug[:, None] == ig[None, :], p_in, p_out)
    dense[0] = ig == 0
    dense[0, 0] = False
    return sp.csr_matrix(dense.astype(np.float32)), 0


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


def test_held_out_item_comes_back():
    X, held = block_matrix()
    ids, scores = SLIM(alpha=2e-3, l1_ratio=0.5).fit(X).recommend(np.array([0]), X, 10)
    assert held in ids[0]
    assert np.all(np.diff(scores[0]) <= 0)


def test_batch_equals_single_row_and_filters():
    X, _ = block_matrix(seed=5)
    model = SLIM(alpha=2e-3).fit(X)
    rows = np.array([9, 0, 33, 9, 599])
    ids, scores = model.recommend(rows, X, 12)
    for r, row in enumerate(rows):
        one_ids, one_scores = model.recommend(np.array([row]), X, 12)
        np.testing.assert_array_equal(one_ids[0], ids[r])
        np.testing.assert_allclose(one_scores[0], scores[r], rtol=1e-6)
        assert not np.isin(ids[r], X[row].indices).any()
    white = np.array([1, 2, 4, 8, 16, 32, 64])
    ids_w, scores_w = model.recommend(rows, X, 10, whitelist=white)
    assert np.isin(ids_w[ids_w >= 0], white).all()
    assert (ids_w[:, 7:] == -1).all() and np.isneginf(scores_w[:, 7:]).all()
    sub_ids, sub_scores = model.recommend(rows, X, 10, whitelist=white, filter_seen=False)
    assert (sub_ids[:, :7] >= 0).all()  # all 7 whitelisted clips come back (score >= 0) when none is filtered
    full_ids, full_scores = model.recommend(rows, X, 120, filter_seen=False)
    for r in range(rows.size):  # scores under a whitelist equal the unrestricted ones
        lookup = dict(zip(full_ids[r], full_scores[r], strict=True))
        np.testing.assert_allclose(sub_scores[r, :7], [lookup[i] for i in sub_ids[r, :7]], rtol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError):
        SLIM(backend="torch")
    with pytest.raises(ValueError):
        SLIM(alpha=0.0)
