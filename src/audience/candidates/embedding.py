"""Averaged-embedding retrieval: users whose mean watched-clip embedding is closest (cosine) to the clip's.

Profiles come from `FitData.profiles[profile]` (unit rows; users with no usable history are left out of
the index). Backends: 'hnsw' (hnswlib, approximate, ~n log n build) and 'exact' (blocked matmul,
O(n_clips x n_users x dim)). Clips without an embedding get no candidates here (the blend falls back to
popularity for them)."""

from __future__ import annotations

import numpy as np

from audience.arrays import TopK, unit_rows
from audience.candidates.ann import HnswIndex, exact_search
from audience.candidates.base import ClipQueries
from audience.config import HnswConfig
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData


class EmbeddingSource:
    def __init__(
        self,
        profile: str = "all",
        backend: str = "hnsw",
        hnsw: HnswConfig | None = None,
        n_threads: int = 1,
        seed: int = 0,
    ):
        if backend not in ("hnsw", "exact"):
            raise ValueError(f"backend must be 'hnsw' or 'exact', got {backend!r}")
        self.profile, self.backend = profile, backend
        self.hnsw = hnsw or HnswConfig()
        self.n_threads, self.seed = n_threads, seed
        self.name = f"{backend}:{profile}"
        self.vectors: np.ndarray | None = None
        self.ids: np.ndarray | None = None
        self.index: HnswIndex | None = None

    @property
    def user_separable(self) -> bool:
        """Exact search splits by user (candidates/sharded.py); an HNSW index per shard answers otherwise."""
        return self.backend == "exact"

    @property
    def approximate_shards(self) -> bool:
        """An HNSW index per user shard: each answered score exact, the misses not the global index's."""
        return self.backend == "hnsw"

    def profile_rows(self, data: FitData) -> tuple[np.ndarray, np.ndarray]:
        """(user indices with a usable history, their profile rows) of this source's profile kind."""
        if self.profile not in data.profiles:
            raise ValueError(f"profile {self.profile!r} was not built; built: {sorted(data.profiles)}")
        ids = np.flatnonzero(data.profile_weight[self.profile] > 0).astype(np.int32)
        return ids, data.profiles[self.profile][ids]

    def fit(self, data: FitData, catalog: Catalog) -> EmbeddingSource:
        self.ids, self.vectors = self.profile_rows(data)
        if self.backend == "hnsw":
            self.index = HnswIndex.from_config("cosine", self.hnsw, self.n_threads, self.seed).build(
                self.vectors, self.ids
            )
        return self

    def query_vectors(self, clips: ClipQueries, rows: np.ndarray) -> np.ndarray:
        """Unit query vectors of the clips at `rows` (their embeddings, cut to the profile width)."""
        assert self.vectors is not None
        return unit_rows(clips.embedding[rows, : self.vectors.shape[1]])

    def recommend(self, clips: ClipQueries, k: int) -> TopK:
        assert self.vectors is not None and self.ids is not None, "fit first"
        out = TopK.empty(len(clips), k)
        rows = np.flatnonzero(clips.has_embedding)
        queries = self.query_vectors(clips, rows)
        if self.backend == "hnsw":
            assert self.index is not None
            found = self.index.query(queries, k)
        else:
            found = exact_search(self.vectors, self.ids, queries, k)
        out.ids[rows], out.scores[rows] = found.ids, found.scores * self.score_scale(queries)
        return out

    def score_scale(self, queries: np.ndarray) -> np.ndarray | float:
        """What the index's cosines are multiplied by to give this source's scores (per query row)."""
        return 1.0
