"""Holdout runs: the pipeline shifted back `holdout` weeks (rank/protocol.py chooses which), fitted on the
weeks before a label week, whose labelled candidate pools the reranker and MixiGen train on
(stages/training_data.py). Building one costs a profile pass and every candidate source, so holdout runs are
cached beside the run:

* `holdout_key`: everything that shapes a holdout run's profiles and candidates: the fit weeks, the truth
  week, the settings marked as shaping them (RunConfig.candidate_settings), the data files' stamps and a
  hash of the code that builds them (`HOLDOUT_CODE`: this module's import closure, which holds the profiles
  and candidates stages but not the pair features or the models). A run whose key differs is rebuilt in
  place, so regenerated data or an edited source or profile pass never serves stale candidates, and an
  edited feature or model reuses them.
* `holdout_dir`: the run's folder, named by the key without stamps and code, so runs of equal content are
  shared (submit mode's second holdout run is validate mode's first).
* `building`: the lock a holdout run's folder is built and read under, so two runs of one dataset at once
  share it (one builds, the other waits and reuses)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from audience.code_key import code_key
from audience.config import RunConfig
from audience.io import file_lock, file_stamp, read_json, write_json
from audience.rank.protocol import LabelWeek
from audience.split import Split, make_split
from audience.stages.candidates import stage_candidates
from audience.stages.execute import execute
from audience.stages.profiles import stage_profiles
from audience.stages.run import Run

__all__ = ["HOLDOUT_CODE", "LABELLED_POOLS", "building", "holdout_dir", "holdout_key", "holdout_run"]

# the code that builds a holdout run's artifacts (its profiles and candidates): any edit in this module's
# import closure rebuilds them in place, as the data stamps do for data
HOLDOUT_CODE = code_key(__name__)
# the stages a holdout run needs before its pool can be labelled
HOLDOUT_STAGES = {"profiles": stage_profiles, "candidates": stage_candidates}
# the labelled pools made from a holdout run's candidates (stages/training_data.py): dropped on a rebuild
LABELLED_POOLS = "labelled_pool_*.parquet"


def holdout_key(cfg: RunConfig, split: Split) -> dict:
    """Everything that shapes a holdout run's profiles and candidates: equal keys, equal artifacts. A run on
    user shards keeps its users' state in the shards' files, not in fit_data.npz: its holdout runs are its
    own (the key says so only then, so that other runs' keys stay as they were)."""
    sharded = {"fit_data": "user shards"} if cfg.engine == "dask" and cfg.dask.user_shards else {}
    return json.loads(
        json.dumps(
            {
                "fit_weeks": [str(p) for p in split.fit_weeks],
                "truth_week": str(split.truth_week),
                **cfg.candidate_settings(),
                **sharded,
                # regenerated or re-downloaded data under the same paths must not reuse old holdout runs
                "data_stamps": [file_stamp(p) for p in (*split.fit_weeks, split.truth_week)],
                "code": HOLDOUT_CODE,
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
    with building(train_run):
        if not (stamp.is_file() and read_json(stamp) == key):
            for stale in train_run.dir.glob(LABELLED_POOLS):
                stale.unlink()
            for stage, function in HOLDOUT_STAGES.items():
                execute(train_run, stage, function)
            write_json(key, stamp)
    return train_run


def building(train_run: Run):
    """The lock a holdout run's folder is built under (inside it: a rebuild keeps the folder)."""
    return file_lock(train_run.path(".build.lock"))
