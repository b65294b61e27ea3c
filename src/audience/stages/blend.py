"""The blend stage: reciprocal-rank fusion of the sources -> candidates/blend.parquet; with `learned_blend`,
MixiGen and the tuned fixed quota, trained on the holdout runs' labelled pools -> mixigen/, quota."""

from __future__ import annotations

import time

import polars as pl

from audience.errors import TooLittleData
from audience.io import write_json, write_parquet
from audience.rank.mixigen import (
    MixiGen,
    kway_merge,
    long_candidates,
    position_trend,
    quota_merge,
    tune_quota,
    value_by_position,
)
from audience.rank.simple_blend import rrf_blend_files
from audience.stages.run import Run
from audience.stages.training_data import pool_features, train_with_fallbacks, training_frames


def stage_blend(run: Run) -> None:
    """Reciprocal-rank fusion ('blend'); with `learned_blend`, also the holdout-tuned fixed quota ('quota')
    and the MixiGen k-way merge by learned position value ('mixigen')."""
    cfg = run.cfg
    paths = {name: run.candidates_path(name) for name in cfg.sources}
    blended = rrf_blend_files(paths, run.targets().height, k=cfg.blend_rrf_k, depth=cfg.candidate_depth)
    write_parquet(blended, run.path("candidates", "blend.parquet"))
    if not cfg.learned_blend:
        return
    folder = run.path("mixigen")
    mixigen = MixiGen(cfg.mixigen, cfg.sources, cfg.n_threads, cfg.seed)
    model, record, built = train_with_fallbacks(
        run, lambda frames: mixigen.fit(long_candidates(frames.collect(), cfg.sources)), "mixigen"
    )
    if model is None:  # opt-in stage: stop with what was tried (the default chain never comes here)
        raise TooLittleData(f"mixigen: no training protocol could train: {record['tried']}")
    write_json(record, folder / "training.json")
    train = long_candidates(training_frames(run, built).collect(), cfg.sources)  # cached pools: a re-read
    model.save(folder)
    table = value_by_position(train, model.value(train), cfg.sources)
    write_parquet(table, folder / "value_by_position.parquet")
    tune_start = time.perf_counter()
    objective = cfg.mixigen.quota_objective
    quota_budget = cfg.list_size if objective == "ndcg" else cfg.candidate_depth
    shares, holdout_score = tune_quota(
        train,
        len(cfg.sources),
        quota_budget,
        cfg.mixigen.quota_multipliers,
        cfg.mixigen.quota_rounds,
        objective,
    )
    tune_s = time.perf_counter() - tune_start
    applied = long_candidates(pool_features(run), cfg.sources)
    merged = {
        "mixigen": kway_merge(applied, model.value(applied), cfg.candidate_depth),
        "quota": quota_merge(applied, shares, cfg.candidate_depth),
    }
    contributions = {}
    n_clips = max(run.targets().height, 1)
    for method, frame in merged.items():
        top = frame.filter(pl.col("rank") <= cfg.list_size)
        counts = top.group_by("source").len().sort("source")
        contributions[method] = {cfg.sources[int(s)]: round(n / n_clips, 2) for s, n in counts.iter_rows()}
        out = frame.select("clip", "user", "score", "rank").with_columns(pl.lit(method).alias("source"))
        write_parquet(out, run.path("candidates", f"{method}.parquet"))
    write_json(
        {
            "position_trend_spearman": position_trend(table),
            "quota_shares": {cfg.sources[s]: round(v, 4) for s, v in shares.items()},
            f"quota_holdout_pool_{objective}@{quota_budget}": round(holdout_score, 5),
            "quota_tune_s": round(tune_s, 2),
            f"mean_users_per_clip_by_source_top{cfg.list_size}": contributions,
        },
        folder / "merge.json",
    )
