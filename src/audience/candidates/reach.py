"""Reach: users who watch the most clips like the new one, not merely the users whose taste is closest.

score(u, c) = w_u x cos(p_u, e_c): the user's profile weight w_u (for 'recency', their recency-weighted
views; for 'all', every view) times the cosine between their profile p_u and the clip's embedding e_c. It
is the expected volume of the user's viewing near the clip: activity times taste, where the plain
averaged-embedding sources ('hnsw:<profile>') rank by taste alone and 'popular' by activity alone. On
dense data (hundreds of views per user-week) who engages is mostly who watches a lot of the clip's kind.

Over soft clusters ('reach:gmm_all', 'reach:gmm_positive': a gmm: source or this one makes the profiles
stage fit the mixture), p_u is the user's mean posterior (shares summing to 1) and the clip's posterior q_c
replaces the cosine: score = w_u <p_u, q_c>, the user's expected views (or positives) in the clip's
clusters. A user of several interests keeps each one's volume, where the mean embedding blurs them.

Search: a maximum inner product over x_u = w_u p_u, turned into a cosine search for hnswlib by one extra
coordinate sqrt(M^2 - |x_u|^2) (M the largest norm; the query gets 0 there), so every indexed vector has
norm M and the cosine order is the inner-product order. Limits: as 'hnsw:<profile>' (an index of
n_users x (dim + 1) floats); users with no weight are left out; clips without an embedding get nothing."""

from __future__ import annotations

import numpy as np

from audience.arrays import unit_rows
from audience.candidates.ann import HnswIndex
from audience.candidates.base import ClipQueries
from audience.candidates.embedding import EmbeddingSource
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData
from audience.profiles.gmm import GmmModel


class ReachSource(EmbeddingSource):
    def __init__(self, profile: str = "recency", **kwargs):
        super().__init__(profile, "hnsw", **kwargs)
        self.name = f"reach:{profile}"
        self.max_norm = 0.0
        self.model: GmmModel | None = None  # the mixture, for profiles over soft clusters

    def fit(self, data: FitData, catalog: Catalog) -> ReachSource:
        self.ids, profiles = self.profile_rows(data)
        if self.profile.startswith("gmm_"):
            if data.gmm is None:
                raise ValueError(f"{self.name}: the profiles stage fitted no mixture")
            self.model = data.gmm
            # the stored profiles are unit rows of non-negative mean posteriors: back to shares summing to 1
            shares = profiles / np.maximum(profiles.sum(axis=1, keepdims=True), 1e-12)
        else:
            shares = unit_rows(profiles)
        scaled = shares * data.profile_weight[self.profile][self.ids, None]
        norms = np.linalg.norm(scaled, axis=1)
        self.max_norm = float(norms.max()) if norms.size else 1.0
        lift = np.sqrt(np.maximum(self.max_norm**2 - norms**2, 0.0))[:, None]
        self.vectors = np.hstack([scaled, lift]).astype(np.float32)
        self.index = HnswIndex.from_config("cosine", self.hnsw, self.n_threads, self.seed).build(
            self.vectors, self.ids
        )
        return self

    def query_vectors(self, clips: ClipQueries, rows: np.ndarray) -> np.ndarray:
        """The clips' unit embeddings cut to the profile width (or their posteriors), 0 on the lifting
        coordinate."""
        assert self.vectors is not None
        if self.model is not None:
            query = self.model.predict_proba(clips.embedding[rows]).astype(np.float32)
        else:
            query = unit_rows(clips.embedding[rows, : self.vectors.shape[1] - 1])
        return np.hstack([query, np.zeros((rows.size, 1), dtype=query.dtype)])

    def score_scale(self, queries: np.ndarray) -> np.ndarray:
        """The lifted cosine is <x_u, q_c> / (M |q_c|)."""
        return (self.max_norm * np.linalg.norm(queries, axis=1))[:, None]
