"""The rankers on one preset: the MixiGen blender, the holdout-tuned fixed quota and the XGBoost reranker.

    python benchmarks/bench_rankers.py --preset small [--timeout 3600]

1. The whole validate pipeline with the learned blend (`python -m audience run --learned-blend`) runs in a
   child process under `--timeout` seconds, in its own artifacts folder (artifacts/bench-rankers/), whose
   holdout runs are deleted first so every figure includes building them. Recorded: each stage's wall time
   (the blend stage builds the holdout runs and their labelled pools, trains MixiGen and tunes the quota; the
   rank stage trains the reranker on those pools and scores the run's pool), each booster's own fit seconds
   (DMatrix + boosting), the quota search seconds, peak RSS.
2. A second child reopens the run: builds the run's pool features once (timed), then for each booster
   measures batched throughput (every pool row of every target clip in one call) and single-clip latency
   (median of up to 50 one-clip calls, spread over the targets).
3. NDCG@100 after the cap and recall@100 of blend, quota, MixiGen and the reranker, and the oracle, from the
   run's results.json.

Writes benchmarks/results/rankers_<preset>.md and .json."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, machine_line
from _runs import open_run
from _suite import (
    RESULTS,
    ROOT,
    data_dir,
    ensure_data,
    publish,
    read_json,
    run_child,
    write_json,
)

from audience.config import STAGES
from audience.markdown import table
from audience.rank.mixigen import MixiGen, long_candidates
from audience.rank.reranker import Reranker
from audience.stages.training_data import pool_features

BENCH_ARTIFACTS = ROOT / "artifacts" / "bench-rankers"
SINGLE_CALLS = 50
METHODS = ("blend", "quota", "mixigen", "reranked")


def run_dir(preset: str) -> Path:
    return BENCH_ARTIFACTS / f"synthetic-{preset}-validate"


def clip_slices(clips: np.ndarray, calls: int) -> list[slice]:
    """Row ranges of up to `calls` clips spread evenly over the sorted `clips` column (one slice per clip)."""
    starts = np.flatnonzero(np.r_[True, clips[1:] != clips[:-1]])
    ends = np.r_[starts[1:], clips.shape[0]]
    picks = np.unique(np.linspace(0, starts.shape[0] - 1, min(calls, starts.shape[0])).astype(int))
    return [slice(int(starts[i]), int(ends[i])) for i in picks]


def time_calls(predict, frame, clips: np.ndarray) -> dict:
    """Batched rows/s and clips/s over `frame`, then the median one-clip latency over spread-out clips."""
    start = time.perf_counter()
    predict(frame)
    batch_s = time.perf_counter() - start
    n_clips = int(np.unique(clips).shape[0])
    single = []
    for part in clip_slices(clips, SINGLE_CALLS):
        start = time.perf_counter()
        predict(frame[part])
        single.append(time.perf_counter() - start)
    return {
        "rows": frame.height,
        "clips": n_clips,
        "batch_s": round(batch_s, 3),
        "batch_rows_per_s": frame.height / batch_s,
        "batch_clips_per_s": n_clips / batch_s,
        "latency_ms": 1000 * float(np.median(single)),
        "single_clips_per_s": len(single) / sum(single),
        "rows_per_clip": frame.height / max(n_clips, 1),
    }


def measure_scoring(preset: str) -> dict:
    """Child part: pool features once, then each booster's batched and one-clip scoring."""
    run = open_run(run_dir(preset))
    start = time.perf_counter()
    pool = pool_features(run)  # sorted by clip, user
    features_s = time.perf_counter() - start
    ranker = Reranker.load(run.path("ranker"), run.cfg.n_threads)
    figures = {"pool_features_s": round(features_s, 2), "pool_rows": pool.height}
    figures["reranker"] = time_calls(ranker.predict, pool, pool["clip"].to_numpy())
    mixigen = MixiGen.load(run.path("mixigen"), run.cfg.n_threads)
    long = long_candidates(pool, run.cfg.sources)  # sorted by clip
    figures["mixigen"] = time_calls(mixigen.value, long, long["clip"].to_numpy())
    return figures


