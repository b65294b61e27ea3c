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
    Cost: one argpartition and a sort of the k kept per row; rows whose k-th score is tied outside the
    partition (rare with float scores) are re-cut with a full sort of that row."""
    scores = np.asarray(scores)
    n, m = scores.shape
    out = TopK.empty(n, k)
    k_eff = min(k, m)
    if k_eff == 0 or n == 0:
        return out
    col_ids = np.arange(m, dtype=np.int64) if ids is None else np.asarray(ids)
    clean = np.where(np.isnan(scores), -np.inf, scores) if np.isnan(scores).any() else scores
    if k_eff < m:
        part = np.argpartition(-clean, k_eff - 1, axis=1)[:, :k_eff]
        kth = np.take_along_axis(clean, part, axis=1).min(axis=1)
        # a tie at the cut may leave a smaller id outside the partition: re-cut those rows exactly
        redo = np.flatnonzero((clean >= kth[:, None]).sum(axis=1) > k_eff)
        if redo.size:
            rows = clean[redo]
            full = np.lexsort((np.broadcast_to(col_ids, rows.shape), -rows), axis=1)
            part[redo] = full[:, :k_eff]
    else:
        part = np.broadcast_to(np.arange(m), (n, m))
    part_scores = np.take_along_axis(clean, part, axis=1)
    part_ids = col_ids[part]
    order = np.lexsort((part_ids, -part_scores), axis=1)
    out.ids[:, :k_eff] = np.take_along_axis(part_ids, order, axis=1)
    out.scores[:, :k_eff] = np.take_along_axis(part_scores, order, axis=1)
    out.ids[~np.isfinite(out.scores)] = -1
    out.scores[out.ids < 0] = -np.inf
    return out


def ranked_entries(matrix: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, rows, position) of a CSR matrix's stored entries (duplicates summed first): `order` sorts
    them by row, value descending, column ascending (the tie rule); rows[order] is each sorted entry's row
    and `position` its 0-based rank within that row. One lexsort, no loop over rows; O(nnz log nnz)."""
    matrix.sum_duplicates()
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    return order, rows[order], np.arange(matrix.nnz) - matrix.indptr[rows[order]]


def sparse_top_k(scores: sparse.spmatrix, k: int) -> TopK:
    """Row-wise top-k of the explicit entries of a sparse score matrix (ids = column indices), ranked by
    `ranked_entries`. Cost O(nnz log nnz)."""
    matrix = sparse.csr_matrix(scores)
    out = TopK.empty(matrix.shape[0], k)
    if matrix.nnz == 0 or k == 0:
        return out
    order, rows, position = ranked_entries(matrix)
    keep = position < k
    kept_rows, kept_pos = rows[keep], position[keep]
    out.ids[kept_rows, kept_pos] = matrix.indices[order][keep]
    out.scores[kept_rows, kept_pos] = matrix.data[order][keep]
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
