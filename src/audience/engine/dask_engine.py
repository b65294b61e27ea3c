"""The Dask engine: the passes over interactions and over target clips as tasks on a Dask cluster.

- Weekly aggregation: each week file is cut into parts of whole row groups (`DaskConfig.part_rows`); a task
  reduces one part over its own users only (profiles/aggregates.aggregate_part), partial aggregates of a
  week are merged in a tree (`merge_fan_in` at a time), and a worker writes the week's aggregate into the
  shared cache folder. The uncached passes (pseudo-new clips' rows, soft-cluster profiles) run the same way
  and come back to the client one week at a time. The distinct ids of each week are tasks too.
- Candidate queries: the fitted source is broadcast to every worker and blocks of `clip_block` target clips
  are queried there (a broadcast, not a sharded, index: a source is fitted on the client from the split's
  profiles, and at VK scale its index is ~100-300 MB, cheaper to copy than to shard; sources whose draws
  depend on the whole batch (random) answer on the client).
- Maps over blocks of target clips (the rank stage's pair features without user shards): the caller's
  function and its shared inputs (the fit data and the pool-wide tables, computed on the client) are sent
  to the workers, and each block of clips is mapped there.
- Sources over user shards (`DaskConfig.user_shards` > 0; candidates/sharded.py says which sources split,
  exactly or, for HNSW indexes, approximately): each worker combines one shard of users' fit data straight
  from the shared aggregate cache and keeps it (`shard_fits`); for each source every shard fits its own
  copy and answers its own top-k users of every target clip (candidates/sharded.py's `sharded_answers`
  through `shard_map`); the client merges the shards' answers (clips x k x shards, nothing that grows with
  the users) into the unsharded source's lists, ties included (an HNSW source's shards each build their
  own index, approximate as one global index is). A source that needs a total over every user gets it as a
  sum of per-shard parts first. Each shard refits the source's clip-side state (co-engagement's index of
  old clips), so that part of a fit costs once per shard. The profiles stage saves each shard's fit data
  from its worker (`shard_fits(..., folder, rebuild)`), and later stages read it there. `shard_map` runs
  any function on every shard's worker, its results gathered or kept there as futures: the sources and the
  pair features use it (rank/sharded_features.py). A source trained on a sample of users at once (the BPR
  bridge) is fitted on a worker from the sample's rows, which each shard sends there (candidates/sharded.py's
  `sampled_rows` and `fit_on_rows`, run by `placed`), and asked there: the client holds its handle.
- Reranker boosting: xgboost.dask (engine/dask_boosting.py).

Broadcast objects are scattered to every worker, so a lost worker leaves copies on the others; a lost
worker's tasks are recomputed from the parts they read (the scheduler's retries).

Operating limits (benchmarks/results/dask_vk.md, `vk` on 2 cores): a part reduces at ~5.5 M rows per
core-second; end to end (merges, saves, scheduling) a worker aggregates ~3.6-4.1 M rows/s, 1 -> 2 workers
scale 88 %, and one machine's 2 workers reach 56 % of the local engine (which overlaps reading with the
kernels and merges nothing). A worker holds the catalog (43 MiB on `vk`), about one week's partial
aggregates and the merges in flight (peak 6.4-6.8 GiB per worker on `vk`); a merged week aggregate is
users x kinds x d float32 (~10 GiB for the full dataset's 10 M users).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl
from distributed import Future

from audience import progress as progress_report
from audience.arrays import TopK
from audience.candidates.base import CandidateSource, ClipQueries
from audience.config import DaskConfig, ProfileSettings
from audience.data.catalog import Catalog
from audience.data.ids import unique_sorted
from audience.data.location import data_path
from audience.data.weeks import WeekPart, week_ids, week_parts
from audience.engine.cluster import client_for
from audience.engine.dask_boosting import DaskBoosting
from audience.profiles.aggregates import (
    AggregateStore,
    WeekAggregate,
    aggregate_part,
    aggregate_week,
    fit_from_aggregates,
    merge_aggregates,
)
from audience.profiles.fit_data import FitData
from audience.profiles.user_shards import UserShard, user_shards
from audience.resources import peak_rss_gib, reset_peak_rss

log = logging.getLogger(__name__)


def _save(aggregate: WeekAggregate, path: str) -> int:
    aggregate.save(Path(path))
    return aggregate.rows


def _recommend_block(source: CandidateSource, queries: ClipQueries, k: int) -> TopK:
    return source.recommend(queries, k)


def _apply_block(function: Callable[..., pl.DataFrame], pool: pl.DataFrame, shared: tuple) -> pl.DataFrame:
    return function(pool, *shared)


def _shard_fit(
    store: AggregateStore,
    weeks: list[Path],
    hidden_items: np.ndarray | None,
    shard: UserShard,
    path: str | None,
    rebuild: bool,
) -> FitData:
    """A shard's fit data: read from `path` when it is there (and not `rebuild`), else combined from the
    aggregate cache and saved there."""
    if path is not None and not rebuild and Path(path).is_file():
        return FitData.load(Path(path))
    fit = fit_from_aggregates(store, weeks, hidden_items, progress=False, shard=shard)
    fit.gmm = store.mixture
    if path is not None:
        fit.save(Path(path))
    return fit


def _worker_peak(reset: bool) -> float:
    if reset:
        reset_peak_rss()
    return peak_rss_gib()


def _broadcastable(value) -> bool:
    """Whether a shared task argument is worth one broadcast: not a number, a short string, a future or a
    list or tuple holding futures (handles the scheduler resolves on the worker)."""
    if isinstance(value, (list, tuple)):
        return not any(isinstance(v, Future) for v in value)
    return not isinstance(value, (int, float, str, type(None), Future))


def gathered(futures: list, desc: str) -> list:
    """The futures' results in their order, with a progress report as they finish (one step a block)."""
    from distributed import as_completed

    with progress_report.bar(desc, len(futures), "block") as bar:
        for _ in as_completed(futures):
            bar.update(1)
    return [future.result() for future in futures]


