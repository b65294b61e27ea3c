"""The candidates stage: every configured source and baseline fitted on the fit data and asked for the
top-`candidate_depth` users of each target clip -> candidates/<source>.parquet, candidates/sources.json."""

from __future__ import annotations

import time
from functools import partial

import polars as pl

from audience import timing
from audience.arrays import TopK
from audience.candidates import ClipQueries, make_source
from audience.candidates.ann import recall_against_exact
from audience.candidates.exclude_seen import ExcludeSeen, drop_seen, excluding_seen, largest_audience
from audience.candidates.sharded import (
    fit_on_rows,
    fits_on_sampled_rows,
    sampled_rows,
    sharded_answers,
    user_shardable,
)
from audience.data.target_history import seen_pairs
from audience.io import write_json, write_parquet
from audience.profiles.fit_data import FitData
from audience.stages.run import Run, file_key


def stage_candidates(run: Run) -> None:
    """Every source's lists; with user shards (the Dask engine's `user_shards`), the sources that split by
    user are fitted and answered on the workers, shard by shard (their time is all 'query'), those fitted on
    a sample of users here on the rows the shards send, the rest here on the run's fit data: its counts
    alone for the sources that read nothing else (popular, random), the whole of it only if a source needs
    it."""
    cfg = run.cfg
    queries = run.queries()
    report: dict[str, dict] = {}
    results = {}
    history = run.target_history() if cfg.exclude_seen else None
    loaded: dict[bool, FitData] = {}
    for name in dict.fromkeys((*cfg.sources, *cfg.baselines)):
        start = time.perf_counter()
        source = make_source(name, cfg)
        if run.engine.n_user_shards and user_shardable(source):
            fitted = time.perf_counter()  # the shards' fit data is combined once, on the workers
            results[name] = sharded_lists(run, name, queries, history)
        elif run.engine.n_user_shards and fits_on_sampled_rows(source):
            source = sampled_fit(run, name, history)
            fitted = time.perf_counter()
            results[name] = run.engine.recommend(source, queries, cfg.candidate_depth)
        else:
            counts_only = bool(getattr(source, "reads_counts_only", False))
            if counts_only not in loaded:
                loaded[counts_only] = run.fit_counts() if counts_only else run.fit_data()
            fit = loaded[counts_only]
            source = source if history is None else ExcludeSeen(source, history)
            source.fit(fit, run.catalog)
            fitted = time.perf_counter()
            results[name] = run.engine.recommend(source, queries, cfg.candidate_depth)
        done = time.perf_counter()
        timing.add(f"{name} fit", fitted - start)
        timing.add(f"{name} query", done - fitted)
        write_parquet(results[name].to_frame(name), run.path("candidates", f"{file_key(name)}.parquet"))
        report[name] = {
            "fit_s": round(fitted - start, 3),
            "query_s": round(done - fitted, 3),
            "queries_per_s": round(len(queries) / max(done - fitted, 1e-9), 1),
        }
    for name in results:  # HNSW against its exact twin, when the run has both
        backend, _, profile = name.partition(":")
        if backend == "hnsw" and f"exact:{profile}" in results:
            exact = results[f"exact:{profile}"]
            approx = results[name]
            k = min(cfg.list_size, exact.ids.shape[1])
            recall = recall_against_exact(
                TopK(approx.ids[:, :k], approx.scores[:, :k]), TopK(exact.ids[:, :k], exact.scores[:, :k])
            )
            report[name][f"recall_at_{k}_vs_exact"] = round(recall, 5)
    write_json(report, run.path("candidates", "sources.json"))


def sampled_fit(run: Run, name: str, history: pl.DataFrame | None):
    """Source `name` fitted on the rows of its sample of users that the engine's user shards send, where the
    engine places it (`engine.placed`: on a worker for the Dask engine, whose client then holds none of the
    sample's state, only the handle that `engine.recommend` takes), wrapped there to leave out the targets'
    fit-week audience (`history`, None to keep it)."""
    shards, shard_map = run.user_shards()
    build = partial(make_source, name, run.cfg)
    parts, users = sampled_rows(build, shard_map, shards, run.fit_counts())
    source = run.engine.placed(fit_on_rows, build, parts, users, run.catalog)
    return source if history is None else run.engine.placed(excluding_seen, source, history, run.catalog)


def sharded_lists(run: Run, name: str, queries: ClipQueries, history: pl.DataFrame | None) -> TopK:
    """Source `name`'s lists from the engine's user shards (fit and query timed together as the query),
    the targets' fit-week audience (`history`, None to keep it) left out as ExcludeSeen leaves it out."""
    depth = run.cfg.candidate_depth
    seen = None if history is None else seen_pairs(history, queries.item_ids, run.catalog)
    extra = min(largest_audience(history), depth) if seen is not None and seen[0].size else 0
    build = partial(make_source, name, run.cfg)
    shards, shard_map = run.user_shards()
    top = sharded_answers(build, shard_map, shards, run.catalog, queries, depth + extra)
    return top if seen is None else drop_seen(top, seen, run.catalog.n_users, depth)
