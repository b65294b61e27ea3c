"""The one interface every clip -> users generator implements, and the shapes it passes around.

A generator is fitted once on `FitData` + `Catalog` (weeks before the truth week only), then asked for the
top-k users of a batch of new clips. Hot paths pass numpy arrays: `TopK.users` (n_clips, k) int32 padded
with -1 and `TopK.scores` (n_clips, k) float32 padded with -inf, each row sorted by score descending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import polars as pl
from scipy import sparse

from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData


@dataclass
class ClipQueries:
    """New clips to find users for: what is known of them without interactions."""

    item_ids: np.ndarray  # uint32 external ids
    embedding: np.ndarray  # float32 (n, dim); zero rows where has_embedding is False
    has_embedding: np.ndarray  # bool (n,)
    author: np.ndarray  # int32 author index, -1 when the clip has no metadata or an unseen author
    duration: np.ndarray  # int32 seconds, -1 when unknown
    has_metadata: np.ndarray  # bool (n,)

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])

    def subset(self, rows: np.ndarray | slice) -> ClipQueries:
        """The queries at `rows` (same fields, sliced)."""
        return ClipQueries(
            self.item_ids[rows],
            self.embedding[rows],
            self.has_embedding[rows],
            self.author[rows],
            self.duration[rows],
            self.has_metadata[rows],
        )

    @classmethod
    def from_catalog(cls, catalog: Catalog, item_ids: np.ndarray) -> ClipQueries:
        """Look the target clips up in metadata and embeddings; unknowns are flagged, never guessed."""
        item_ids = np.asarray(item_ids, dtype=np.uint32)
        idx = catalog.items.lookup(item_ids)
        has_metadata = idx >= 0
        embedding = np.zeros((item_ids.shape[0], catalog.embedding.shape[1]), dtype=np.float32)
        has_embedding = np.zeros(item_ids.shape[0], dtype=bool)
        embedding[has_metadata] = catalog.embedding[idx[has_metadata]]
        has_embedding[has_metadata] = catalog.has_embedding[idx[has_metadata]]
        author = np.where(has_metadata, catalog.item_author[np.maximum(idx, 0)], -1).astype(np.int32)
        duration = np.where(has_metadata, catalog.item_duration[np.maximum(idx, 0)].astype(np.int32), -1)
        return cls(item_ids, embedding, has_embedding, author, duration, has_metadata)


@dataclass
class TopK:
    """Top-k users per clip: rows align with the queries; -1 / -inf pad rows with fewer than k users."""

    users: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls, n: int, k: int) -> TopK:
        return cls(np.full((n, k), -1, dtype=np.int32), np.full((n, k), -np.inf, dtype=np.float32))

    def to_frame(self, source: str) -> pl.DataFrame:
        """Long form (clip row, user, score, rank 1-based, source), dropping padding."""
        n, k = self.users.shape
        valid = self.users.ravel() >= 0
        return pl.DataFrame(
            {
                "clip": np.repeat(np.arange(n, dtype=np.int32), k)[valid],
                "user": self.users.ravel()[valid],
                "score": self.scores.ravel()[valid].astype(np.float32),
                "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n)[valid],
            }
        ).with_columns(pl.lit(source).alias("source"))


class CandidateSource(Protocol):
    """Every generator: `fit` on the fit weeks' aggregates, then `recommend` users for new clips."""

    name: str

    def fit(self, data: FitData, catalog: Catalog) -> CandidateSource: ...

    def recommend(self, clips: ClipQueries, k: int) -> TopK: ...


def top_k_rows(scores: np.ndarray, k: int, ids: np.ndarray | None = None) -> TopK:
    """Row-wise top-k of a dense score matrix (argpartition, then sort the k), mapped through `ids`."""
    n, m = scores.shape
    k_eff = min(k, m)
    out = TopK.empty(n, k)
    if k_eff == 0 or n == 0:
        return out
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    out.users[:, :k_eff] = top if ids is None else ids[top]
    out.scores[:, :k_eff] = np.take_along_axis(part_scores, order, axis=1)
    bad = ~np.isfinite(out.scores)
    out.users[bad] = -1
    return out


def ranked_entries(matrix: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, rows, position) of a CSR matrix's stored entries (duplicates summed first): `order` sorts
    them by row, value descending, column ascending; rows[order] is each sorted entry's row and `position`
    its 0-based rank within that row. One lexsort, no loop over rows; O(nnz log nnz)."""
    matrix.sum_duplicates()
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    return order, rows[order], np.arange(matrix.nnz) - matrix.indptr[rows[order]]


def sparse_top_k(scores: sparse.spmatrix, k: int) -> TopK:
    """Row-wise top-k of the explicit entries of a sparse score matrix (rows = queries, columns = users),
    ranked by `ranked_entries`. Cost O(nnz log nnz)."""
    matrix = sparse.csr_matrix(scores)
    out = TopK.empty(matrix.shape[0], k)
    if matrix.nnz == 0 or k == 0:
        return out
    order, rows, position = ranked_entries(matrix)
    keep = position < k
    kept_rows, kept_pos = rows[keep], position[keep]
    out.users[kept_rows, kept_pos] = matrix.indices[order][keep]
    out.scores[kept_rows, kept_pos] = matrix.data[order][keep]
    return out


def sparse_values_at(matrix: sparse.spmatrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """matrix[rows[i], cols[i]] for every pair (0 where absent), in the matrix's dtype. Vectorized: one
    binary search of the pairs' keys among the matrix's sorted (row, column) keys."""
    matrix = sparse.csr_matrix(matrix)
    matrix.sort_indices()
    n_cols = matrix.shape[1]
    out = np.zeros(np.asarray(rows).shape[0], dtype=matrix.dtype)
    if matrix.nnz == 0:
        return out
    row_of = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    keys = row_of * n_cols + matrix.indices
    wanted = np.asarray(rows, dtype=np.int64) * n_cols + cols
    pos = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
    hit = keys[pos] == wanted
    out[hit] = matrix.data[pos[hit]]
    return out


def rank_within_clip(frame: pl.DataFrame) -> pl.DataFrame:
    """Sort (clip, user, score) rows by clip, then score descending (user ascending on ties), and number
    them 1, 2, ... within each clip in a `rank` column."""
    return frame.sort(["clip", "score", "user"], descending=[False, True, False]).with_columns(
        pl.col("score").cum_count().over("clip").cast(pl.Int32).alias("rank")
    )
