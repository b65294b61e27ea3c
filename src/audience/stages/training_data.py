"""The training data of the reranker and MixiGen: labelled candidate pools of holdout runs.

A holdout run is the pipeline shifted back `holdout` weeks (rank/protocol.py chooses which): its profiles
and candidates are fitted on the weeks before a label week, and the label week's positives label its pool.
Building one costs a profile pass and every candidate source, so holdout runs are cached beside the run:

* `holdout_key`: everything that shapes a holdout run (fit weeks, truth week, the shaping config, the data
  files' stamps and a hash of this package's code, `UPSTREAM_CODE`). A run whose key differs is rebuilt in
  place, so regenerated data or an edited source, profile pass or feature never serves stale candidates.
* `holdout_dir`: the run's folder, named by the key without stamps and code, so runs of equal content are
  shared (submit mode's second holdout run is validate mode's first).
* `labelled_pool`: a holdout run's pool features with their labels, cached in its folder per pool depth.
* `training_frames`: the pools of a plan's label weeks stacked into one frame; week h's clip ids are shifted
  by h x `HOLDOUT_CLIP_OFFSET` so no two weeks share one.
* `train_with_fallbacks`: fits a model on the first protocol of the fallback chain that can train.

A holdout run is built by calling the profiles and candidates stages on it (stages/execute.py records
them as any stage); the blend and rank stages call this module for their training data."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import polars as pl

from audience import progress, timing
from audience.candidates.combined import CombinedSource
from audience.candidates.exclude_seen import ExcludeSeen
from audience.code_key import code_key
from audience.config import RunConfig
from audience.data.catalog import Catalog
from audience.data.target_history import seen_pairs, target_history
from audience.errors import DataError, TooLittleData
from audience.io import file_lock, file_stamp, read_json, write_json, write_parquet
from audience.metrics import truth_positives
from audience.rank.clip_history import history_features
from audience.rank.features import add_labels, candidate_pool, pool_context
from audience.rank.first_stage import fit_weights, label_sample
from audience.rank.protocol import LabelWeek, TrainingPlan, holdout_samples, training_plans
from audience.split import Split, make_split
from audience.stages.candidates import stage_candidates
from audience.stages.execute import execute
from audience.stages.profiles import stage_profiles
from audience.stages.run import Run

__all__ = [
    "HOLDOUT_CLIP_OFFSET",
    "UPSTREAM_CODE",
    "first_stage_candidates",
    "first_stage_weights",
    "holdout_dir",
    "holdout_key",
    "holdout_run",
    "label_positives",
    "labelled_pool",
    "pool_features",
    "run_pool",
    "scored_pool",
    "shift_clips",
    "train_with_fallbacks",
    "training_frame",
    "training_frames",
]

log = logging.getLogger(__name__)

# a holdout run's artifacts (its candidates and labelled pool) are made by this module and what it imports:
# any edit there rebuilds them in place, so an edited source, profile pass or feature never serves stale ones
# (as the data stamps do for data)
UPSTREAM_CODE = code_key(__name__)
# the label weeks' pools are stacked for training: week h's clip rows are shifted by h x this, so no two weeks
# share a clip id (a pool holds far fewer target clips)
HOLDOUT_CLIP_OFFSET = 10_000_000
# the stages a holdout run needs before its pool can be labelled
HOLDOUT_STAGES = {"profiles": stage_profiles, "candidates": stage_candidates}
FIRST_STAGE = "first_stage"  # the first stage's name in a pool's columns (score__first_stage, rank__...)


def holdout_key(cfg: RunConfig, split: Split) -> dict:
    """Everything that shapes a holdout run's profiles and candidates: equal keys, equal artifacts."""
    shaping = (
        "positive_flags",
        "embedding_dim",
        "sources",
        "candidate_depth",
        "hnsw",
        "profiles",
        "gmm",
        "seed",
        "holdout_targets",
        "exclude_seen",
    )
    return json.loads(
        json.dumps(
            {
                "fit_weeks": [str(p) for p in split.fit_weeks],
                "truth_week": str(split.truth_week),
                **{k: getattr(cfg, k) for k in shaping},
                # regenerated or re-downloaded data under the same paths must not reuse old holdout runs
                "data_stamps": [file_stamp(p) for p in (*split.fit_weeks, split.truth_week)],
                "code": UPSTREAM_CODE,
            },
            default=lambda o: o.__dict__,
        )
    )


def holdout_dir(cfg: RunConfig, key: dict) -> Path:
    """Holdout runs are shared by content: submit mode's second holdout run is validate mode's first. The
    folder name ignores the data stamps and the code (rewritten data or edited code rebuilds the run in place,
    via holdout.json)."""
    named = {k: v for k, v in key.items() if k not in ("data_stamps", "code")}
    digest = hashlib.sha1(json.dumps(named, sort_keys=True).encode()).hexdigest()[:10]
    return cfg.artifacts.parent / f"{cfg.dataset_name}-holdout" / f"fit{len(key['fit_weeks']):02d}-{digest}"


