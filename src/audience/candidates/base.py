"""The one interface every clip -> users generator implements, and the shapes it passes around.

A generator is fitted once on `FitData` + `Catalog` (weeks before the truth week only), then asked for the
top-k users of a batch of new clips as an `audience.arrays.TopK` (ids = user indices, the shape the CF
models return too): ids (n_clips, k) int32 padded with -1, scores float32 padded with -inf, each row
ordered by score descending, then user ascending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from audience.arrays import TopK
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData


@dataclass
class ClipQueries:
    """New clips to find users for: what is known of them without interactions."""

    item_ids: np.ndarray  # uint32 external ids
    embedding: np.ndarray  # float32 (n, dim); zero rows where has_embedding is False
    has_embedding: np.ndarray  # bool (n,)
    author: np.ndarray  # int32 author index, -1 when the clip has no metadata or an unseen author
    duration: np.ndarray  # int32 seconds, -1 when unknown
    has_metadata: np.ndarray  # bool (n,)

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])

    def subset(self, rows: np.ndarray | slice) -> ClipQueries:
        """The queries at `rows` (same fields, sliced)."""
        return ClipQueries(
            self.item_ids[rows],
            self.embedding[rows],
            self.has_embedding[rows],
            self.author[rows],
            self.duration[rows],
            self.has_metadata[rows],
        )

    @classmethod
    def from_catalog(cls, catalog: Catalog, item_ids: np.ndarray) -> ClipQueries:
        """Look the target clips up in metadata and embeddings; unknowns are flagged, never guessed."""
        item_ids = np.asarray(item_ids, dtype=np.uint32)
        idx = catalog.items.lookup(item_ids)
        has_metadata = idx >= 0
        embedding = np.zeros((item_ids.shape[0], catalog.embedding.shape[1]), dtype=np.float32)
        has_embedding = np.zeros(item_ids.shape[0], dtype=bool)
        embedding[has_metadata] = catalog.embedding[idx[has_metadata]]
        has_embedding[has_metadata] = catalog.has_embedding[idx[has_metadata]]
        author = np.where(has_metadata, catalog.item_author[np.maximum(idx, 0)], -1).astype(np.int32)
        duration = np.where(has_metadata, catalog.item_duration[np.maximum(idx, 0)].astype(np.int32), -1)
        return cls(item_ids, embedding, has_embedding, author, duration, has_metadata)


class CandidateSource(Protocol):
    """Every generator: `fit` on the fit weeks' aggregates, then `recommend` users for new clips."""

    name: str

    def fit(self, data: FitData, catalog: Catalog) -> CandidateSource: ...

    def recommend(self, clips: ClipQueries, k: int) -> TopK: ...
