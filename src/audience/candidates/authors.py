"""Author fans: users ranked by their expected positives on a new clip of an author they already follow.

score(u, a) = views(u, a) x (positives(u, a) + m r0) / (views(u, a) + m): how often u sees a's clips
(exposure) times u's engagement rate with a, shrunk towards the global rate r0 with strength m. Views and
positives are recency-weighted (FitData.histories). A clip whose author is unknown or has no audience gets
no candidates. Memory: one (n_authors x n_users) CSR of the distinct (user, author) pairs; a query is a
row lookup plus a sparse top-k."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from audience.candidates.base import ClipQueries, TopK, sparse_top_k
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData


def align_to_pattern(pattern: sparse.csr_matrix, values: sparse.csr_matrix) -> np.ndarray:
    """`values`' entries laid out on `pattern`'s sparsity (both canonical CSR, values' pattern a subset)."""
    n_cols = pattern.shape[1]
    rows_p = np.repeat(np.arange(pattern.shape[0], dtype=np.int64), np.diff(pattern.indptr))
    rows_v = np.repeat(np.arange(values.shape[0], dtype=np.int64), np.diff(values.indptr))
    keys_p = rows_p * n_cols + pattern.indices
    keys_v = rows_v * n_cols + values.indices
    out = np.zeros(pattern.nnz, dtype=np.float64)
    out[np.searchsorted(keys_p, keys_v)] = values.data
    return out


class AuthorFansSource:
    name = "author_fans"

    def __init__(self, prior_strength: float = 5.0, batch: int = 4096):
        self.prior_strength = prior_strength
        self.batch = batch
        self.author_users: sparse.csr_matrix | None = None

    def fit(self, data: FitData, catalog: Catalog) -> AuthorFansSource:
        views = data.histories["user_author_views"].tocsr()
        positives = data.histories["user_author_positives"].tocsr()
        views.sort_indices()
        positives.sort_indices()
        rate = positives.sum() / max(views.sum(), 1e-12)
        pos = align_to_pattern(views, positives)
        m = self.prior_strength
        score = views.copy().astype(np.float32)
        score.data = (views.data * (pos + m * rate) / (views.data + m)).astype(np.float32)
        self.author_users = score.T.tocsr()  # authors x users
        return self

    def recommend(self, clips: ClipQueries, k: int) -> TopK:
        assert self.author_users is not None, "fit first"
        out = TopK.empty(len(clips), k)
        rows = np.flatnonzero(clips.author >= 0)
        for start in range(0, rows.size, self.batch):  # batches of clips, each one sparse gather + top-k
            part = rows[start : start + self.batch]
            top = sparse_top_k(self.author_users[clips.author[part]], k)
            out.users[part], out.scores[part] = top.users, top.scores
        return out
