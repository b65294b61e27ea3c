"""One run folder (`RunConfig.artifacts`): the paths of its artifacts and cached loads of them, and the
run's engine (made here, at the top, and passed down to the passes that use it).

Every stage and the training data (stages/training_data.py) open runs: a run of the configured split and
the holdout runs shifted back from it."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from audience.candidates import ClipQueries
from audience.candidates.registry import needs_mixture
from audience.config import RunConfig
from audience.data.catalog import Catalog
from audience.data.layout import DatasetLayout
from audience.data.target_history import read_target_history
from audience.engine import engine_for
from audience.errors import DataError
from audience.io import read_json, write_json
from audience.profiles.aggregates import AggregateStore
from audience.profiles.dataset_mixture import dataset_mixture
from audience.profiles.fit_data import FitData
from audience.profiles.user_shards import ShardMap, UserShard, whole_fit
from audience.rank.protocol import holdout_samples
from audience.split import Split, make_split


def file_key(method: str) -> str:
    """A method or source name as a file name (`hnsw:watch` -> `hnsw-watch`)."""
    return method.replace(":", "-").replace("/", "-")


class Run:
    """Paths and cached loads for one run folder."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.dir = cfg.artifacts
        self.layout = DatasetLayout(cfg.data_dir, cfg.subsample)
        self._catalog: Catalog | None = None
        self._engine = None
        self._shard_fits: list | None = None

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    @property
    def catalog(self) -> Catalog:
        """The run's users and clips, as the profiles stage indexed them (catalog.npz)."""
        if self._catalog is None:
            self._catalog = Catalog.load(self.require("catalog.npz", "profiles"))
        return self._catalog

    @property
    def engine(self):
        """Where the run's heavy passes execute (engine/: local or a Dask cluster)."""
        if self._engine is None:
            self._engine = engine_for(self.cfg)
        return self._engine

    def split(self) -> Split:
        return make_split(self.layout, self.cfg.mode, self.cfg.targets, self.cfg.holdout)

    def require(self, name: str, stage: str) -> Path:
        path = self.path(name)
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: missing; run the '{stage}' stage first (or `python -m audience run`)"
            )
        return path

    def aggregate_store(self) -> AggregateStore:
        """The dataset's weekly aggregates for this run's catalog, with the dataset's mixture when a source
        needs one (profiles/dataset_mixture.py): what the fit data is combined from."""
        cfg, layout = self.cfg, self.layout
        mixture = None
        if needs_mixture((*cfg.sources, *cfg.baselines)):
            _, train_clips = self.engine.distinct_ids(layout.train_weeks(), not cfg.quiet, cfg.weeks_cache)
            mixture = dataset_mixture(
                layout.item_embeddings, train_clips, cfg.gmm, cfg.embedding_dim, cfg.weeks_cache
            )
        metadata = (layout.items_metadata, layout.item_embeddings)
        return AggregateStore(
            cfg.weeks_cache, self.catalog, cfg.positive_flags, cfg.profiles, metadata, mixture=mixture
        )

    def holdout_samples(self) -> tuple[np.ndarray, np.ndarray]:
        """(pseudo-new clip ids, warm clip ids) of a holdout run (rank/protocol.py); both empty otherwise."""
        return holdout_samples(self.split(), self.cfg)

    def hidden_items(self) -> np.ndarray | None:
        """Per clip of the catalog, whether its fit-week rows are hidden from the fit data (a holdout run's
        pseudo-new clips); None when none are."""
        pseudo_new, _ = self.holdout_samples()
        return np.isin(self.catalog.items.ids, pseudo_new) if pseudo_new.size else None

    def fit_data(self) -> FitData:
        """The whole fit data. With user shards, fit_data.npz holds only the counts and the users' state is
        gathered here from the shards: what the sources and stages not yet on shards need (the neighbour
        bridges, the first stage), at the cost of every user's state on the client."""
        fit = FitData.load(self.require("fit_data.npz", "profiles"))
        if fit.has_user_state:
            return fit
        if not self.engine.n_user_shards:
            raise DataError(
                f"{self.path('fit_data.npz')}: holds only counts (written with [dask] user_shards); run with "
                "the same engine and user_shards, or rerun the profiles stage"
            )
        return FitData.stacked(self.engine.shard_map(self.shard_fits(), whole_fit))

    def fit_counts(self) -> FitData:
        """The fit data's activity counts and mixture, without its profiles and histories (FitData.load)."""
        return FitData.load(self.require("fit_data.npz", "profiles"), counts_only=True)

    def shard_fits(self, rebuild: bool = False) -> list:
        """The engine's user shards of this run's fit data (engine.shard_fits: (shard, handle) each), read
        from fit_shards/ (the profiles stage saves them, `rebuild`) or combined, on first use, and held while
        this Run is."""
        if self._shard_fits is None or rebuild:
            split = self.split()
            self._shard_fits = self.engine.shard_fits(
                self.aggregate_store(), split.fit_weeks, self.hidden_items(), self.path("fit_shards"), rebuild
            )
        return self._shard_fits

    def user_shards(self) -> tuple[list[UserShard], ShardMap]:
        """This run's user shards, in order, and the engine's `ShardMap` over their fit data (`shard_fits`):
        what the sharded sources and pair features are handed."""
        fits = self.shard_fits()
        return [shard for shard, _ in fits], partial(self.engine.shard_map, fits)

    def targets(self) -> pl.DataFrame:
        return pl.read_parquet(self.require("targets.parquet", "profiles"))

    def target_history(self) -> pl.DataFrame:
        """The target clips' fit-week audience (target_history.parquet, written by the profiles stage)."""
        return read_target_history(self.path("target_history.parquet"))

    def queries(self) -> ClipQueries:
        return ClipQueries.from_catalog(self.catalog, self.targets()["item_id"].to_numpy())

    def candidates_path(self, method: str) -> Path:
        """`method`'s candidate file, which the candidates stage (or blend, rank) wrote."""
        return self.require(f"candidates/{file_key(method)}.parquet", "candidates")

    def candidates(self, method: str, columns: list[str] | None = None) -> pl.DataFrame:
        """`method`'s candidate file, or only its `columns` (the pool's `source` strings cost more than its
        numbers)."""
        return pl.read_parquet(self.candidates_path(method), columns=columns)

    def record_timing(self, stage: str, seconds: float, substeps: dict[str, float] | None = None) -> None:
        """The stage's wall seconds in timings.json, and its substeps (timing.py) under `substeps`."""
        path = self.path("timings.json")
        timings = read_json(path) if path.exists() else {}
        timings[stage] = round(seconds, 3)
        recorded = timings.setdefault("substeps", {})
        recorded[stage] = {k: round(v, 3) for k, v in (substeps or {}).items()}  # a rerun replaces them
        write_json(timings, path)
