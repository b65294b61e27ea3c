"""The user x author views history of a split, combined from weekly aggregates by blocks of users.

At the density of the challenge's up0.01_ip0.01 (about 544 views per user-week, 20,000 authors) a user meets
thousands of distinct authors: one week alone holds ~51 M distinct (user, author) pairs for 56 M views, and
25 weeks approach a third of the dense user x author matrix. Summing weekly sparse matrices would hold that
union several times over, and every consumer (author fans, the reranker's author features) would copy it
again. So the views history keeps, per user, the `max_authors` authors with the most recency-weighted views
(ties at the threshold kept) plus every author the user engaged with; a user with fewer authors keeps all.

How: weeks' per-user rows are read by blocks of users from the memory-mapped aggregates, summed into one
dense (block, n_authors) float32 buffer (`block_cells` floats, 256 MiB by default), pruned row by row and
appended. Cost: one read of every week's pairs, O(n_users x n_authors) buffer cells scanned; memory: the
buffer plus the kept pairs (at most n_users x (max_authors + engaged authors)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit, prange
from scipy import sparse

from audience.data.ids import IdMap
from audience.errors import DataError


@dataclass
class WeekPairs:
    """One week's user x author views as stored: rows for `users` (run indices, increasing), CSR parts over
    the dataset's author ids (memory-mapped), and the week's recency factor."""

    users: np.ndarray
    indptr: np.ndarray
    keys: np.ndarray
    data: np.ndarray
    factor: float


@njit(cache=True)
def _scatter_rows(
    buffer: np.ndarray,
    rows: np.ndarray,
    counts: np.ndarray,
    cols: np.ndarray,
    data: np.ndarray,
    factor: float,
) -> None:
    at = 0
    for k in range(rows.shape[0]):
        row = buffer[rows[k]]
        for _ in range(counts[k]):
            row[cols[at]] += np.float32(factor * data[at])
            at += 1


@njit(parallel=True, cache=True)
def _thresholds(buffer: np.ndarray, n_rows: int, max_keep: int) -> np.ndarray:
    """Per row, the smallest value kept by rank: the max_keep-th largest positive value (0: keep all)."""
    out = np.zeros(n_rows, dtype=np.float32)
    for r in prange(n_rows):
        row = buffer[r]
        values = row[row > 0]
        if values.shape[0] > max_keep:
            out[r] = np.partition(values, values.shape[0] - max_keep)[values.shape[0] - max_keep]
    return out


@njit(cache=True)
def _kept(
    buffer: np.ndarray, n_rows: int, threshold: np.ndarray, pos_indptr: np.ndarray, pos_indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR parts of the kept cells (value >= the row's threshold, or an engaged author); zeroes the buffer."""
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    n_cols = buffer.shape[1]
    engaged = np.zeros(n_cols, dtype=np.bool_)
    for r in range(n_rows):
        row = buffer[r]
        for j in range(pos_indptr[r], pos_indptr[r + 1]):
            engaged[pos_indices[j]] = True
        count = 0
        for c in range(n_cols):
            if row[c] > 0 and (row[c] >= threshold[r] or engaged[c]):
                count += 1
        indptr[r + 1] = indptr[r] + count
        for j in range(pos_indptr[r], pos_indptr[r + 1]):
            engaged[pos_indices[j]] = False
    indices = np.empty(indptr[-1], dtype=np.int32)
    data = np.empty(indptr[-1], dtype=np.float32)
    for r in range(n_rows):
        row = buffer[r]
        for j in range(pos_indptr[r], pos_indptr[r + 1]):
            engaged[pos_indices[j]] = True
        at = indptr[r]
        for c in range(n_cols):
            if row[c] > 0 and (row[c] >= threshold[r] or engaged[c]):
                indices[at] = c
                data[at] = row[c]
                at += 1
            row[c] = 0.0
        for j in range(pos_indptr[r], pos_indptr[r + 1]):
            engaged[pos_indices[j]] = False
    return indptr, indices, data


def combine_author_views(
    weeks: Sequence[WeekPairs],
    authors: IdMap,
    n_users: int,
    engaged: sparse.csr_matrix,
    max_authors: int | None,
    block_cells: int = 1 << 26,
) -> sparse.csr_matrix:
    """(n_users, n_authors) float32 CSR: sum of factor x views over `weeks`, pruned as the module says
    (`engaged`: the user x author positives, whose pattern is always kept; max_authors None keeps all)."""
    n_authors = len(authors)
    for week in weeks:
        if week.users.size and np.any(np.diff(week.users) <= 0):
            raise DataError(
                "week aggregate users are not in the run's index order (was the metadata rewritten?)"
            )
    engaged = engaged.tocsr()
    block = max(1, min(n_users, block_cells // max(n_authors, 1)))
    buffer = np.zeros((block, n_authors), dtype=np.float32)
    keep = np.iinfo(np.int64).max if max_authors is None else int(max_authors)
    parts = []
    for start in range(0, n_users, block):
        stop = min(start + block, n_users)
        for week in weeks:
            lo, hi = np.searchsorted(week.users, [start, stop])
            if lo == hi:
                continue
            first, last = int(week.indptr[lo]), int(week.indptr[hi])
            cols = authors.index(
                np.asarray(week.keys[first:last]), "week aggregate", "user_author_views keys"
            )
            counts = np.diff(np.asarray(week.indptr[lo : hi + 1]))
            _scatter_rows(
                buffer,
                week.users[lo:hi] - start,
                counts,
                cols,
                np.asarray(week.data[first:last]),
                week.factor,
            )
        n_rows = stop - start
        threshold = _thresholds(buffer, n_rows, min(keep, n_authors))
        rows = engaged[start:stop]
        parts.append(_kept(buffer, n_rows, threshold, rows.indptr.astype(np.int64), rows.indices))
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    at = 0
    for k, (part_indptr, _, _) in enumerate(parts):
        start = k * block
        indptr[start + 1 : start + part_indptr.shape[0]] = at + part_indptr[1:]
        at += part_indptr[-1]
    indices = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int32)
    data = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.float32)
    return sparse.csr_matrix((data, indices, indptr), shape=(n_users, n_authors))


def prune_author_views(
    views: sparse.csr_matrix, engaged: sparse.csr_matrix, max_authors: int | None
) -> sparse.csr_matrix:
    """The same pruning on a whole matrix, row by row in Python: the reference the tests compare with."""
    views, engaged = views.tocsr(), engaged.tocsr()
    if max_authors is None or np.diff(views.indptr).max(initial=0) <= max_authors:
        return views
    rows, cols, values = [], [], []
    for r in range(views.shape[0]):
        seg = slice(views.indptr[r], views.indptr[r + 1])
        row_cols, row_values = views.indices[seg], views.data[seg]
        threshold = np.sort(row_values)[::-1][max_authors - 1] if row_values.size > max_authors else 0.0
        liked = set(engaged.indices[engaged.indptr[r] : engaged.indptr[r + 1]].tolist())
        for c, v in zip(row_cols.tolist(), row_values.tolist(), strict=True):
            if v > 0 and (v >= threshold or c in liked):
                rows.append(r)
                cols.append(c)
                values.append(v)
    out = sparse.csr_matrix((np.asarray(values, np.float32), (rows, cols)), shape=views.shape)
    out.sort_indices()
    return out
