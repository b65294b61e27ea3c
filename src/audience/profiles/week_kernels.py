"""Numba kernels of the week pass: rows grouped by user, then per-user sums with no write conflicts.

A chunk's rows are grouped by user with a counting sort (O(rows), `group_rows`); every user's rows are then
reduced by one thread (`user_profile_sums`, `user_histories`), so the sums need no atomics and each
user's accumulators stay in cache while its rows stream by. The random reads are the item table's rows
(one embedding row per usable view): that gather bounds the pass, about the numba scatter-add reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from audience.profiles.kinds import view_weight


@njit(nogil=True, cache=True)
def group_rows(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Counting sort of row numbers by `keys` (int32 in [0, n_keys)): (starts (n_keys + 1,), order), the
    rows of key k being order[starts[k]:starts[k + 1]] in their original order. Row numbers are int32 (a
    chunk holds fewer than 2**31 rows): half the bytes every later pass reads."""
    starts = np.zeros(n_keys + 1, dtype=np.int64)
    for r in range(keys.shape[0]):
        starts[keys[r] + 1] += 1
    for k in range(n_keys):
        starts[k + 1] += starts[k]
    fill = starts[:-1].copy()
    order = np.empty(keys.shape[0], dtype=np.int32)
    for r in range(keys.shape[0]):
        k = keys[r]
        order[fill[k]] = r
        fill[k] += 1
    return starts, order


@njit(parallel=True, nogil=True, cache=True)
def user_profile_sums(
    starts: np.ndarray,
    order: np.ndarray,
    item: np.ndarray,
    timespent: np.ndarray,
    flags: np.ndarray,
    kinds: np.ndarray,
    flag_tables: tuple[np.ndarray, np.ndarray, np.ndarray],
    duration: np.ndarray,
    usable: np.ndarray,
    skip_share: np.float32,
    watch_cap: np.float32,
    table: np.ndarray,
    sums: np.ndarray,
    totals: np.ndarray,
) -> None:
    """sums[k, u] += sum over u's rows r of w_k(r) * table[item[r]] and totals[k, u] += w_k(r), for the
    weekly profile kinds whose codes are `kinds` (profiles/kinds.py), rows of clips without `usable` rows
    skipped, each row weighed by kinds.view_weight: `flags` packs a row's
    flags (data.weeks.PACKED_FLAGS); flag_tables = (positive weight, any positive flag, dislike) per packed
    value; `duration` float32 (>= 1) per clip. sums: float32 (K, n_users, d), totals: float64 (K, n_users)."""
    weight_of, positive_of, dislike_of = flag_tables
    dim = table.shape[1]
    for u in prange(starts.shape[0] - 1):
        for j in range(starts[u], starts[u + 1]):
            r = order[j]
            i = item[r]
            if not usable[i]:
                continue
            row = table[i]
            packed = flags[r]
            seconds = np.float32(timespent[r])
            for k in range(kinds.shape[0]):
                w = view_weight(
                    kinds[k],
                    packed,
                    seconds,
                    duration[i],
                    weight_of,
                    positive_of,
                    dislike_of,
                    skip_share,
                    watch_cap,
                )
                if w != 0.0:
                    totals[k, u] += w
                    acc = sums[k, u]
                    for d in range(dim):
                        acc[d] += w * row[d]


@njit(nogil=True, cache=True)
def _count_into(
    slot: np.ndarray, key: int, first: int, end: int, indices: np.ndarray, data: np.ndarray
) -> int:
    """Count one row of `key` in the current user's segment (which starts at `first`, filled up to `end`):
    a new entry where the key is not there yet (slots of earlier users lie below `first`)."""
    if slot[key] < first:
        slot[key] = end
        indices[end] = key
        end += 1
    data[slot[key]] += 1.0
    return end


@njit(parallel=True, nogil=True, cache=True)
def user_histories(
    starts: np.ndarray,
    order: np.ndarray,
    item: np.ndarray,
    flags: np.ndarray,
    positive_of: np.ndarray,
    item_author: np.ndarray,
    n_authors: int,
    n_blocks: int,
):
    """Per user, in one pass over its rows: views per author, positives per author, positives per clip
    (CSR parts each: indptr int64, indices int32 in first-seen order, data float32 counts) and the user's
    positive count. A user's distinct keys are at most its rows, so each history is first written into the
    user's own row range (3 x rows x 8 bytes of scratch), then compacted. Each of `n_blocks` threads keeps
    O(n_authors + n_items) slots for its users."""
    n_users = starts.shape[0] - 1
    n_items = item_author.shape[0]
    per_block = (n_users + n_blocks - 1) // n_blocks
    keys = np.empty((3, order.shape[0]), dtype=np.int32)
    counts = np.zeros((3, order.shape[0]), dtype=np.float32)
    sizes = np.zeros((3, n_users), dtype=np.int64)
    positives = np.zeros(n_users, dtype=np.int64)
    for b in prange(n_blocks):
        seen_author = np.full(n_authors, -1, dtype=np.int64)
        liked_author = np.full(n_authors, -1, dtype=np.int64)
        liked_item = np.full(n_items, -1, dtype=np.int64)
        for u in range(b * per_block, min((b + 1) * per_block, n_users)):
            first = starts[u]
            e0, e1, e2 = first, first, first
            for j in range(starts[u], starts[u + 1]):
                r = order[j]
                i = item[r]
                a = item_author[i]
                e0 = _count_into(seen_author, a, first, e0, keys[0], counts[0])
                if positive_of[flags[r]]:
                    positives[u] += 1
                    e1 = _count_into(liked_author, a, first, e1, keys[1], counts[1])
                    e2 = _count_into(liked_item, i, first, e2, keys[2], counts[2])
            sizes[0, u], sizes[1, u], sizes[2, u] = e0 - first, e1 - first, e2 - first
    return (
        _compact(starts, keys[0], counts[0], sizes[0]),
        _compact(starts, keys[1], counts[1], sizes[1]),
        _compact(starts, keys[2], counts[2], sizes[2]),
        positives,
    )


@njit(parallel=True, nogil=True, cache=True)
def _compact(starts: np.ndarray, keys: np.ndarray, counts: np.ndarray, sizes: np.ndarray):
    """CSR parts from per-user segments written at each user's row offset (`sizes` entries each)."""
    indptr = np.zeros(sizes.shape[0] + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(sizes)
    indices = np.empty(indptr[-1], dtype=np.int32)
    data = np.empty(indptr[-1], dtype=np.float32)
    for u in prange(sizes.shape[0]):
        indices[indptr[u] : indptr[u + 1]] = keys[starts[u] : starts[u] + sizes[u]]
        data[indptr[u] : indptr[u + 1]] = counts[starts[u] : starts[u] + sizes[u]]
    return indptr, indices, data


@njit(nogil=True, cache=True)
def add_counts(index: np.ndarray, positive: np.ndarray, views: np.ndarray, positives: np.ndarray) -> None:
    """views[index[r]] += 1 and positives[index[r]] += positive[r] for every row, in one pass."""
    for r in range(index.shape[0]):
        views[index[r]] += 1
        if positive[r]:
            positives[index[r]] += 1
