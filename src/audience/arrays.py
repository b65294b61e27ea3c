"""Array helpers shared by every layer: the ids-and-scores result shape (`TopK`), row-wise top-k of dense
and sparse score matrices, sparse look-ups, unit rows, and ranking rows within a clip.

One tie rule everywhere: rows are ordered by score descending, then id ascending (the id after mapping
through `ids`). It holds at the k-th position too: of equal scores at the cut, the smallest ids are kept.
Padding is id -1 with score -inf; a -inf or NaN score is padding. Nothing here imports another module of
the package, so candidates/, models/ and rank/ can all depend on it.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np
import polars as pl
from scipy import sparse


class TopK(NamedTuple):
    """Top-k ids per query with their scores: `ids` (n, k) int32 padded with -1, `scores` (n, k) float32
    padded with -inf, each row in the tie rule's order. A tuple, so `ids, scores = top` unpacks it (the
    implicit library's convention). Generators' ids are user indices, CF models' ids are clip indices."""

    ids: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls, n: int, k: int) -> TopK:
        return cls(np.full((n, k), -1, dtype=np.int32), np.full((n, k), -np.inf, dtype=np.float32))

    def to_frame(self, source: str) -> pl.DataFrame:
        """Long form (clip row, user, score, rank 1-based, source) of a generator's answer, no padding."""
        n, k = self.ids.shape
        valid = self.ids.ravel() >= 0
        return pl.DataFrame(
            {
                "clip": np.repeat(np.arange(n, dtype=np.int32), k)[valid],
                "user": self.ids.ravel()[valid],
                "score": self.scores.ravel()[valid].astype(np.float32),
                "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n)[valid],
            }
        ).with_columns(pl.lit(source).alias("source"))


def top_k(scores: np.ndarray, k: int, ids: np.ndarray | None = None) -> TopK:
    """Row-wise top-`k` of a dense score matrix (rows = queries, columns map through `ids`, default the
    column index), ordered by the module's tie rule. Rows with fewer than `k` finite scores are padded.
    Cost: per row one pass with a heap of the k best, O(m + E log k) for the E scores that enter it, then a
    sort of the k kept (`_dense_rows_top_k`); rows in numba threads."""
    scores = np.asarray(scores)
    n, m = scores.shape
    out = TopK.empty(n, k)
    k_eff = min(k, m)
    if k_eff == 0 or n == 0:
        return out
    col_ids = np.arange(m, dtype=np.int64) if ids is None else np.asarray(ids)
    if scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float64)
    chunks = min(n, 4 * nb.get_num_threads())
    _dense_rows_top_k(
        np.ascontiguousarray(scores), k_eff, np.ascontiguousarray(col_ids), chunks, out.ids, out.scores
    )
    return out


def merge_top_k(parts: list[TopK], offsets: list[int], k: int) -> TopK:
    """Row-wise top-`k` of several answers over disjoint id ranges (one per user shard, each answer's ids
    local: id + offset is global), by the module's tie rule. When every part is its range's exact top-k
    under the same scores, the merge is the exact top-k over the union, ties included: an id left out of
    its part's top-k has k ids at or above it within that part alone. Cost: one sort of
    len(parts) x k entries per row."""
    if len(parts) != len(offsets):
        raise ValueError(f"{len(parts)} answers but {len(offsets)} offsets")
    if not parts:
        raise ValueError("merge_top_k needs at least one answer")
    pairs = zip(parts, offsets, strict=True)
    ids = np.hstack([np.where(p.ids >= 0, p.ids.astype(np.int64) + o, -1) for p, o in pairs])
    scores = np.hstack([np.where(p.ids >= 0, p.scores, -np.inf).astype(np.float32) for p in parts])
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    out = TopK.empty(ids.shape[0], k)
    width = order.shape[1]
    out.ids[:, :width] = np.take_along_axis(ids, order, axis=1)
    out.scores[:, :width] = np.take_along_axis(scores, order, axis=1)
    out.ids[~np.isfinite(out.scores)] = -1
    out.scores[out.ids < 0] = -np.inf
    return out


@nb.njit(cache=True, nogil=True)
def key_buckets(keys, n_keys):  # pragma: no cover - numba
    """(offsets, order): the indices of `keys` (integers in [0, n_keys)) grouped by key in input order, a
    counting sort in O(len(keys) + n_keys); key c's indices are order[offsets[c]:offsets[c + 1]]."""
    offsets = np.zeros(n_keys + 1, dtype=np.int64)
    for i in range(keys.size):
        offsets[keys[i] + 1] += 1
    for c in range(n_keys):
        offsets[c + 1] += offsets[c]
    fill = offsets[:-1].copy()
    order = np.empty(keys.size, dtype=np.int64)
    for i in range(keys.size):
        order[fill[keys[i]]] = i
        fill[keys[i]] += 1
    return offsets, order


