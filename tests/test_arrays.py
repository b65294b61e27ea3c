"""The shared top-k helpers against a brute-force sort that spells out the tie rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from audience.arrays import TopK, product_top_k, rank_within_clip, sparse_top_k, sparse_values_at, top_k


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


def test_top_k_over_wide_rows_in_parallel_runs_matches_the_reference():
    # more rows than threads x runs, rows wider than k, +inf as padding, float64 scores
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 30, size=(90, 400)).astype(np.float64)
    scores[rng.random(scores.shape) < 0.02] = np.inf
    scores[rng.random(scores.shape) < 0.02] = np.nan
    scores[-1] = -np.inf  # a row of padding only
    ids = rng.permutation(400).astype(np.int32)
    got = top_k(scores, 25, ids)
    want_ids, want_scores = reference(scores, 25, ids)
    np.testing.assert_array_equal(got.ids, want_ids)
    np.testing.assert_array_equal(got.scores, np.asarray(want_scores, dtype=np.float32))


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


def sparse_reference(matrix: sparse.spmatrix, k: int) -> tuple[list, list]:
    """Python sort of each row's stored entries (explicit zeros included, duplicates summed)."""
    matrix = sparse.csr_matrix(matrix)
    matrix.sum_duplicates()
    out_ids, out_scores = [], []
    for row in range(matrix.shape[0]):
        lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
        kept = sorted(zip(-matrix.data[lo:hi], matrix.indices[lo:hi], strict=True))[:k]
        out_ids.append([int(i) for _, i in kept] + [-1] * (k - len(kept)))
        out_scores.append([-s for s, _ in kept] + [-np.inf] * (k - len(kept)))
    return out_ids, out_scores


@pytest.mark.parametrize("k", [1, 4, 9, 40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_top_k_matches_a_python_sort_with_ties_and_explicit_zeros(k, dtype):
    rng = np.random.default_rng(k)
    rows, cols = rng.integers(0, 30, 400), rng.integers(0, 25, 400)  # duplicates, summed
    values = rng.integers(-1, 3, 400).astype(dtype)  # ties at every cut, some sums exactly zero
    matrix = sparse.coo_matrix((values, (rows, cols)), shape=(32, 25))  # rows 30, 31 are empty
    got = sparse_top_k(matrix, k)
    want_ids, want_scores = sparse_reference(matrix, k)
    np.testing.assert_array_equal(got.ids, want_ids)
    np.testing.assert_array_equal(got.scores, np.asarray(want_scores, dtype=np.float32))


@pytest.mark.parametrize("k", [1, 5, 300])
@pytest.mark.parametrize("threads", [1, 3])
def test_product_top_k_equals_the_top_k_of_scipys_product(k, threads):
    rng = np.random.default_rng(k + threads)
    left = sparse.random(50, 80, density=0.1, random_state=rng, dtype=np.float32)
    left.data = np.round(left.data * 4) / 4  # ties, and zero weights whose products scipy drops
    right = sparse.random(80, 200, density=0.05, random_state=rng, dtype=np.float32)
    right.data = np.round(right.data * 3)
    got = product_top_k(left, right, k, threads=threads)
    want = sparse_top_k(sparse.csr_matrix(left) @ sparse.csr_matrix(right), k)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.scores, want.scores)
    assert (got.ids[:, 0] >= 0).sum() > 40  # most rows answered
    assert k < 300 or (got.ids < 0).any()  # and short rows padded
    mixed = product_top_k(left.astype(np.float64), right, k)  # float64 sums, as scipy upcasts
    np.testing.assert_array_equal(mixed.ids, sparse_top_k(left.astype(np.float64) @ right, k).ids)


@pytest.mark.parametrize("layout", [sparse.csr_matrix, sparse.csc_matrix])
def test_sparse_values_at_equals_dense_indexing(layout):
    rng = np.random.default_rng(0)
    dense = ((rng.random((30, 12)) < 0.2) * rng.random((30, 12))).astype(np.float32)
    rows, cols = rng.integers(-1, 30, 500), rng.integers(-1, 12, 500)
    got = sparse_values_at(layout(dense), rows, cols)
    want = np.where((rows >= 0) & (cols >= 0), dense[np.maximum(rows, 0), np.maximum(cols, 0)], 0.0)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
