"""The local engine: every pass in this process (the default; the README's figures are measured on it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from audience.arrays import TopK
from audience.candidates.base import CandidateSource, ClipQueries
from audience.data.weeks import distinct_ids
from audience.profiles.aggregates import LocalAggregation


class LocalEngine(LocalAggregation):
    """Every heavy pass in this process: the weekly passes (LocalAggregation), the distinct ids, the sources'
    queries and the per-clip-block maps (pair features); the boosting is the caller's own (`boosting`
    returns None)."""

    name = "local"

    def distinct_ids(
        self, weeks: Sequence[Path], progress: bool = False, cache_dir: Path | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return distinct_ids(weeks, progress, cache_dir)

    def placed(self, function: Callable, *args):
        """`function(*args)`, here: its value is its own handle (the Dask engine's runs on a worker)."""
        return function(*args)

    def recommend(self, source: CandidateSource, queries: ClipQueries, k: int) -> TopK:
        return source.recommend(queries, k)

    # sources answer on the whole user set here (the Dask engine can split them by user shard)
    n_user_shards = 0

    # the rank stage scores its pool this many clips at a time (features, then prediction, per block)
    feature_block_clips: int | None = 4096

    def map_clip_blocks(
        self, function: Callable[..., pl.DataFrame], pool: pl.DataFrame, n_clips: int, *shared
    ) -> pl.DataFrame:
        """`function(pool, *shared)`: here the pool is one block."""
        return function(pool, *shared)

    def worker_peak_gib(self, reset: bool = False) -> None:
        """None: no worker processes here (the stage's own peak is the run's)."""
        return None

    def boosting(self, n_threads: int) -> None:
        """None: the boosters train in this process (the model's own default)."""
        return None
