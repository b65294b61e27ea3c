"""The training data of the reranker and MixiGen: labelled candidate pools of holdout runs
(stages/holdout_runs.py: the pipeline shifted back to a label week, its profiles and candidates cached).

* `labelled_blocks`: a holdout run's pool features with their labels, cached in its folder, named by what
  shapes it (pool depth, first stage, similar-authors settings) and by `POOL_CODE`, the hash of this
  module's import closure (the pair features and the first stage): an edited feature rebuilds the pools,
  not the holdout runs' profiles and candidates.
* `training_frames`: the pools of a plan's label weeks as one stack read part by part (rank/stacked.py); week
  h's clip ids are shifted by h x `HOLDOUT_CLIP_OFFSET` so no two weeks share one.
* `train_with_fallbacks`: fits a model on the first protocol of the fallback chain that can train.
* `pool_features` and `scored_pool`: the same features for a run's own pool, to score it.

The blend and rank stages call this module for their training data."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import polars as pl

from audience import progress, timing
from audience.block_writer import write_parquet_blocks
from audience.candidates.combined import CombinedSource
from audience.candidates.exclude_seen import ExcludeSeen
from audience.code_key import code_key
from audience.config import RunConfig
from audience.data.catalog import Catalog
from audience.data.target_history import seen_pairs, target_history
from audience.errors import DataError, TooLittleData
from audience.io import read_json, write_json
from audience.metrics import truth_positives
from audience.rank.clip_history import history_features
from audience.rank.features import add_labels, candidate_pool, pair_features, pool_context, pool_counts
from audience.rank.first_stage import fit_weights, label_sample
from audience.rank.protocol import LabelWeek, TrainingPlan, holdout_samples, training_plans
from audience.rank.sharded_features import sharded_pair_features, sharded_pool_context
from audience.rank.stacked import StackedFrames
from audience.split import Split
from audience.stages.holdout_runs import LABELLED_POOLS, building, holdout_run
from audience.stages.run import Run

__all__ = [
    "HOLDOUT_CLIP_OFFSET",
    "POOL_CODE",
    "featured_blocks",
    "first_stage_candidates",
    "first_stage_weights",
    "hidden_audience",
    "label_positives",
    "labelled_blocks",
    "pool_features",
    "scored_pool",
    "shift_clips",
    "train_with_fallbacks",
    "training_frame",
    "training_frames",
]

log = logging.getLogger(__name__)

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)

# the labelled pools are made by this module and what it imports (the holdout runs' code, the features, the
# first stage): any edit there rebuilds them, as an edit in stages/holdout_runs.py's closure rebuilds the runs
POOL_CODE = code_key(__name__)
# the label weeks' pools are stacked for training: week h's clip rows are shifted by h x this, so no two weeks
# share a clip id (a pool holds far fewer target clips)
HOLDOUT_CLIP_OFFSET = 10_000_000
FIRST_STAGE = "first_stage"  # the first stage's name in a pool's columns (score__first_stage, rank__...)


FirstStage = dict[str, float]  # the first stage's weights per term (candidates/combined.py)


@dataclass
class PoolSources:
    """What a run's candidate pool is made of: each source's candidates (lazily read from its file) and the
    depths that differ from `pool_depth` (the first stage's)."""

    frames: dict[str, pl.LazyFrame]
    depth: int
    depths: dict[str, int]

    def pool(self, clips: tuple[int, int] | None = None) -> pl.DataFrame:
        """The pool (`candidate_pool`), or its clips lo <= clip < hi only: each source's file is read for
        those clips alone."""
        frames = self.frames
        if clips is not None:
            lo, hi = clips
            frames = {
                n: f.filter(pl.col("clip").is_between(lo, hi, closed="left")) for n, f in frames.items()
            }
        return candidate_pool({n: f.collect() for n, f in frames.items()}, self.depth, self.depths)


def pool_sources(run: Run, first_stage: FirstStage | None = None) -> PoolSources:
    """The run's pool's sources: its sources' top `pool_depth` users per clip and, with `first_stage`
    weights, the first stage's top `first_stage.depth` (`first_stage_candidates`, computed here, held)."""
    cfg = run.cfg
    frames = {name: pl.scan_parquet(run.candidates_path(name)) for name in cfg.sources}
    depths = {}
    if first_stage is not None:
        frames[FIRST_STAGE] = first_stage_candidates(run, first_stage).lazy()
        depths[FIRST_STAGE] = cfg.first_stage.depth
    return PoolSources(frames, cfg.reranker.pool_depth, depths)


def first_stage_candidates(run: Run, weights: FirstStage) -> pl.DataFrame:
    """The first stage's top `first_stage.depth` users of each target clip (clip, user, score, rank), the
    fit-week audience of warm targets left out as for every source."""
    cfg = run.cfg
    source = CombinedSource(weights, cfg.first_stage.block)
    if cfg.exclude_seen:
        source = ExcludeSeen(source, run.target_history())
    source.fit(run.fit_data(), run.catalog)
    with timing.substep("first stage"):
        top = run.engine.recommend(source, run.queries(), cfg.first_stage.depth)
    return top.to_frame(FIRST_STAGE).drop("source")


def first_stage_weights(run: Run, plan: TrainingPlan) -> FirstStage | None:
    """The first stage's weights (rank/first_stage.py) learned on the plan's label weeks, or None when it is
    off (`first_stage.depth` 0) or cannot learn. Cached in the run's folder, keyed by the holdout runs' keys
    and the first stage's settings."""
    cfg = run.cfg
    if cfg.first_stage.depth == 0 or not plan.weeks:
        return None
    train_runs = [holdout_run(run, week) for week in plan.weeks]
    key = {
        "holdouts": [read_json(r.path("holdout.json")) for r in train_runs],
        "first_stage": asdict(cfg.first_stage),
        "seed": cfg.seed,
    }
    path = run.path("first_stage.json")
    if path.is_file() and (cached := read_json(path))["key"] == key:
        return cached["weights"]
    rng = np.random.default_rng([cfg.seed, 7])
    samples = []
    with timing.substep("first stage fit"):
        for train_run in train_runs:
            positives = label_positives(train_run)
            samples.append(
                label_sample(
                    train_run.fit_data(),
                    train_run.queries(),
                    positives["clip"].to_numpy(),
                    positives["user"].to_numpy(),
                    cfg.first_stage.negatives,
                    rng,
                )
            )
        try:
            terms, labels, names = zip(*samples, strict=True)
            weights = fit_weights(np.concatenate(terms), np.concatenate(labels), names[0])
        except TooLittleData as exc:
            log.warning("%s; the reranker's pool is the sources' alone", exc)
            weights = None
    write_json({"key": key, "weights": weights}, path)
    return weights


def _featurizer(run: Run, counts: np.ndarray) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """`block -> block with its pair features` for blocks of whole clips of a pool whose `pool_counts` are
    `counts`; its pool-wide tables (`pool_context`, with the reranker's similar-authors settings) are
    computed here, once. With user shards (the Dask engine's `user_shards`), each user's columns are
    computed on its shard and the client holds only the fit data's counts (rank/sharded_features.py);
    otherwise the engine maps the blocks over the whole fit data."""
    queries, similar = run.queries(), run.cfg.reranker.similar_authors
    if run.engine.n_user_shards:
        shards, shard_map = run.user_shards()
        context = sharded_pool_context(
            counts, run.fit_counts(), run.catalog, queries, shards, shard_map, similar
        )
        return partial(sharded_pair_features, context=context, shard_map=shard_map)
    fit = run.fit_data()
    shared = (fit, run.catalog, queries, pool_context(counts, fit, run.catalog, queries, similar))
    return partial(_mapped_pair_features, run.engine, len(queries), shared)


def _mapped_pair_features(engine, n_clips: int, shared: tuple, block: pl.DataFrame) -> pl.DataFrame:
    return engine.map_clip_blocks(pair_features, block, n_clips, *shared)


def featured_blocks(
    run: Run, first_stage: FirstStage | None = None, what: str = "pool features"
) -> Iterator[pl.DataFrame]:
    """The run's pool with the reranker's pair and clip-history features, one block of
    `engine.feature_block_clips` clips at a time, in clip order. The pool itself is read block by block from
    the sources' files, twice: once to count the pool-wide cap pressure (`pool_counts`), once for the
    features; so only one block's pool and features are held here, never the whole pool's (GBs at VK size).
    A pool with no rows gives one empty block."""
    sources = pool_sources(run, first_stage)
    n_clips, n_users = len(run.queries()), run.catalog.n_users
    block = run.engine.feature_block_clips or max(n_clips, 1)
    blocks = [(lo, min(lo + block, n_clips)) for lo in range(0, n_clips, block)]
    with timing.substep("pool counts"):
        counts = np.zeros((2, n_users), dtype=np.int64)
        for clips in blocks:
            counts += pool_counts(sources.pool(clips), n_users)
    features = _featurizer(run, counts)
    item_ids, history = run.targets()["item_id"].to_numpy(), run.target_history()
    empty = True
    for clips in progress.iterate(blocks, what, "block"):
        pool = sources.pool(clips)
        if pool.height == 0:
            continue
        with timing.substep("pair features"):
            part = history_features(features(pool), item_ids, history)
        empty = False
        yield part
    if empty:
        yield history_features(features(sources.pool((0, 0))), item_ids, history)


def pool_features(run: Run, first_stage: FirstStage | None = None) -> pl.DataFrame:
    """The run's pool (`pool_sources`) with the reranker's pair and clip-history features, sorted by clip,
    user (`featured_blocks`, stacked)."""
    return pl.concat(featured_blocks(run, first_stage), rechunk=False)


def scored_pool(
    run: Run, predict: Callable[[pl.DataFrame], np.ndarray], first_stage: FirstStage | None = None
) -> pl.DataFrame:
    """(clip, user, score) of the run's pool, scored by `predict` over its features one block at a time
    (`featured_blocks`)."""
    parts = []
    for part in featured_blocks(run, first_stage, "pool scores"):
        with timing.substep("prediction"):
            score = pl.Series("score", predict(part), dtype=pl.Float32)
        parts.append(part.select("clip", "user").with_columns(score))
    return pl.concat(parts)


def label_positives(train_run: Run) -> pl.DataFrame:
    """(clip, user) rows and indices of a holdout run's label-week positives among its targets and users."""
    targets = train_run.targets()["item_id"].to_numpy()
    truth = truth_positives(train_run.split().truth_week, train_run.cfg.positive_flags, targets)
    clip_of = pl.DataFrame({"item_id": pl.Series(targets, dtype=pl.UInt32)}).with_row_index("clip")
    truth = truth.join(clip_of, on="item_id")
    truth = truth.with_columns(pl.Series("user", train_run.catalog.users.lookup(truth["user_id"].to_numpy())))
    positives = truth.filter(pl.col("user") >= 0).select(pl.col("clip").cast(pl.Int32), "user")
    return positives.unique().sort("clip", "user")  # a fixed order: the first stage's fit sees the same rows


def labelled_blocks(train_run: Run, first_stage: FirstStage | None = None) -> Iterator[pl.DataFrame]:
    """A holdout run's pool features labelled by its truth week's positives, without the hidden audience of
    its pseudo-new clips (`hidden_audience`), one block of clips at a time (`featured_blocks`), in clip
    order: one block's rows are held at a time, never the whole labelled pool."""
    cfg = train_run.cfg
    targets = train_run.targets()["item_id"].to_numpy()
    hidden = hidden_audience(targets, train_run.split(), cfg, train_run.catalog)
    positives = label_positives(train_run)
    for pool in featured_blocks(train_run, first_stage, "labelled pool"):
        if hidden is not None:
            pool = pool.join(
                hidden.cast({"clip": pool.schema["clip"], "user": pool.schema["user"]}),
                on=["clip", "user"],
                how="anti",
            )
        yield add_labels(pool, positives)


def hidden_audience(
    item_ids: np.ndarray, split: Split, cfg: RunConfig, catalog: Catalog
) -> pl.DataFrame | None:
    """The (clip row, user) pairs of a holdout run (clip rows follow `item_ids`) whose interaction was hidden
    from its fit weeks, or None without pseudo-new clips. They are dropped from its pool: pairs do not repeat,
    so those users cannot be positives of the label week, and keeping them as negatives teaches the reranker
    that users like a clip's audience do not engage with it. Real new clips have no such users. Costs one
    fit-week scan filtered to the clips."""
    pseudo, _ = holdout_samples(split, cfg)
    if pseudo.size == 0:
        return None
    row, user = seen_pairs(target_history(split.fit_weeks, pseudo, cfg.positive_flags), item_ids, catalog)
    return pl.DataFrame({"clip": row, "user": user})


def _pool_path(train_run: Run, first_stage: FirstStage | None) -> Path:
    """The labelled pool's file, named by what shapes it besides the holdout run (the pool depth, the first
    stage's depth and weights, the similar-authors settings) and by the code that makes it (`POOL_CODE`)."""
    cfg = train_run.cfg
    first = None if first_stage is None else [cfg.first_stage.depth, first_stage]
    shaped = json.dumps([first, asdict(cfg.reranker.similar_authors)], sort_keys=True)
    digest = hashlib.sha1(shaped.encode()).hexdigest()[:10]
    return train_run.path(f"labelled_pool_depth{cfg.reranker.pool_depth}_{digest}_code{POOL_CODE}.parquet")


def shift_clips(pool: FrameT, holdout: int, source: Path | str = "pool") -> FrameT:
    """`pool` (a frame or a scan) with its clip ids shifted by `holdout` x HOLDOUT_CLIP_OFFSET, so pools of
    different label weeks stack without sharing a clip id. Raises DataError (naming `source`) when a pool
    holds as many clips."""
    top = pool.select(pl.col("clip").max())
    top = (top.collect() if isinstance(top, pl.LazyFrame) else top).item()
    if top is not None and top >= HOLDOUT_CLIP_OFFSET:
        raise DataError(f"{source}: {top + 1} target clips exceed HOLDOUT_CLIP_OFFSET")
    return pool.with_columns(pl.col("clip") + holdout * HOLDOUT_CLIP_OFFSET)


def training_frame(run: Run, week: LabelWeek, first_stage: FirstStage | None = None) -> pl.LazyFrame:
    """Features and labels of the pipeline shifted back `week.holdout` weeks (`holdout_run`), its clip ids
    shifted apart from other weeks' (`shift_clips`), as a scan of its cached file: the labelled pool is
    cached in the holdout run's folder, written by the first of the blend and rank stages to need it, read
    by the other. Pools made by other code are dropped when a new one is written (under the folder's lock,
    as it is read)."""
    train_run = holdout_run(run, week)
    cached = _pool_path(train_run, first_stage)
    with building(train_run):
        if not cached.is_file():
            for stale in train_run.dir.glob(LABELLED_POOLS):
                if not stale.stem.endswith(f"_code{POOL_CODE}"):
                    stale.unlink()
            with timing.substep("holdout pair features"):
                write_parquet_blocks(labelled_blocks(train_run, first_stage), cached)
        pool = pl.scan_parquet(cached)
        return shift_clips(pool, week.holdout, cached)


def training_frames(run: Run, plan: TrainingPlan) -> StackedFrames:
    """The labelled pools of the plan's label weeks, stacked (clip ids kept apart per week) but read only
    when asked (rank/stacked.py), with the first stage learned on the same weeks (`first_stage_weights`) in
    their pools."""
    first_stage = first_stage_weights(run, plan)
    return StackedFrames(tuple(training_frame(run, week, first_stage) for week in plan.weeks))


def _n_warm_targets(run: Run) -> int:
    targets = run.targets()
    return int(targets["warm"].sum()) if "warm" in targets.columns else 0


def train_with_fallbacks(
    run: Run, fit: Callable[[StackedFrames], object], what: str
) -> tuple[object | None, dict, TrainingPlan | None]:
    """Fit a model (`fit`: the labelled pools, `training_frames` -> model) on the first protocol of the
    chain that can train (rank/protocol.py). Returns (model or None, record, last plan whose pools were
    built or None); says once, as a warning, what it fell back from and why. Bad input (a plain DataError)
    still stops the run."""
    cfg = run.cfg
    plans = training_plans(run.split().fit_weeks, cfg.reranker, _n_warm_targets(run))
    record: dict = {"model": what, "tried": [], "used": None}
    built = None
    for plan in plans:
        if not plan.weeks:
            record["tried"].append({**plan.to_dict(), "error": plan.note})
            continue
        try:
            frames = training_frames(run, plan)
            built = plan
            model = fit(frames)
        except TooLittleData as exc:
            record["tried"].append({**plan.to_dict(), "error": str(exc)})
            continue
        record["used"] = plan.to_dict()
        if plan.note:  # trained, but not as configured (e.g. no new clips): say so once
            log.warning("%s: %s", what, plan.note)
        if record["tried"]:
            failed = "; ".join(f"'{t['protocol']}': {t['error']}" for t in record["tried"])
            weeks = ", ".join(w.week for w in plan.weeks)
            log.warning("%s: %s; trained on protocol '%s' (%s) instead", what, failed, plan.protocol, weeks)
        return model, record, built
    if not plans:
        record["tried"].append(
            {"protocol": None, "error": "one fit week: no label week has a week before it"}
        )
    return None, record, built
