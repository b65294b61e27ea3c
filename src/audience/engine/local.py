"""The local engine: every pass in this process (the default; the README's figures are measured on it)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from audience.arrays import TopK
from audience.candidates.base import CandidateSource, ClipQueries
from audience.config import ProfileSettings
from audience.data.catalog import Catalog
from audience.data.weeks import distinct_ids
from audience.profiles.aggregates import AggregateStore, WeekAggregate, aggregate_week
from audience.profiles.fit_data import FitData
from audience.rank._booster import LocalBoosting
from audience.rank.features import pair_features


class LocalEngine:
    name = "local"

    def build_aggregates(self, store: AggregateStore, weeks: Sequence[Path], progress: bool = True) -> None:
        store.build_missing(weeks, progress)

    def aggregate_weeks(
        self,
        weeks: Sequence[Path],
        catalog: Catalog,
        positive_flags: Sequence[str],
        settings: ProfileSettings,
        bar=None,
        **options,
    ) -> Iterator[WeekAggregate]:
        """Uncached aggregates of `weeks` (aggregate_week's `options`), one week at a time."""
        for week in weeks:
            yield aggregate_week(week, catalog, positive_flags, settings, bar=bar, **options)

    def distinct_ids(
        self, weeks: Sequence[Path], progress: bool = False, cache_dir: Path | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return distinct_ids(weeks, progress, cache_dir)

    def recommend(self, source: CandidateSource, queries: ClipQueries, k: int) -> TopK:
        return source.recommend(queries, k)

    def pair_features(
        self, pool: pl.DataFrame, fit: FitData, catalog: Catalog, queries: ClipQueries
    ) -> pl.DataFrame:
        return pair_features(pool, fit, catalog, queries)

    def boosting(self, n_threads: int) -> LocalBoosting:
        return LocalBoosting(n_threads)