@nb.njit(cache=True, nogil=True)
def select_top(columns, values, n, k, ids, scores):  # pragma: no cover - numba
    """Writes the top `k` of the entries (columns[:n], values[:n]) into ids / scores (one row), by value
    descending then column ascending. O(n) selection of the k-th value, then a sort of the kept."""
    if n > k:
        kth = -np.partition(-values[:n], k - 1)[k - 1]
        above = 0
        for t in range(n):
            if values[t] > kth:
                above += 1
        keep_cols = np.empty(k, dtype=columns.dtype)
        keep_vals = np.empty(k, dtype=values.dtype)
        m = 0
        for t in range(n):
            if values[t] > kth:
                keep_cols[m] = columns[t]
                keep_vals[m] = values[t]
                m += 1
        # of the values equal at the cut, the smallest ids
        ties = np.sort(columns[:n][values[:n] == kth])[: k - above]
        for t in range(ties.size):
            keep_cols[m] = ties[t]
            keep_vals[m] = kth
            m += 1
    else:
        keep_cols, keep_vals, m = columns[:n].copy(), values[:n].copy(), n
    by_column = np.argsort(keep_cols[:m], kind="mergesort")
    keep_cols, keep_vals = keep_cols[:m][by_column], keep_vals[:m][by_column]
    order = np.argsort(-keep_vals, kind="mergesort")
    for t in range(m):
        ids[t] = keep_cols[order[t]]
        scores[t] = keep_vals[order[t]]


@nb.njit(parallel=True, cache=True, nogil=True)
def _rows_top_k(indptr, indices, data, k, ids, scores):  # pragma: no cover - numba
    """`select_top` of every CSR row, rows in parallel."""
    for row in nb.prange(indptr.size - 1):
        lo, hi = indptr[row], indptr[row + 1]
        select_top(indices[lo:hi], data[lo:hi], hi - lo, k, ids[row], scores[row])


@nb.njit(cache=True, nogil=True, inline="always")
def _worse(v1, i1, v2, i2):  # pragma: no cover - numba
    """(v1, id i1) comes after (v2, id i2) in the tie rule's order."""
    return v1 < v2 or (v1 == v2 and i1 > i2)


@nb.njit(cache=True, nogil=True)
def _sift_worst(values, ids, size, i):  # pragma: no cover - numba
    """Restores the heap below slot i: the entry last in the tie rule's order on top."""
    while True:
        left, worst = 2 * i + 1, i
        if left < size and _worse(values[left], ids[left], values[worst], ids[worst]):
            worst = left
        if left + 1 < size and _worse(values[left + 1], ids[left + 1], values[worst], ids[worst]):
            worst = left + 1
        if worst == i:
            return
        values[i], values[worst] = values[worst], values[i]
        ids[i], ids[worst] = ids[worst], ids[i]
        i = worst


