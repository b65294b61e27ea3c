"""Content co-engagement: users who engaged with the new clip's nearest old clips (by content embedding).

score(u, c) = sum over the n nearest old clips j of max(cos(c, j), 0)^power x positives(u, j), with
positives recency-weighted (FitData.histories['item_user_positives']). Old clips are those with an
embedding and at least one positive in the fit weeks, indexed with hnswlib (cosine). Limits: the clip
index costs about n_old_clips x (4 x dim + 8 x M) bytes; the top-k of the neighbours' positives
(`arrays.product_top_k`) costs n x (users per clip) multiply-adds per query and a buffer of about
32 x n_users bytes per thread, never the product itself."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from audience.arrays import TopK, product_top_k, unit_rows
from audience.candidates.ann import HnswIndex
from audience.candidates.base import ClipQueries
from audience.config import CoEngagementSettings, HnswConfig
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData


def nearest_clip_weights(index: HnswIndex, queries: np.ndarray, n: int, power: float, n_items: int):
    """(n_queries x n_items) CSR: each query's `n` nearest indexed clips, weighted max(cos, 0)^power."""
    near = index.query(unit_rows(queries), n)
    valid = near.ids >= 0
    weight = np.maximum(near.scores[valid], 0.0) ** power
    return sparse.csr_matrix((weight, (np.nonzero(valid)[0], near.ids[valid])), shape=(len(queries), n_items))


class CoEngagementSource:
    name = "coengagement"
    # a user's score reads its own positives and the clip-side index (candidates/sharded.py)
    user_separable = True

    def __init__(
        self,
        settings: CoEngagementSettings | None = None,
        hnsw: HnswConfig | None = None,
        n_threads: int = 1,
        seed: int = 0,
    ):
        settings = settings or CoEngagementSettings()
        self.n_neighbours, self.power, self.batch = settings.n_neighbours, settings.power, settings.batch
        self.hnsw = hnsw or HnswConfig()
        self.n_threads, self.seed = n_threads, seed
        self.index: HnswIndex | None = None
        self.item_users: sparse.csr_matrix | None = None
        self.dim = 0

    def fit(self, data: FitData, catalog: Catalog) -> CoEngagementSource:
        self.item_users = data.histories["item_user_positives"].tocsr()
        old = np.flatnonzero(catalog.has_embedding & (data.item_positives > 0)).astype(np.int32)
        self.dim = catalog.embedding.shape[1]
        self.index = HnswIndex.from_config("cosine", self.hnsw, self.n_threads, self.seed).build(
            unit_rows(catalog.embedding[old]), old
        )
        return self

    def recommend(self, clips: ClipQueries, k: int) -> TopK:
        assert self.index is not None and self.item_users is not None, "fit first"
        out = TopK.empty(len(clips), k)
        rows = np.flatnonzero(clips.has_embedding)
        n_items = self.item_users.shape[0]
        for start in range(0, rows.size, self.batch):  # batches of clips, each one sparse product + top-k
            part = rows[start : start + self.batch]
            neighbours = nearest_clip_weights(
                self.index, clips.embedding[part, : self.dim], self.n_neighbours, self.power, n_items
            )
            top = product_top_k(neighbours, self.item_users, k)
            out.ids[part], out.scores[part] = top.ids, top.scores
        return out
