"""The local engine: every pass in this process (the default; the README's figures are measured on it)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from audience.arrays import TopK
from audience.candidates.base import CandidateSource, ClipQueries
from audience.data.catalog import Catalog
from audience.data.weeks import distinct_ids
from audience.profiles.aggregates import LocalAggregation
from audience.profiles.fit_data import FitData
from audience.rank._booster import LocalBoosting
from audience.rank.features import PoolContext, pair_features


class LocalEngine(LocalAggregation):
    """Every heavy pass in this process: the weekly passes (LocalAggregation), the distinct ids, the sources'
    queries, the pair features and the boosting."""

    name = "local"

    def distinct_ids(
        self, weeks: Sequence[Path], progress: bool = False, cache_dir: Path | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return distinct_ids(weeks, progress, cache_dir)

    def recommend(self, source: CandidateSource, queries: ClipQueries, k: int) -> TopK:
        return source.recommend(queries, k)

    # the rank stage scores its pool this many clips at a time (features, then prediction, per block)
    feature_block_clips: int | None = 4096

    def pair_features(
        self,
        pool: pl.DataFrame,
        fit: FitData,
        catalog: Catalog,
        queries: ClipQueries,
        context: PoolContext | None = None,
    ) -> pl.DataFrame:
        return pair_features(pool, fit, catalog, queries, context)

    def boosting(self, n_threads: int) -> LocalBoosting:
        return LocalBoosting(n_threads)