FirstStage = dict[str, float]  # the first stage's weights per term (candidates/combined.py)


def run_pool(run: Run, first_stage: FirstStage | None = None) -> pl.DataFrame:
    """The run's candidate pool: its sources' top `pool_depth` users per clip and, with `first_stage`
    weights, the first stage's top `first_stage.depth` (`first_stage_candidates`), sorted by clip, user."""
    cfg = run.cfg
    frames = {name: run.candidates(name) for name in cfg.sources}
    depths = {}
    if first_stage is not None:
        frames[FIRST_STAGE] = first_stage_candidates(run, first_stage)
        depths[FIRST_STAGE] = cfg.first_stage.depth
    return candidate_pool(frames, cfg.reranker.pool_depth, depths)


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


def pool_features(run: Run, first_stage: FirstStage | None = None) -> pl.DataFrame:
    """The run's pool (`run_pool`) with the reranker's pair and clip-history features, sorted by clip, user:
    what the models train on (holdout runs)."""
    pool = run_pool(run, first_stage)
    features = run.engine.pair_features(pool, run.fit_data(), run.catalog, run.queries())
    return history_features(features, run.targets()["item_id"].to_numpy(), run.target_history())


def scored_pool(
    run: Run, predict: Callable[[pl.DataFrame], np.ndarray], first_stage: FirstStage | None = None
) -> pl.DataFrame:
    """(clip, user, score) of the run's pool, scored by `predict` over its features one block of
    `engine.feature_block_clips` clips at a time: only one block's features are held, not the pool's (GBs
    at VK size). The pool-wide feature tables (cap pressure, author tables) still see the whole pool."""
    pool = run_pool(run, first_stage)
    fit, queries = run.fit_data(), run.queries()
    context = pool_context(pool, fit, run.catalog, queries)
    block = run.engine.feature_block_clips or max(len(queries), 1)
    bounds = np.searchsorted(pool["clip"].to_numpy(), np.arange(0, len(queries) + block, block))
    item_ids, history = run.targets()["item_id"].to_numpy(), run.target_history()
    parts = []
    blocks = [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]
    for lo, hi in progress.iterate(blocks, "pool scores", "block"):
        with timing.substep("pair features"):
            part = run.engine.pair_features(pool.slice(lo, hi - lo), fit, run.catalog, queries, context)
            part = history_features(part, item_ids, history)
        with timing.substep("prediction"):
            score = pl.Series("score", predict(part), dtype=pl.Float32)
        parts.append(part.select("clip", "user").with_columns(score))
    return pl.concat(parts) if parts else pool.select("clip", "user", score=pl.lit(0.0, pl.Float32))


def label_positives(train_run: Run) -> pl.DataFrame:
    """(clip, user) rows and indices of a holdout run's label-week positives among its targets and users."""
    targets = train_run.targets()["item_id"].to_numpy()
    truth = truth_positives(train_run.split().truth_week, train_run.cfg.positive_flags, targets)
    clip_of = pl.DataFrame({"item_id": pl.Series(targets, dtype=pl.UInt32)}).with_row_index("clip")
    truth = truth.join(clip_of, on="item_id")
    truth = truth.with_columns(pl.Series("user", train_run.catalog.users.lookup(truth["user_id"].to_numpy())))
    positives = truth.filter(pl.col("user") >= 0).select(pl.col("clip").cast(pl.Int32), "user")
    return positives.unique().sort("clip", "user")  # a fixed order: the first stage's fit sees the same rows


def labelled_pool(train_run: Run, first_stage: FirstStage | None = None) -> pl.DataFrame:
    """A holdout run's pool features labelled by its truth week's positives, without the hidden audience of
    its pseudo-new clips (without_hidden_audience)."""
    cfg = train_run.cfg
    targets = train_run.targets()["item_id"].to_numpy()
    pool = without_hidden_audience(
        pool_features(train_run, first_stage), targets, train_run.split(), cfg, train_run.catalog
    )
    return add_labels(pool, label_positives(train_run))


def without_hidden_audience(
    pool: pl.DataFrame, item_ids: np.ndarray, split: Split, cfg: RunConfig, catalog: Catalog
) -> pl.DataFrame:
    """A holdout run's pool (clip rows follow `item_ids`) without the (pseudo-new clip, user) pairs whose
    interaction was hidden from its fit weeks: pairs do not repeat, so those users cannot be positives of
    the label week, and keeping them as negatives teaches the reranker that users like a clip's audience do
    not engage with it. Real new clips have no such users. Costs one fit-week scan filtered to the clips."""
    pseudo, _ = holdout_samples(split, cfg)
    if pseudo.size == 0:
        return pool
    row, user = seen_pairs(target_history(split.fit_weeks, pseudo, cfg.positive_flags), item_ids, catalog)
    hidden = pl.DataFrame({"clip": row, "user": user}).cast(
        {"clip": pool.schema["clip"], "user": pool.schema["user"]}
    )
    return pool.join(hidden, on=["clip", "user"], how="anti")


