"""How much a user watches and engages with the authors most like a clip's author (reranker features).

similar(u, a) = sum over a's `k` nearest other authors b of cos(a, b) x history(u, b), where history is a
recency-weighted user x author matrix (FitData.histories) and cos(a, b) is the cosine of the two authors'
audiences: columns of log1p(user x author views). It reaches the users the author-fans source cannot:
those who never saw this author but follow its neighbours.

Limits: the neighbour search runs over the distinct authors of the target clips only, in blocks of
authors (a dense block of at most 2**25 similarities); its cost is about sum over users of
(authors seen) x (target authors seen) pairs. When every author's neighbours would cost more than
`pair_budget` (config.SimilarAuthorsSettings: 4e9 pairs, ~15 s; VK density, ~1,400 authors a user, needs
2e11), each user's audience is cut to its `per_user` most viewed authors, the largest number within that
budget (logged). The cut depends on the fit data alone, never on how many target authors a run has: a
holdout run with a few thousand pseudo-new clips and a test week with tens of thousands then read the
feature on one scale (a cut that followed the target count gave the test week fewer authors a user than the
label weeks the reranker learned from). Setting `per_user` fixes it. The per-pair sums (numba) read each
pool user's history row once into a dense n_authors buffer, then `k` direct lookups per pair: pool rows x k
plus the pool users' history entries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

import numpy as np
from numba import get_num_threads, njit, prange
from scipy import sparse

from audience.arrays import top_k
from audience.profiles.week_kernels import group_rows

log = logging.getLogger(__name__)


def top_per_row(matrix: sparse.csr_matrix, n: int) -> sparse.csr_matrix:
    """The `n` largest entries of each row (ties: lower column first), same shape; one sort per row of more
    than `n` entries, rows in parallel (numba)."""
    matrix = sparse.csr_matrix(matrix)
    matrix.sort_indices()
    keep = _top_mask(matrix.indptr.astype(np.int64), matrix.data, n)
    indptr = np.zeros(matrix.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.minimum(np.diff(matrix.indptr), n), out=indptr[1:])
    return sparse.csr_matrix((matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape)


@njit(parallel=True, cache=True)
def _top_mask(indptr: np.ndarray, data: np.ndarray, n: int) -> np.ndarray:  # pragma: no cover - numba
    """Per row (columns ascending), the entries among its `n` largest values, ties to the lower column."""
    keep = np.zeros(data.shape[0], dtype=np.bool_)
    for r in prange(indptr.shape[0] - 1):
        lo, hi = indptr[r], indptr[r + 1]
        if hi - lo <= n:
            keep[lo:hi] = True
        else:
            order = np.argsort(-data[lo:hi], kind="mergesort")  # stable: equal values keep column order
            for j in range(n):
                keep[lo + order[j]] = True
    return keep


def budget_per_user(seen: np.ndarray, pair_budget: float) -> int | None:
    """The largest per-user author count p with sum(min(seen, p)^2) <= pair_budget (None when every author
    fits): the cost of every author's neighbours when each user keeps p authors."""
    return budget_from_histogram(np.bincount(np.asarray(seen, dtype=np.int64)), pair_budget)


def budget_from_histogram(histogram: np.ndarray, pair_budget: float) -> int | None:
    """`budget_per_user` from the histogram of authors seen per user (histogram[s]: users who saw s
    authors), which user shards add up (`seen_histogram`)."""
    seen = np.arange(histogram.size, dtype=np.float64)
    users = np.asarray(histogram, dtype=np.float64)
    if (users * seen**2).sum() <= pair_budget:
        return None
    low, high = 1, int(np.flatnonzero(users)[-1])
    while low < high:  # the cost grows with p: binary search
        mid = (low + high + 1) // 2
        if (users * np.minimum(seen, mid) ** 2).sum() <= pair_budget:
            low = mid
        else:
            high = mid - 1
    return low


def seen_histogram(user_author_views: sparse.csr_matrix) -> np.ndarray:
    """int64 histogram of the authors each user saw: additive over user shards (pad to add)."""
    return np.bincount(np.diff(sparse.csr_matrix(user_author_views).indptr).astype(np.int64))


def cut_audience(user_author_views: sparse.csr_matrix, per_user: int | None) -> sparse.csr_matrix:
    """log1p of each user's views of their `per_user` most viewed authors (all when None), float32: the
    rows the audience cosines are made of. A shard's rows are the whole matrix's rows."""
    audience = sparse.csr_matrix(user_author_views, dtype=np.float32, copy=True)
    if per_user is not None and np.diff(audience.indptr).max(initial=0) > per_user:
        audience = top_per_row(audience, per_user)
    audience.data = np.log1p(audience.data)
    return audience


def squared_norms(audience: sparse.csr_matrix) -> np.ndarray:
    """float64 per author: the squared norm of its audience column, additive over user shards."""
    data = audience.data.astype(np.float64)
    return np.bincount(audience.indices, weights=data * data, minlength=audience.shape[1])


def unit_audience(
    audience: sparse.csr_matrix, norms: np.ndarray
) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """(authors x users, users x authors) float64 CSR of the audience with unit author columns (`norms`: the
    columns' norms over every user), the two operands of `block_similarity`."""
    unit = (audience.astype(np.float64) @ sparse.diags(1.0 / np.maximum(norms, 1e-12))).tocsc()
    return unit.T.tocsr(), unit.tocsr()


