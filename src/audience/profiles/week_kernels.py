"""Numba kernels of the week pass: rows grouped by user, then per-user sums with no write conflicts.

A chunk's rows are grouped by user with a counting sort (O(rows), `group_rows`); every user's rows are then
reduced by one thread (`user_weighted_sums`, `user_key_totals`), so the sums need no atomics and each
user's accumulators stay in cache while its rows stream by. The random reads are the item table's rows
(one embedding row per usable view): that gather bounds the pass, about the numba scatter-add reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def group_rows(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Counting sort of row numbers by `keys` (int32 in [0, n_keys)): (starts (n_keys + 1,), order), the
    rows of key k being order[starts[k]:starts[k + 1]] in their original order."""
    starts = np.zeros(n_keys + 1, dtype=np.int64)
    for r in range(keys.shape[0]):
        starts[keys[r] + 1] += 1
    for k in range(n_keys):
        starts[k + 1] += starts[k]
    fill = starts[:-1].copy()
    order = np.empty(keys.shape[0], dtype=np.int64)
    for r in range(keys.shape[0]):
        k = keys[r]
        order[fill[k]] = r
        fill[k] += 1
    return starts, order


KIND_CODES = {
    "all": 0,
    "positive": 1,
    "negative": 2,
    "timespent": 3,
}  # the weights of fit_data.PROFILE_WEIGHTS


@njit(parallel=True, cache=True)
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
    profile kinds `kinds` (KIND_CODES), rows of clips without `usable` rows skipped. The weights are those of
    fit_data.PROFILE_WEIGHTS computed in float32 the same way (tests compare the two): `flags` packs a row's
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
                code = kinds[k]
                if code == 0:
                    w = np.float32(1.0)
                elif code == 1:
                    w = weight_of[packed]
                elif code == 2:
                    skip = seconds < skip_share * duration[i]
                    w = (
                        np.float32(1.0)
                        if (dislike_of[packed] or skip) and not positive_of[packed]
                        else np.float32(0.0)
                    )
                else:
                    w = min(seconds / duration[i], watch_cap)
                if w != 0.0:
                    totals[k, u] += w
                    acc = sums[k, u]
                    for d in range(dim):
                        acc[d] += w * row[d]


@njit(parallel=True, cache=True)
def user_key_totals(
    starts: np.ndarray, order: np.ndarray, keys: np.ndarray, n_keys: int, n_blocks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user, the count of its rows for each distinct key (rows with key < 0 skipped), as CSR arrays
    (indptr int64, indices int32 in first-seen order, data float32). Each of `n_blocks` threads keeps one
    O(n_keys) scratch array for its own range of users."""
    n_users = starts.shape[0] - 1
    per_block = (n_users + n_blocks - 1) // n_blocks
    distinct = np.zeros(n_users + 1, dtype=np.int64)
    for b in prange(n_blocks):
        last_user = np.full(n_keys, -1, dtype=np.int64)
        for u in range(b * per_block, min((b + 1) * per_block, n_users)):
            count = 0
            for j in range(starts[u], starts[u + 1]):
                key = keys[order[j]]
                if key >= 0 and last_user[key] != u:
                    last_user[key] = u
                    count += 1
            distinct[u + 1] = count
    indptr = np.cumsum(distinct)
    indices = np.empty(indptr[-1], dtype=np.int32)
    data = np.zeros(indptr[-1], dtype=np.float32)
    for b in prange(n_blocks):
        slot = np.full(n_keys, -1, dtype=np.int64)  # where the key sits in the current user's segment
        for u in range(b * per_block, min((b + 1) * per_block, n_users)):
            end = indptr[u]
            for j in range(starts[u], starts[u + 1]):
                key = keys[order[j]]
                if key < 0:
                    continue
                if slot[key] < indptr[u]:  # not yet seen for this user (slots of earlier users are lower)
                    slot[key] = end
                    indices[end] = key
                    end += 1
                data[slot[key]] += 1.0
    return indptr, indices, data


@njit(cache=True)
def add_counts(index: np.ndarray, positive: np.ndarray, views: np.ndarray, positives: np.ndarray) -> None:
    """views[index[r]] += 1 and positives[index[r]] += positive[r] for every row, in one pass."""
    for r in range(index.shape[0]):
        views[index[r]] += 1
        if positive[r]:
            positives[index[r]] += 1
