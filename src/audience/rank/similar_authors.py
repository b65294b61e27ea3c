"""How much a user watches and engages with the authors most like a clip's author (reranker features).

similar(u, a) = sum over a's `k` nearest other authors b of cos(a, b) x history(u, b), where history is a
recency-weighted user x author matrix (FitData.histories) and cos(a, b) is the cosine of the two authors'
audiences: columns of log1p(user x author views). It reaches the users the author-fans source cannot:
those who never saw this author but follow its neighbours. `per_user` can keep only each user's most
viewed authors, which bounds the co-occurrence product at about n_users x per_user^2 pairs but loses
most of the features' signal; the default (None) keeps every author.

Limits: the neighbour search runs over the distinct authors of the target clips only, in blocks of `block`
authors (memory ~ block x n_authors x 12 bytes at most); the per-pair sums (numba) read each pool user's
history row once into a dense n_authors buffer, then `k` direct lookups per pair, so they scale with
pool rows x k plus the pool users' history entries."""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import sparse

from audience.arrays import ranked_entries, sparse_top_k


def top_per_row(matrix: sparse.csr_matrix, n: int) -> sparse.csr_matrix:
    """The `n` largest entries of each row (ties: lower column first), same shape; O(nnz log nnz)."""
    matrix = sparse.csr_matrix(matrix)
    order, rows, position = ranked_entries(matrix)
    keep = position < n
    return sparse.csr_matrix(
        (matrix.data[order][keep], (rows[keep], matrix.indices[order][keep])), shape=matrix.shape
    )


def author_neighbours(
    user_author_views: sparse.csr_matrix,
    authors: np.ndarray,
    k: int = 50,
    per_user: int | None = None,
    block: int = 512,
) -> sparse.csr_matrix:
    """(len(authors) x n_authors) CSR: row i holds the `k` authors most similar to authors[i] (itself
    excluded), valued by their audience cosine."""
    audience = sparse.csr_matrix(user_author_views, dtype=np.float32, copy=True)
    if per_user is not None:
        audience = top_per_row(audience, per_user)
    audience.data = np.log1p(audience.data)
    norm = np.sqrt(np.asarray(audience.multiply(audience).sum(axis=0)).ravel())
    audience = (audience @ sparse.diags((1.0 / np.maximum(norm, 1e-12)).astype(np.float32))).tocsc()
    by_author = audience.T.tocsr()
    audience = audience.tocsr()
    authors = np.asarray(authors, dtype=np.int64)
    rows, cols, values = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for start in range(0, authors.size, block):  # blocks of target authors, each one sparse product
        part = authors[start : start + block]
        sim = (by_author[part] @ audience).tocsr()
        own = np.repeat(part, np.diff(sim.indptr))
        sim.data[sim.indices == own] = 0.0  # an author is not its own neighbour
        sim.eliminate_zeros()
        top = sparse_top_k(sim, k)
        found = top.ids >= 0
        rows.append(np.nonzero(found)[0] + start)
        cols.append(top.ids[found].astype(np.int64))
        values.append(top.scores[found].astype(np.float32))
    shape = (authors.size, user_author_views.shape[1])
    out = sparse.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=shape
    )
    out.sort_indices()
    return out


@njit(cache=True)
def _affinity_kernel(
    order, pair_user, pair_row, h_indptr, h_indices, h_data, n_cols, n_indptr, n_indices, n_data, out
):  # pragma: no cover - numba
    """Pairs in user order: each user's history row is scattered once into a dense buffer, then every
    pair of that user sums its neighbours' entries by direct lookup."""
    dense = np.zeros(n_cols, np.float32)
    i = 0
    while i < order.shape[0]:
        u = pair_user[order[i]]
        for j in range(h_indptr[u], h_indptr[u + 1]):
            dense[h_indices[j]] = h_data[j]
        while i < order.shape[0] and pair_user[order[i]] == u:
            pair = order[i]
            r = pair_row[pair]
            if r < 0:
                out[pair] = np.nan
            else:
                total = np.float32(0.0)
                for j in range(n_indptr[r], n_indptr[r + 1]):
                    total += n_data[j] * dense[n_indices[j]]
                out[pair] = total
            i += 1
        for j in range(h_indptr[u], h_indptr[u + 1]):
            dense[h_indices[j]] = 0.0


def neighbour_affinity(
    history: sparse.csr_matrix, neighbours: sparse.csr_matrix, pair_user: np.ndarray, pair_row: np.ndarray
) -> np.ndarray:
    """float32 per pair: sum over neighbours[pair_row] of similarity x history[pair_user, neighbour];
    NaN where pair_row < 0 (the clip's author is unknown). Cost: the pairs' users' history rows once each,
    plus pairs x neighbours per row; memory one dense row of n_authors."""
    history = sparse.csr_matrix(history)
    pair_user = np.asarray(pair_user, dtype=np.int64)
    out = np.empty(pair_user.shape[0], dtype=np.float32)
    _affinity_kernel(
        np.argsort(pair_user, kind="stable"),
        pair_user,
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
