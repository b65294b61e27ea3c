"""Soft-cluster ("interest bubble") retrieval: a clip's GMM posterior against users' mean posteriors.

The mixture is the dataset's, fitted on its clip embeddings (profiles/dataset_mixture.py, FitData.gmm), and
the week pass sums the profiles with the other weekly aggregates; a user's profile is the mean
posterior over the clips they watched ('gmm:all') or engaged with ('gmm:positive'); a new clip is scored by
the cosine between its own posterior and each profile, through the same HNSW/exact search as the averaged
embeddings. Limits: posteriors cost n_items x K x 4 bytes in the week pass; queries K dims."""

from __future__ import annotations

import numpy as np

from audience.arrays import unit_rows
from audience.candidates.base import ClipQueries
from audience.candidates.embedding import EmbeddingSource
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData
from audience.profiles.gmm import GmmModel


class GmmSource(EmbeddingSource):
    def __init__(self, kind: str = "all", backend: str = "hnsw", **kwargs):
        super().__init__(f"gmm_{kind}", backend, **kwargs)
        self.name = f"gmm:{kind}" if backend == "hnsw" else f"gmm-{backend}:{kind}"
        self.model: GmmModel | None = None

    def fit(self, data: FitData, catalog: Catalog) -> GmmSource:
        if data.gmm is None:
            raise ValueError(
                "gmm sources need the profiles stage to fit a mixture (configure a gmm:<kind> source)"
            )
        self.model = data.gmm
        super().fit(data, catalog)
        return self

    def query_vectors(self, clips: ClipQueries, rows: np.ndarray) -> np.ndarray:
        assert self.model is not None
        return unit_rows(self.model.predict_proba(clips.embedding[rows]))
