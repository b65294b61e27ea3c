"""EASE: the closed form against a direct float64 inverse, max_items, and the shared recommend contract."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from audience.models import EASE

# B from the Cholesky route (float64 solve, float32 storage) vs np.linalg.inv in float64: the float32 cast
# alone is ~1e-8 relative; allow 1e-6 absolute on entries of order 0.01-1.
ATOL_B = 1e-6


def block_matrix(n_users=600, n_items=120, n_groups=6, p_in=0.5, p_out=0.02, seed=0):
    """Users and clips in groups; a user takes each clip of their group with p_in, others with p_out.
    User 0 has every clip of group 0 except clip 0 (held out, returned separately)."""
    rng = np.random.default_rng(seed)
    ug = rng.integers(0, n_groups, n_users)
    ig = np.arange(n_items) % n_groups
    dense = rng.random((n_users, n_items)) < np.where(ug[:, None] == ig[None, :], p_in, p_out)
    ug[0] = 0
    dense[0] = ig == 0
    dense[0, 0] = False
    return sp.csr_matrix(dense.astype(np.float32)), 0


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


def test_held_out_item_comes_back():
    X, held = block_matrix()
    ids, scores = EASE(regularization=10.0, max_items=None).fit(X).recommend(np.array([0]), X, 10)
    assert held in ids[0]
    assert np.all(np.diff(scores[0]) <= 0)


def test_batch_equals_single_row():
    X, _ = block_matrix(seed=4)
    model = EASE(regularization=10.0).fit(X)
    rows = np.array([5, 0, 17, 5, 599])
    ids, scores = model.recommend(rows, X, 15)
    for r, row in enumerate(rows):
        one_ids, one_scores = model.recommend(np.array([row]), X, 15)
        np.testing.assert_array_equal(one_ids[0], ids[r])
        np.testing.assert_allclose(one_scores[0], scores[r], rtol=1e-6)


def test_filter_seen_and_whitelist():
    X, _ = block_matrix(seed=5)
    model = EASE(regularization=10.0).fit(X)
    rows = np.arange(50)
    ids, _ = model.recommend(rows, X, 30)
    for r in rows:
        assert not np.isin(ids[r], X[r].indices).any()
    ids_all, _ = model.recommend(rows, X, 30, filter_seen=False)
    assert any(np.isin(ids_all[r], X[r].indices).any() for r in rows)
    white = np.array([3, 7, 11, 100, 119, 5000])  # 5000 is not a clip: ignored
    ids_w, scores_w = model.recommend(rows, X, 10, whitelist=white)
    got = ids_w[ids_w >= 0]
    assert np.isin(got, white).all()
    # at most 5 real clips: the rest is padding
    assert (ids_w[:, 5:] == -1).all() and np.isneginf(scores_w[:, 5:]).all()
    for r in rows:
        seen = set(X[r].indices)
        expected = {c for c in white[:5] if c not in seen}
        assert set(ids_w[r][ids_w[r] >= 0]) == expected


def test_errors():
    X, _ = block_matrix(n_users=50, n_items=20)
    with pytest.raises(RuntimeError):
        EASE().recommend(np.array([0]), X, 5)
    model = EASE(regularization=1.0).fit(X)
    with pytest.raises(ValueError):
        model.recommend(np.array([0]), X[:, :10], 5)
    with pytest.raises(IndexError):
        model.recommend(np.array([50]), X, 5)
    with pytest.raises(ValueError):
        EASE(method="lu")
    ids, scores = model.recommend(np.array([], dtype=np.int64), X, 5)
    assert ids.shape == (0, 5) and scores.shape == (0, 5)
