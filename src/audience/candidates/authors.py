"""Author fans: users ranked by their expected positives on a new clip of an author they already follow.

score(u, a) = views(u, a) x (positives(u, a) + m r0) / (views(u, a) + m): how often u sees a's clips
(exposure) times u's engagement rate with a, shrunk towards the global rate r0 with strength m. Views and
positives are recency-weighted (FitData.histories). A clip whose author is unknown or has no audience gets
no candidates. Memory: one (n_authors x n_users) CSR of the distinct (user, author) pairs; a query is a
row lookup plus a sparse top-k."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from audience.arrays import TopK, sparse_top_k, sparse_values_at
from audience.candidates.base import ClipQueries
from audience.config import AuthorFansSettings
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData


class AuthorFansSource:
    name = "author_fans"
    # a user's scores read its own histories and the global rate r0 (candidates/sharded.py)
    user_separable = True

    def __init__(self, settings: AuthorFansSettings | None = None):
        settings = settings or AuthorFansSettings()
        self.prior_strength, self.batch = settings.prior_strength, settings.batch
        self.author_users: sparse.csr_matrix | None = None
        self.total: np.ndarray | None = None  # the population's (positives, views), when sharded

    def population(self, data: FitData) -> np.ndarray:
        """What r0 is made of, additive over user shards: (recency-weighted positives, views) of `data`."""
        positives = data.histories["user_author_positives"].sum(dtype=np.float64)
        return np.array([positives, data.histories["user_author_views"].sum(dtype=np.float64)])

    def with_population(self, total: np.ndarray) -> AuthorFansSource:
        """Fit with the rate of `total` (population() summed over every user shard) instead of the data's."""
        self.total = np.asarray(total, dtype=np.float64)
        return self

    def fit(self, data: FitData, catalog: Catalog) -> AuthorFansSource:
        views = data.histories["user_author_views"].tocsr()
        positives = data.histories["user_author_positives"].tocsr()
        views.sort_indices()
        positives.sort_indices()
        total = self.population(data) if self.total is None else self.total
        rate = total[0] / max(total[1], 1e-12)
        rows = np.repeat(np.arange(views.shape[0]), np.diff(views.indptr))  # positives on views' pattern
        pos = sparse_values_at(positives, rows, views.indices).astype(np.float64)
        m = self.prior_strength
        score = views.copy().astype(np.float32)
        score.data = (views.data * (pos + m * rate) / (views.data + m)).astype(np.float32)
        self.author_users = score.T.tocsr()  # authors x users
        return self

    def recommend(self, clips: ClipQueries, k: int) -> TopK:
        """Clips of one author share its list: one sparse top-k per distinct author of the queries."""
        assert self.author_users is not None, "fit first"
        out = TopK.empty(len(clips), k)
        rows = np.flatnonzero(clips.author >= 0)
        authors, clip_author = np.unique(clips.author[rows], return_inverse=True)
        lists = TopK.empty(len(authors), k)
        for start in range(0, authors.size, self.batch):  # batches of authors: a sparse gather + top-k each
            part = slice(start, start + self.batch)
            top = sparse_top_k(self.author_users[authors[part]], k)
            lists.ids[part], lists.scores[part] = top.ids, top.scores
        out.ids[rows], out.scores[rows] = lists.ids[clip_author], lists.scores[clip_author]
        return out
