"""The candidates stage: every configured source and baseline fitted on the fit data and asked for the
top-`candidate_depth` users of each target clip -> candidates/<source>.parquet, candidates/sources.json."""

from __future__ import annotations

import time

from audience import timing
from audience.arrays import TopK
from audience.candidates import make_source
from audience.candidates.ann import recall_against_exact
from audience.candidates.exclude_seen import ExcludeSeen
from audience.io import write_json, write_parquet
from audience.stages.run import Run, file_key


def stage_candidates(run: Run) -> None:
    cfg = run.cfg
    fit, queries = run.fit_data(), run.queries()
    report: dict[str, dict] = {}
    results = {}
    history = run.target_history() if cfg.exclude_seen else None
    for name in dict.fromkeys((*cfg.sources, *cfg.baselines)):
        source = make_source(name, cfg) if history is None else ExcludeSeen(make_source(name, cfg), history)
        start = time.perf_counter()
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