def _pool_path(train_run: Run, first_stage: FirstStage | None) -> Path:
    """The labelled pool's file, named by the pool depth and the first stage (depth and weights) it holds."""
    name = f"labelled_pool_depth{train_run.cfg.reranker.pool_depth}"
    if first_stage is not None:
        shaped = json.dumps([train_run.cfg.first_stage.depth, first_stage], sort_keys=True)
        name += "_first" + hashlib.sha1(shaped.encode()).hexdigest()[:10]
    return train_run.path(f"{name}.parquet")


def holdout_run(run: Run, week: LabelWeek) -> Run:
    """`run` shifted back `week.holdout` weeks, fitted on the weeks before the label week, its targets the
    clips `week.targets` asks for; its profiles and candidates are built unless its folder's holdout.json
    holds the same key. A rebuild drops the labelled pools made from the old build, of every pool depth:
    the folder is shared by runs of any depth, and a pool left behind would be served as fresh."""
    cfg = run.cfg
    split = make_split(run.layout, cfg.mode, None, cfg.holdout + week.holdout)
    key = holdout_key(replace(cfg, holdout_targets=week.targets), split)
    train_cfg = replace(
        cfg,
        holdout=cfg.holdout + week.holdout,
        holdout_targets=week.targets,
        run_dir=holdout_dir(cfg, key),
        weeks_dir=cfg.weeks_cache,  # the main run's aggregates serve its holdout runs
        targets=None,
        baselines=(),
        rerank=False,
        learned_blend=False,
        final_method=cfg.sources[0],
        quiet=True,
    )
    train_run = Run(train_cfg)
    stamp = train_run.path("holdout.json")
    with _building(train_run):  # two runs of one dataset at once: one builds, the other waits and reuses
        if not (stamp.is_file() and read_json(stamp) == key):
            for stale in train_run.dir.glob("labelled_pool_depth*.parquet"):
                stale.unlink()
            for stage, function in HOLDOUT_STAGES.items():
                execute(train_run, stage, function)
            write_json(key, stamp)
    return train_run


def _building(train_run: Run):
    """The lock a holdout run's folder is built under (inside it: a rebuild keeps the folder)."""
    return file_lock(train_run.path(".build.lock"))


def shift_clips(pool: pl.DataFrame, holdout: int, source: Path | str = "pool") -> pl.DataFrame:
    """`pool` with its clip ids shifted by `holdout` x HOLDOUT_CLIP_OFFSET, so pools of different label weeks
    stack without sharing a clip id. Raises DataError (naming `source`) when a pool holds as many clips."""
    if pool.height and pool["clip"].max() >= HOLDOUT_CLIP_OFFSET:
        raise DataError(f"{source}: {pool['clip'].max() + 1} target clips exceed HOLDOUT_CLIP_OFFSET")
    return pool.with_columns(pl.col("clip") + holdout * HOLDOUT_CLIP_OFFSET)


def training_frame(run: Run, week: LabelWeek, first_stage: FirstStage | None = None) -> pl.DataFrame:
    """Features and labels of the pipeline shifted back `week.holdout` weeks (`holdout_run`), its clip ids
    shifted apart from other weeks' (`shift_clips`). The labelled pool is cached in the holdout run's folder:
    written by the first of the blend and rank stages to need it, read by the other."""
    train_run = holdout_run(run, week)
    cached = _pool_path(train_run, first_stage)
    with _building(train_run):
        if not cached.is_file():
            with timing.substep("holdout pair features"):
                write_parquet(labelled_pool(train_run, first_stage), cached)
    return shift_clips(pl.read_parquet(cached), week.holdout, cached)


def training_frames(run: Run, plan: TrainingPlan) -> pl.DataFrame:
    """The labelled pools of the plan's label weeks, stacked (clip ids kept apart per week), with the first
    stage learned on the same weeks (`first_stage_weights`) in their pools."""
    first_stage = first_stage_weights(run, plan)
    return pl.concat([training_frame(run, week, first_stage) for week in plan.weeks], how="diagonal_relaxed")


def _n_warm_targets(run: Run) -> int:
    targets = run.targets()
    return int(targets["warm"].sum()) if "warm" in targets.columns else 0


def train_with_fallbacks(
    run: Run, fit: Callable[[pl.DataFrame], object], what: str
) -> tuple[object | None, dict, TrainingPlan | None]:
    """Fit a model (`fit`: labelled pools -> model) on the first protocol of the chain that can train
    (rank/protocol.py). Returns (model or None, record, last plan whose pools were built or None); says
    once, as a warning, what it fell back from and why. Bad input (a plain DataError) still stops the run."""
    cfg = run.cfg
    plans = training_plans(run.split().fit_weeks, cfg.reranker, _n_warm_targets(run))
    record: dict = {"model": what, "tried": [], "used": None}
    built = None
    for plan in plans:
        if not plan.weeks:
            record["tried"].append({**plan.to_dict(), "error": plan.note})
            continue
        try:
            frames = [training_frames(run, plan)]
            built = plan
            model = fit(frames.pop())  # no reference kept: fit drops the unsampled frame once sampled
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
