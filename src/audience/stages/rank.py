"""The rank stage: the XGBoost reranker trained on the holdout runs' labelled pools (stages/training_data.py),
then applied to this run's pool -> candidates/reranked.parquet, ranker/, training.json."""

from __future__ import annotations

import logging

import polars as pl

from audience.arrays import rank_within_clip
from audience.io import write_json, write_parquet
from audience.rank.protocol import best_source_on_pools
from audience.rank.reranker import Reranker
from audience.stages.run import Run
from audience.stages.training_data import (
    first_stage_weights,
    scored_pool,
    train_with_fallbacks,
    training_frames,
)

log = logging.getLogger(__name__)


def stage_rank(run: Run) -> None:
    """Train the reranker on `train_weeks` holdout splits, then score this run's candidate pool."""
    cfg = run.cfg
    if not cfg.rerank:
        return
    reranker = Reranker(cfg.reranker, cfg.n_threads, cfg.seed, run.engine.boosting(cfg.n_threads))
    # fit reads the training frames part by part, keeping only their sampled rows (the substep "boosting" is
    # timed inside it)
    model, record, built = train_with_fallbacks(run, reranker.fit, "reranker")
    if model is None:  # the last resort: the source that ranks best on the holdout pools built so far
        pools = training_frames(run, built).collect() if built is not None else None
        best, scores = best_source_on_pools(pools, cfg.sources, cfg.list_size)
        record["fallback_source"] = {"source": best, f"holdout_pool_ndcg@{cfg.list_size}": scores}
        log.warning(
            "reranker: cannot train (%s); 'reranked' is the best single source on the holdout weeks, %r "
            "(recorded in %s)",
            "; ".join(str(t["error"]) for t in record["tried"]),
            best,
            run.path("training.json"),
        )
        ranked = run.candidates(best).with_columns(pl.lit("reranked").alias("source"))
    else:
        model.save(run.path("ranker"))
        first_stage = first_stage_weights(run, built) if built is not None else None
        record["first_stage"] = first_stage
        scored = scored_pool(run, model.predict, first_stage)
        ranked = rank_within_clip(scored).with_columns(pl.lit("reranked").alias("source"))
    write_json(record, run.path("training.json"))
    write_parquet(ranked, run.path("candidates", "reranked.parquet"))
