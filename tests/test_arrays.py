"""The shared top-k helpers against a brute-force sort that spells out the tie rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from audience.arrays import TopK, rank_within_clip, sparse_top_k, sparse_values_at, top_k


def reference(scores: np.ndarray, k: int, ids: np.ndarray) -> tuple[list, list]:
    """Python sort per row: score descending, then id ascending; -inf and NaN are padding."""
    out_ids, out_scores = [], []
    for row in scores:
        kept = sorted((-s, i) for s, i in zip(row, ids, strict=True) if np.isfinite(s))[:k]
        out_ids.append([i for _, i in kept] + [-1] * (k - len(kept)))
        out_scores.append([-s for s, _ in kept] + [-np.inf] * (k - len(kept)))
    return out_ids, out_scores


@pytest.mark.parametrize("k", [1, 3, 7, 12, 15])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_k_matches_the_reference_with_many_ties(k, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(40, 12)).astype(np.float32)  # heavy ties, also at the cut
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    scores[rng.random(scores.shape) < 0.05] = np.nan
    ids = rng.permutation(np.arange(100, 112)).astype(np.int32)
    got = top_k(scores, k, ids)
    want_ids, want_scores = reference(scores, k, ids)
    np.testing.assert_array_equal(got.ids, want_ids)
    np.testing.assert_array_equal(got.scores, np.asarray(want_scores, dtype=np.float32))
    assert got.ids.dtype == np.int32 and got.scores.dtype == np.float32


def test_top_k_default_ids_padding_and_unpacking():
    scores = np.array([[1.0, 3.0, 3.0, -np.inf], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    ids, top = top_k(scores, 6, np.array([10, 20, 30, 40]))
    np.testing.assert_array_equal(ids[0], [20, 30, 10, -1, -1, -1])
    np.testing.assert_array_equal(ids[1], [10, 20, 30, 40, -1, -1])
    assert np.isneginf(top[0, 3:]).all()
    np.testing.assert_array_equal(top_k(scores, 2).ids, [[1, 2], [0, 1]])
    assert top_k(scores[:0], 3).ids.shape == (0, 3)
    assert top_k(scores, 0).ids.shape == (2, 0)


def test_sparse_top_k_and_rank_within_clip_follow_the_same_rule():
    dense = np.array([[0, 2, 2, 1], [5, 0, 5, 5]], dtype=np.float32)
    got = sparse_top_k(sparse.csr_matrix(dense), 3)
    np.testing.assert_array_equal(got.ids, [[1, 2, 3], [0, 2, 3]])
    masked = np.where(dense > 0, dense, -np.inf)
    np.testing.assert_array_equal(got.ids, top_k(masked, 3).ids)
    frame = TopK(got.ids, got.scores).to_frame("s").drop("rank").reverse()
    ranked = rank_within_clip(frame)
    assert ranked["user"].to_list() == [1, 2, 3, 0, 2, 3]
    assert ranked["rank"].to_list() == [1, 2, 3, 1, 2, 3]


@pytest.mark.parametrize("layout", [sparse.csr_matrix, sparse.csc_matrix])
def test_sparse_values_at_equals_dense_indexing(layout):
    rng = np.random.default_rng(0)
    dense = ((rng.random((30, 12)) < 0.2) * rng.random((30, 12))).astype(np.float32)
    rows, cols = rng.integers(-1, 30, 500), rng.integers(-1, 12, 500)
    got = sparse_values_at(layout(dense), rows, cols)
    want = np.where((rows >= 0) & (cols >= 0), dense[np.maximum(rows, 0), np.maximum(cols, 0)], 0.0)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
