"""Reach: users who watch the most clips like the new one, not merely the users whose taste is closest.

score(u, c) = w_u x cos(p_u, e_c): the user's profile weight w_u (for 'recency', their recency-weighted
views; for 'all', every view) times the cosine between their profile p_u and the clip's embedding e_c. It
is the expected volume of the user's viewing near the clip: activity times taste, where the plain
averaged-embedding sources ('hnsw:<profile>') rank by taste alone and 'popular' by activity alone. On
dense data (hundreds of views per user-week) who engages is mostly who watches a lot of the clip's kind.

Search: a maximum inner product over x_u = w_u p_u, turned into a cosine search for hnswlib by one extra
coordinate sqrt(M^2 - |x_u|^2) (M the largest norm; the query gets 0 there), so every indexed vector has
norm M and the cosine order is the inner-product order. Limits: as 'hnsw:<profile>' (an index of
n_users x (dim + 1) floats); users with no weight are left out; clips without an embedding get nothing."""

from __future__ import annotations

import numpy as np

from audience.arrays import TopK, unit_rows
from audience.candidates.ann import HnswIndex
from audience.candidates.base import ClipQueries
from audience.candidates.embedding import EmbeddingSource
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData


class ReachSource(EmbeddingSource):
    def __init__(self, profile: str = "recency", **kwargs):
        super().__init__(profile, "hnsw", **kwargs)
        self.name = f"reach:{profile}"
        self.max_norm = 0.0

    def fit(self, data: FitData, catalog: Catalog) -> ReachSource:
        if self.profile not in data.profiles:
            raise ValueError(f"profile {self.profile!r} was not built; built: {sorted(data.profiles)}")
        weight = data.profile_weight[self.profile]
        self.ids = np.flatnonzero(weight > 0).astype(np.int32)
        scaled = unit_rows(data.profiles[self.profile][self.ids]) * weight[self.ids, None]
        norms = np.linalg.norm(scaled, axis=1)
        self.max_norm = float(norms.max()) if norms.size else 1.0
        lift = np.sqrt(np.maximum(self.max_norm**2 - norms**2, 0.0))[:, None]
        self.vectors = np.hstack([scaled, lift]).astype(np.float32)
        self.index = HnswIndex.from_config("cosine", self.hnsw, self.n_threads, self.seed).build(
            self.vectors, self.ids
        )
        return self

    def recommend(self, clips: ClipQueries, k: int) -> TopK:
        assert self.vectors is not None and self.index is not None, "fit first"
        out = TopK.empty(len(clips), k)
        rows = np.flatnonzero(clips.has_embedding)
        dim = self.vectors.shape[1] - 1
        queries = np.hstack([unit_rows(clips.embedding[rows, :dim]), np.zeros((rows.size, 1))])
        found = self.index.query(queries.astype(np.float32), k)
        # the cosine over lifted vectors is <x_u, e_c> / M: scaled back to the inner product
        out.ids[rows], out.scores[rows] = found.ids, found.scores * self.max_norm
        return out