def clip_blocks(n_clips: int, block: int) -> list[slice]:
    return [slice(start, min(start + block, n_clips)) for start in range(0, n_clips, block)]


class DaskEngine:
    name = "dask"

    def __init__(self, cfg: DaskConfig):
        self.cfg = cfg

    @property
    def client(self):
        return client_for(self.cfg)

    def _broadcast(self, value):
        return self.client.scatter(value, broadcast=True, hash=False)

    def _task_args(self, values) -> tuple:
        """Task arguments as sent: each worth it broadcast once (`_broadcastable`), the others as they are."""
        return tuple(self._broadcast(v) if _broadcastable(v) else v for v in values)

    def _shared(self, value):
        """An option for the workers: arrays (also in a mapping) broadcast once, anything else as is."""
        if isinstance(value, np.ndarray):
            return self._broadcast(value)
        if isinstance(value, dict):
            return {name: self._shared(item) for name, item in value.items()}
        return value

    def _reduce(self, futures: list, catalog):
        """One future: `futures` (partial aggregates) merged in a tree, `merge_fan_in` at a time, users in
        the (future of the) `catalog`'s index order."""
        fan_in = self.cfg.merge_fan_in
        while len(futures) > 1:
            futures = [
                self.client.submit(merge_aggregates, futures[i : i + fan_in], catalog, pure=False)
                for i in range(0, len(futures), fan_in)
            ]
        return futures[0]

    def _week_futures(
        self,
        weeks: Sequence[Path],
        parts_of: Sequence[list[WeekPart]],
        catalog,
        positive_flags: Sequence[str],
        settings: ProfileSettings,
        bar,
        finish: Callable | None = None,
        **options,
    ) -> list:
        """Per week (its parts in `parts_of`), the future of its merged aggregate, or of `finish(week, that
        future)` (None for a week without row groups), submitted week by week so that a week's merges and
        `finish` run before the next week's parts (the scheduler favours earlier submissions) and workers
        hold about one week of partial aggregates at a time; `bar` advances as parts finish."""
        from distributed import as_completed

        reduced, part_rows, parts_done = [], {}, []
        for week, parts in zip(weeks, parts_of, strict=True):
            futures = [
                self.client.submit(
                    aggregate_part, part, catalog, positive_flags, settings, pure=False, **options
                )
                for part in parts
            ]
            part_rows.update({f.key: part.rows for f, part in zip(futures, parts, strict=True)})
            parts_done += futures
            merged = self._reduce(futures, catalog) if futures else None
            reduced.append(merged if merged is None or finish is None else finish(week, merged))
        if bar is not None:
            for future in as_completed(parts_done):
                bar.update(part_rows[future.key])
        return reduced

    def build_aggregates(self, store: AggregateStore, weeks: Sequence[Path], progress: bool = True) -> None:
        missing = [w for w in weeks if not store.path(w).is_dir()]
        if not missing:
            return
        store.folder.mkdir(parents=True, exist_ok=True)
        parts_of = [week_parts(week, self.cfg.part_rows) for week in missing]
        rows = sum(part.rows for parts in parts_of for part in parts)
        bar = progress_report.bar("week aggregates (dask)", rows, "rows", enabled=progress)
        saves = self._week_futures(
            missing,
            parts_of,
            self._broadcast(store.catalog),
            store.positive_flags,
            store.settings,
            bar,
            lambda week, merged: self.client.submit(_save, merged, str(store.path(week)), pure=False),
            kinds=store.kinds,
            spaces=self._shared(store.spaces),
        )
        for week, save in zip(missing, saves, strict=True):
            if save is None:  # a file without row groups: its (empty) aggregate, here
                store.build(week, iter(()))
        self.client.gather([save for save in saves if save is not None])
        bar.close()
        for week in missing:
            store.drop_stale(week)

    def aggregate_weeks(
        self,
        weeks: Sequence[Path],
        catalog: Catalog,
        positive_flags: Sequence[str],
        settings: ProfileSettings,
        bar=None,
        **options,
    ) -> Iterator[WeekAggregate]:
        """Uncached aggregates of `weeks` (aggregate_week's `options`: arrays are broadcast once), every
        week submitted at once and handed back in week order."""
        shared = {name: self._shared(value) for name, value in options.items()}
        parts_of = [week_parts(week, self.cfg.part_rows) for week in weeks]
        reduced = self._week_futures(
            weeks, parts_of, self._broadcast(catalog), positive_flags, settings, bar, **shared
        )
        for week, future in zip(weeks, reduced, strict=True):
            if future is None:
                yield aggregate_week(week, catalog, positive_flags, settings, chunks=iter(()), **options)
            else:
                yield future.result()

    def distinct_ids(
        self, weeks: Sequence[Path], progress: bool = False, cache_dir: Path | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        futures = self.client.map(week_ids, list(weeks), cache_dir=cache_dir, pure=False)
        found = list(progress_report.iterate(self.client.gather(futures), "index (dask)", "week", progress))
        empty = np.zeros(0, dtype=np.uint32)
        return tuple(  # type: ignore[return-value]
            unique_sorted(np.concatenate([empty, *(f[i] for f in found)])).astype(np.uint32) for i in (0, 1)
        )

    def placed(self, function: Callable, *args) -> Future:
        """`function(*args)` run on a worker (arrays and other large arguments broadcast, futures resolved
        there), its value kept there: the future is its handle, which `recommend` and `placed` take. What
        only a worker should hold (a source fitted on a sample of every shard's users) stays off the
        client."""
        return self.client.submit(function, *self._task_args(args), pure=False)

    def recommend(self, source: CandidateSource | Future, queries: ClipQueries, k: int) -> TopK:
        """The source's top `k` users of each clip, by blocks of `clip_block` clips on the workers (a
        whole-batch source, or a batch of one block, here), or of a source held on the cluster (`placed`)."""
        if isinstance(source, Future):
            shared, name = source, "placed source"
        elif getattr(source, "whole_batch", False) or len(queries) <= self.cfg.clip_block:
            return source.recommend(queries, k)
        else:
            shared, name = self._broadcast(source), source.name
        blocks = clip_blocks(len(queries), self.cfg.clip_block)
        futures = [
            self.client.submit(_recommend_block, shared, queries.subset(b), k, pure=False) for b in blocks
        ]
        answers = gathered(futures, f"{name} (dask)")
        return TopK(np.concatenate([a.ids for a in answers]), np.concatenate([a.scores for a in answers]))

    @property
    def feature_block_clips(self) -> int | None:
        """The rank stage scores its pool this many clips at a time: with user shards `clip_block` (the
        client holds one block's features); without, None: the whole pool goes to map_clip_blocks, which
        cuts it into blocks for the workers."""
        return self.cfg.clip_block if self.cfg.user_shards else None

    def map_clip_blocks(
        self, function: Callable[..., pl.DataFrame], pool: pl.DataFrame, n_clips: int, *shared
    ) -> pl.DataFrame:
        """`function(block, *shared)` for the pool's (sorted by clip; clips below `n_clips`) blocks of
        `clip_block` clips, each on a worker, concatenated in order; `shared` is broadcast once. `function`
        must be importable on the workers (a module-level function)."""
        clip = pool["clip"].to_numpy()
        bounds = np.searchsorted(clip, [b.start for b in clip_blocks(n_clips, self.cfg.clip_block)])
        bounds = [*bounds.tolist(), pool.height]
        if len(bounds) <= 2:
            return function(pool, *shared)
        shared_future = self._broadcast(shared)
        futures = [
            self.client.submit(_apply_block, function, pool.slice(lo, hi - lo), shared_future, pure=False)
            for lo, hi in itertools.pairwise(bounds)
        ]
        return pl.concat(gathered(futures, f"{getattr(function, '__name__', 'map')} (dask)"))

    @property
    def n_user_shards(self) -> int:
        """User shards the sources that split by user answer in (0: none, every source on the client)."""
        return self.cfg.user_shards

    def shard_fits(
        self,
        store: AggregateStore,
        weeks: Sequence[Path],
        hidden_items: np.ndarray | None = None,
        folder: Path | None = None,
        rebuild: bool = False,
    ) -> list[tuple[UserShard, object]]:
        """Each of `user_shards` shards of the store's users with the future of its fit data, kept on a
        worker while the future is held: read from `folder` (one file per shard, named by its users, on a
        filesystem the workers share) when it is there, else combined from the aggregate cache (which must be
        built) and saved there; `rebuild` combines and saves them all."""
        weeks = [data_path(w) for w in weeks]
        shards = user_shards(store.catalog.n_users, max(self.cfg.user_shards, 1))
        shared_store, shared_hidden = self._broadcast(store), self._shared(hidden_items)
        fits = []
        for shard in shards:
            path = None if folder is None else str(folder / f"users_{shard.start}_{shard.stop}.npz")
            task = self.client.submit(
                _shard_fit, shared_store, weeks, shared_hidden, shard, path, rebuild, pure=False
            )
            fits.append((shard, task))
        return fits

    def shard_map(
        self,
        fits: list[tuple[UserShard, object]],
        function: Callable,
        *shared,
        per_shard: Sequence | None = None,
        keep: bool = False,
        desc: str | None = None,
    ) -> list:
        """`function(shard, fit, *per_shard[i], *shared)` on the worker of each shard of `fits` (shard_fits;
        with `per_shard`, only where its entry is not None), its results gathered in shard order (None where
        skipped; a progress report as shards finish when `desc` names one), or with `keep` their futures,
        held there for later calls (profiles/user_shards.py's ShardMap). Arrays and other large `shared`
        values are broadcast once per call."""
        args = per_shard if per_shard is not None else [()] * len(fits)
        shared = self._task_args(shared)
        futures = [
            None if extra is None else self.client.submit(function, shard, fit, *extra, *shared, pure=False)
            for (shard, fit), extra in zip(fits, args, strict=True)
        ]
        if keep:
            return futures
        submitted = [f for f in futures if f is not None]
        found = gathered(submitted, f"{desc} (dask)") if desc else self.client.gather(submitted)
        results = iter(found)
        return [None if f is None else next(results) for f in futures]

    def worker_peak_gib(self, reset: bool = False) -> float:
        """The largest peak RSS (GiB) of the cluster's workers since their last reset; `reset` starts anew."""
        return max(self.client.run(_worker_peak, reset).values(), default=0.0)

    def boosting(self, n_threads: int) -> DaskBoosting:
        return DaskBoosting(self.client, self.cfg.train_partition_rows)