def block_similarity(operands: tuple[sparse.csr_matrix, sparse.csr_matrix], part: np.ndarray) -> np.ndarray:
    """Dense float64 (len(part), n_authors) audience cosines of the authors `part` with every author: a sum
    over users, so user shards' blocks add up to the whole one's (to float64 rounding)."""
    by_author, audience = operands
    return (by_author[part] @ audience).toarray()


def author_neighbours(
    user_author_views: sparse.csr_matrix,
    authors: np.ndarray,
    k: int,
    per_user: int | None = None,
    pair_budget: float = np.inf,
    block: int | None = None,
) -> sparse.csr_matrix:
    """(len(authors) x n_authors) CSR: row i holds the `k` authors most similar to authors[i] (itself
    excluded), valued by their audience cosine. `per_user` cuts each user's audience to that many authors;
    without it, the cut is the largest within `pair_budget` (none by default)."""
    if per_user is None:  # the budget of every author's neighbours: the same cut whatever the targets
        per_user = cut_per_user(seen_histogram(user_author_views), pair_budget)
    audience = cut_audience(user_author_views, per_user)
    operands = unit_audience(audience, np.sqrt(squared_norms(audience)))
    n_authors = user_author_views.shape[1]
    return neighbours_by_blocks(partial(block_similarity, operands), authors, n_authors, k, block)


def cut_per_user(histogram: np.ndarray, pair_budget: float) -> int | None:
    """`budget_from_histogram`, logged when it cuts."""
    per_user = budget_from_histogram(histogram, pair_budget)
    if per_user is not None:
        log.info("similar authors: each user's audience cut to its %d most viewed authors", per_user)
    return per_user


def neighbours_by_blocks(
    similarity: Callable[[np.ndarray], np.ndarray],
    authors: np.ndarray,
    n_authors: int,
    k: int,
    block: int | None = None,
) -> sparse.csr_matrix:
    """`author_neighbours`' rows from `similarity(part)` (dense cosines of a block of target authors with
    every author: `block_similarity`, or its sum over user shards), one block at a time."""
    authors = np.asarray(authors, dtype=np.int64)
    rows, cols, values = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    block = block or max(1, min(512, (1 << 25) // max(n_authors, 1)))
    for start in range(0, authors.size, block):  # blocks of target authors: a sparse product, dense top-k
        part = authors[start : start + block]
        sim = similarity(part)
        sim[np.arange(part.size), part] = 0.0  # an author is not its own neighbour
        sim[sim <= 0] = -np.inf
        top = top_k(sim, k)
        found = top.ids >= 0
        rows.append(np.nonzero(found)[0] + start)
        cols.append(top.ids[found].astype(np.int64))
        values.append(top.scores[found].astype(np.float32))  # float64 sums rounded once: equal over shards
    shape = (authors.size, n_authors)
    out = sparse.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=shape
    )
    out.sort_indices()
    return out


@njit(parallel=True, cache=True)
def _affinity_kernel(
    bounds, starts, order, pair_row, h_indptr, h_indices, h_data, n_cols, n_indptr, n_indices, n_data, out
):  # pragma: no cover - numba
    """Pairs grouped by user (`starts`, `order`), users cut into blocks (`bounds`) run in parallel: each
    user's history row is scattered once into the block's dense buffer, then every pair of that user sums
    its neighbours' entries by direct lookup."""
    for b in prange(bounds.shape[0] - 1):
        dense = np.zeros(n_cols, np.float32)
        for u in range(bounds[b], bounds[b + 1]):
            if starts[u] == starts[u + 1]:
                continue
            for j in range(h_indptr[u], h_indptr[u + 1]):
                dense[h_indices[j]] = h_data[j]
            for i in range(starts[u], starts[u + 1]):
                pair = order[i]
                r = pair_row[pair]
                if r < 0:
                    out[pair] = np.nan
                else:
                    total = np.float32(0.0)
                    for j in range(n_indptr[r], n_indptr[r + 1]):
                        total += n_data[j] * dense[n_indices[j]]
                    out[pair] = total
            for j in range(h_indptr[u], h_indptr[u + 1]):
                dense[h_indices[j]] = 0.0


def neighbour_affinity(
    history: sparse.csr_matrix, neighbours: sparse.csr_matrix, pair_user: np.ndarray, pair_row: np.ndarray
) -> np.ndarray:
    """float32 per pair: sum over neighbours[pair_row] of similarity x history[pair_user, neighbour];
    NaN where pair_row < 0 (the clip's author is unknown). Cost: the pairs grouped by user (a counting
    sort), the pairs' users' history rows once each, plus pairs x neighbours per row, over blocks of users
    in parallel; memory one dense row of n_authors per block (4 blocks a thread)."""
    history = sparse.csr_matrix(history)
    n_users = history.shape[0]
    starts, order = group_rows(np.asarray(pair_user, dtype=np.int32), n_users)
    # blocks of about equal pair counts, several a thread so that uneven users even out
    n_blocks = max(1, min(4 * get_num_threads(), n_users))
    bounds = np.searchsorted(starts, np.linspace(0, starts[-1], n_blocks + 1), side="left")
    bounds[0], bounds[-1] = 0, n_users
    out = np.empty(order.shape[0], dtype=np.float32)
    _affinity_kernel(
        np.unique(bounds),
        starts,
        order,
        np.asarray(pair_row, dtype=np.int64),
        history.indptr.astype(np.int64),
        history.indices.astype(np.int64),
        history.data.astype(np.float32),
        history.shape[1],
        neighbours.indptr.astype(np.int64),
        neighbours.indices.astype(np.int64),
        neighbours.data.astype(np.float32),
        out,
    )
    return out