@nb.njit(parallel=True, cache=True, nogil=True)
def _dense_rows_top_k(scores, k, col_ids, chunks, ids, out):  # pragma: no cover - numba
    """Each dense row's top k finite scores (NaN and +-inf are padding) by the tie rule, columns named by
    `col_ids`: one pass keeping a heap of the k best (its last entry on top, so an entry costs one
    comparison unless it enters), then the heap sorted. O(m + E log k) per row for E entries that enter
    the heap (about k ln(m / k) in random order, m log k at worst); rows cut into `chunks` runs."""
    n_rows, m = scores.shape
    for chunk in nb.prange(chunks):
        start, end = chunk * n_rows // chunks, (chunk + 1) * n_rows // chunks
        heap_values = np.empty(k, dtype=scores.dtype)
        heap_ids = np.empty(k, dtype=np.int64)
        for row in range(start, end):
            size = 0
            for j in range(m):
                v = scores[row, j]
                if not np.isfinite(v):
                    continue
                c = col_ids[j]
                if size < k:
                    heap_values[size] = v
                    heap_ids[size] = c
                    size += 1
                    if size == k:
                        for i in range(k // 2 - 1, -1, -1):
                            _sift_worst(heap_values, heap_ids, k, i)
                elif _worse(heap_values[0], heap_ids[0], v, c):
                    heap_values[0] = v
                    heap_ids[0] = c
                    _sift_worst(heap_values, heap_ids, k, 0)
            by_id = np.argsort(heap_ids[:size], kind="mergesort")
            kept_ids, kept_values = heap_ids[:size][by_id], heap_values[:size][by_id]
            order = np.argsort(-kept_values, kind="mergesort")
            for t in range(size):
                ids[row, t] = kept_ids[order[t]]
                out[row, t] = kept_values[order[t]]


@nb.njit(parallel=True, cache=True, nogil=True)
def _product_top_k(
    left_indptr, left_indices, left_data, right_indptr, right_indices, right_data, n_cols, k, chunks, ids, out
):  # pragma: no cover - numba
    """Row-wise top-k of left @ right, each row's sums accumulated in a dense buffer in scipy's order (left
    entries in CSR order, then the right row's), exact zeros dropped as scipy drops them. Rows are cut into
    `chunks` runs, one buffer set (n_cols x ~32 bytes) per run."""
    n_rows = left_indptr.size - 1
    for chunk in nb.prange(chunks):
        start, end = chunk * n_rows // chunks, (chunk + 1) * n_rows // chunks
        sums = np.zeros(n_cols, dtype=left_data.dtype)
        mark = np.full(n_cols, -1, dtype=np.int64)
        touched = np.empty(n_cols, dtype=np.int64)
        values = np.empty(n_cols, dtype=left_data.dtype)
        for row in range(start, end):
            n = 0
            for jj in range(left_indptr[row], left_indptr[row + 1]):
                j, weight = left_indices[jj], left_data[jj]
                for kk in range(right_indptr[j], right_indptr[j + 1]):
                    c = right_indices[kk]
                    if mark[c] != row:
                        mark[c] = row
                        sums[c] = 0
                        touched[n] = c
                        n += 1
                    sums[c] += weight * right_data[kk]
            m = 0
            for t in range(n):
                if sums[touched[t]] != 0:
                    touched[m] = touched[t]
                    values[m] = sums[touched[t]]
                    m += 1
            select_top(touched, values, m, k, ids[row], out[row])


def sparse_top_k(scores: sparse.spmatrix, k: int) -> TopK:
    """Row-wise top-k of the explicit entries of a sparse score matrix (ids = column indices), by the tie
    rule (duplicates summed first). O(nnz) selection per row, rows in parallel."""
    matrix = sparse.csr_matrix(scores)
    out = TopK.empty(matrix.shape[0], k)
    if matrix.nnz == 0 or k == 0:
        return out
    matrix.sum_duplicates()
    top = np.full(out.scores.shape, -np.inf, dtype=matrix.dtype)  # TopK holds float32: cast once at the end
    _rows_top_k(matrix.indptr, matrix.indices, matrix.data, k, out.ids, top)
    out.scores[:] = top
    return out


def product_top_k(left: sparse.spmatrix, right: sparse.spmatrix, k: int, threads: int | None = None) -> TopK:
    """Row-wise top-k of the sparse product ``left @ right`` (ids = columns of `right`), equal to
    `sparse_top_k(left @ right, k)` (the same sums in the same order) without building the product: each
    row is summed into a dense buffer and only its top k kept. Limits: a buffer set of about
    32 x right.shape[1] bytes per thread (`threads`, default numba's); time O(multiply-adds + touched)."""
    left, right = sparse.csr_matrix(left), sparse.csr_matrix(right)
    dtype = np.result_type(left.dtype, right.dtype)
    out = TopK.empty(left.shape[0], k)
    if k == 0 or left.shape[0] == 0:
        return out
    top = np.full(out.scores.shape, -np.inf, dtype=dtype)
    chunks = max(1, min(left.shape[0], threads or nb.get_num_threads()))
    _product_top_k(
        left.indptr,
        left.indices,
        left.data.astype(dtype, copy=False),
        right.indptr,
        right.indices,
        right.data.astype(dtype, copy=False),
        right.shape[1],
        k,
        chunks,
        out.ids,
        top,
    )
    out.scores[:] = top
    return out


def sparse_values_at(matrix: sparse.spmatrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """matrix[rows[i], cols[i]] for every pair (0 where absent or where either index is negative), in the
    matrix's dtype. One binary search within each pair's row of the CSR form (indices sorted in place): no
    temporary grows with the matrix's non-zeros."""
    matrix = sparse.csr_matrix(matrix)
    matrix.sort_indices()
    return _row_values(
        matrix.indptr, matrix.indices, matrix.data, np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    )


@nb.njit(parallel=True, cache=True)
def _row_values(indptr, indices, data, rows, cols):
    out = np.zeros(rows.size, dtype=data.dtype)
    for i in nb.prange(rows.size):
        r, c = rows[i], cols[i]
        if r < 0 or c < 0:
            continue
        lo, hi = indptr[r], indptr[r + 1]
        j = lo + np.searchsorted(indices[lo:hi], c)
        if j < hi and indices[j] == c:
            out[i] = data[j]
    return out


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (float32), so inner products are cosines; zero rows stay zero."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norm > 0, x / np.maximum(norm, 1e-12), 0.0).astype(np.float32)


def rank_within_clip(frame: pl.DataFrame) -> pl.DataFrame:
    """Sort (clip, user, score) rows by clip, then score descending (user ascending on ties: the tie
    rule), and number them 1, 2, ... within each clip in a `rank` column."""
    return frame.sort(["clip", "score", "user"], descending=[False, True, False]).with_columns(
        pl.col("score").cum_count().over("clip").cast(pl.Int32).alias("rank")
    )