def bench_preset(preset: str, timeout: float) -> dict:
    data, generated_s = ensure_data(preset)
    folder = run_dir(preset)
    for stale in (folder, BENCH_ARTIFACTS / f"{data.name}-holdout"):  # nothing cached from a last run
        shutil.rmtree(stale, ignore_errors=True)
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    pipeline = [py, "-m", "audience", "run", "--data-dir", str(data), "--mode", "validate"]
    pipeline += ["--run-dir", str(folder), "--learned-blend", "--quiet"]
    figures: dict = {"machine": machine(), "preset": preset, "generated_s": generated_s}
    figures["pipeline"] = run_child(pipeline, timeout, logs / "pipeline.log")
    if figures["pipeline"]["status"] != "ok":
        return figures
    timings = read_json(folder / "timings.json")
    figures["stages_s"] = {stage: timings[stage] for stage in STAGES if stage in timings}
    scoring_cmd = [py, str(Path(__file__).resolve()), "--preset", preset, "--part", "scoring"]
    figures["scoring_child"] = run_child(scoring_cmd, timeout, logs / "scoring.log")
    if figures["scoring_child"]["status"] == "ok":
        figures["scoring"] = read_json(folder / "scoring.json")
    figures["models"] = {}
    for name, sub in (("reranker", "ranker"), ("mixigen", "mixigen")):
        meta = read_json(folder / sub / "meta.json")
        figures["models"][name] = {
            **meta["report"],
            "stored_mb": (folder / sub / "model.json").stat().st_size / 2**20,
            "top_features": dict(list(meta["importance"].items())[:5]),
        }
    merge = read_json(folder / "mixigen" / "merge.json")
    figures["quota"] = {"tune_s": merge.get("quota_tune_s"), "shares": merge["quota_shares"]}
    results = read_json(folder / "results.json")
    by_method = {row["method"]: row for row in results["methods"]}
    figures["results"] = {m: by_method[m] for m in (*METHODS, "oracle") if m in by_method}
    figures["targets"] = results.get("n_targets")
    return figures


def _cell(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def markdown(figures: dict) -> str:
    preset = figures["preset"]
    lines = [
        f"# Rankers on synthetic-{preset} (validate, learned blend on)",
        "",
        f"Machine: {machine_line()}",
        "",
    ]
    pipe = figures["pipeline"]
    if pipe["status"] != "ok":
        return "\n".join([*lines, f"The pipeline {pipe['status']} after {pipe['wall_s']:.0f} s.", ""])
    stages = figures["stages_s"]
    lines += [
        f"Pipeline (one process): {pipe['wall_s']:.0f} s wall, peak RSS {pipe['peak_rss_gib']:.2f} GiB. "
        "Stages: " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()) + ".",
        "",
    ]
    scoring = figures.get("scoring", {})
    rows = []
    for name, method in (("mixigen", "mixigen"), ("reranker", "reranked")):
        m, s, r = figures["models"][name], scoring.get(name, {}), figures["results"].get(method, {})
        rows.append(
            [
                name,
                _cell(m.get("fit_s"), ".1f"),
                f"{m['train_rows']:,}",
                str(m["best_iteration"]),
                f"{m['stored_mb']:.2f}",
                _cell(s.get("rows_per_clip"), ",.0f"),
                _cell(s.get("latency_ms"), ".2f"),
                _cell(s.get("single_clips_per_s"), ",.0f"),
                _cell(s.get("batch_clips_per_s"), ",.0f"),
                _cell(s.get("batch_rows_per_s"), ",.0f"),
                _cell(r.get("ndcg_capped"), ".4f"),
                _cell(r.get("recall@100"), ".4f"),
            ]
        )
    header = [
        "ranker",
        "fit s",
        "train rows",
        "best iteration",
        "stored MB",
        "rows/clip",
        "latency ms (1 clip)",
        "clips/s (1 at a time)",
        "clips/s (batch)",
        "rows/s (batch)",
        "NDCG@100",
        "recall@100",
    ]
    lines += table(header, rows)
    quota = figures["quota"]
    lines += [
        "",
        f"Fixed quota (coordinate search on the holdout pools): {_cell(quota['tune_s'], '.1f')} s; shares "
        + ", ".join(f"{k} {v:.2f}" for k, v in quota["shares"].items())
        + ".",
    ]
    if scoring:
        lines.append(
            f"Pool features of the run ({scoring['pool_rows']:,} rows): {scoring['pool_features_s']:.1f} s."
        )
    results = [
        [method, f"{r['ndcg_capped']:.4f}", _cell(r.get("recall@100"), ".4f")]
        for method, r in figures["results"].items()
    ]
    lines += ["", *table(["method", "NDCG@100 (capped)", "recall@100"], results)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds for the pipeline process")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # child mode: scoring
    args = parser.parse_args()
    if args.part == "scoring":
        write_json(run_dir(args.preset) / "scoring.json", measure_scoring(args.preset))
        return
    if not data_dir(args.preset).is_dir():
        print(f"generating synthetic-{args.preset} first", flush=True)
    figures = bench_preset(args.preset, args.timeout)
    out = RESULTS / f"rankers_{args.preset}"
    publish(out, figures, markdown(figures))


if __name__ == "__main__":
    main()
