"""Every clip -> users generator in one table: fit time, stored size, single-clip latency and non-batched
clips/s, batch throughput, NDCG@100 (after the cap) and truth-week recall@300, on one preset in validate mode.

    python benchmarks/bench_generators.py --preset small [--generators a,b] [--timeout 600]

The profiles stage (the one streamed pass every generator starts from) runs once; then each generator runs
in its own child process under `--timeout` seconds (fit, one batched call over every target clip, then
one-clip calls), so a slow or crashing generator is reported as such and the others still run. Its batched
candidates go to the run folder, and the pipeline's own blend/assign/evaluate stages score them all (reranker
off, so NDCG is each generator alone after the cap).

* fit s: `source.fit` on the fit weeks' aggregates. The `gmm:*` sources also count fitting their mixture
  (the pipeline does it once in the profiles stage, shared by both).
* stored MB: the pickled size of the fitted generator (hnswlib indexes pickle their graph).
* latency: median of one-clip `recommend` calls (up to 50, spread over the targets, within 30 s); clips/s
  non-batched = calls / their total time; clips/s batch = every target clip in one call.

Writes benchmarks/results/generators_<preset>.md and .json
(run folder: artifacts/bench-generators-<preset>)."""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, machine_line
from _suite import (
    GENERATOR_COLUMNS,
    RESULTS,
    ROOT,
    data_dir,
    ensure_data,
    publish,
    read_json,
    run_child,
    write_json,
)

from audience import progress
from audience.candidates import make_source
from audience.config import RunConfig, load_config
from audience.io import write_parquet
from audience.markdown import table
from audience.pipeline import run_all
from audience.profiles.gmm import fit_gmm
from audience.stages.run import Run, file_key

GENERATORS = (
    "popular",
    "author_fans",
    "coengagement",
    "hnsw:all",
    "exact:all",
    "hnsw:positive",
    "hnsw:timespent",
    "hnsw:recency",
    "hnsw:negative",
    "gmm:all",
    "gmm:positive",
    "bpr_bridge",
    "ease_bridge",
    "slim_bridge",
    "random",
)
SINGLE_CALLS = 50
SINGLE_BUDGET_S = 30.0


def run_dir(preset: str) -> Path:
    return ROOT / "artifacts" / f"bench-generators-{preset}"


def bench_config(preset: str, sources: tuple[str, ...]) -> RunConfig:
    """The pipeline's defaults with `sources` as the only methods (no baselines, learned blend, reranker)."""
    cfg = load_config(data_dir=data_dir(preset), run_dir=run_dir(preset), quiet=True)
    # learned_blend (the holdout-trained merges) is off where the config has it: each generator alone
    off = {"learned_blend": False} if "learned_blend" in {f.name for f in fields(RunConfig)} else {}
    return replace(cfg, sources=sources, baselines=(), rerank=False, final_method=sources[0], **off)


def measure_one(preset: str, name: str) -> dict:
    """Fit one generator on the run folder's profiles, time it, write its candidates (child process)."""
    progress.configure(False)  # one line per single-clip call would flood the log and the timing
    cfg = bench_config(preset, GENERATORS)
    run = Run(cfg)
    fit, queries, catalog = run.fit_data(), run.queries(), run.catalog
    source = make_source(name, cfg)
    extra_s = 0.0
    if name.startswith("gmm:"):
        start = time.perf_counter()
        fit_gmm(catalog.embedding[catalog.has_embedding], cfg.gmm)
        extra_s = time.perf_counter() - start
    start = time.perf_counter()
    source.fit(fit, catalog)
    fit_s = time.perf_counter() - start
    stored_mb = len(pickle.dumps(source, protocol=pickle.HIGHEST_PROTOCOL)) / 2**20
    start = time.perf_counter()
    top = source.recommend(queries, cfg.candidate_depth)
    batch_s = time.perf_counter() - start
    write_parquet(top.to_frame(name), run.path("candidates", f"{file_key(name)}.parquet"))
    singles: list[float] = []
    budget_start = time.perf_counter()
    for row in np.linspace(0, len(queries) - 1, SINGLE_CALLS).astype(int):
        one = queries.subset(slice(row, row + 1))
        start = time.perf_counter()
        source.recommend(one, cfg.candidate_depth)
        singles.append(time.perf_counter() - start)
        if time.perf_counter() - budget_start > SINGLE_BUDGET_S and len(singles) >= 3:
            break
    return {
        "generator": name,
        "fit_s": fit_s + extra_s,
        "mixture_fit_s": extra_s,
        "stored_mb": stored_mb,
        "latency_ms": 1000 * float(np.median(singles)),
        "single_calls": len(singles),
        "single_qps": len(singles) / float(np.sum(singles)),
        "batch_qps": len(queries) / batch_s,
        "batch_s": batch_s,
    }


def score(preset: str, names: tuple[str, ...]) -> dict:
    """NDCG@100 after the cap and pool recall of every measured generator (the pipeline's stages)."""
    cfg = bench_config(preset, names)
    run_all(cfg, ("blend", "assign", "evaluate"))
    return read_json(cfg.artifacts / "results.json")


def bench_preset(preset: str, generators: tuple[str, ...], timeout: float) -> dict:
    """Profiles once, every generator in its own child under `timeout`, then the scoring stages."""
    ensure_data(preset)
    folder = run_dir(preset)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve()), "--preset", preset]
    profiles = run_child([*me, "--part", "profiles"], None, folder / "logs" / "profiles.log")
    if profiles["status"] != "ok":
        raise SystemExit(f"profiles stage failed on {preset}: {profiles}")
    rows = []
    for name in generators:
        out = folder / "logs" / f"{file_key(name)}.json"
        out.unlink(missing_ok=True)
        child = run_child([*me, "--part", name], timeout, folder / "logs" / f"{file_key(name)}.log")
        row = {"generator": name, "status": child["status"], "child": child}
        if child["status"] == "ok":
            row.update(read_json(out))
        print(json.dumps(row), flush=True)
        rows.append(row)
    ok = tuple(r["generator"] for r in rows if r["status"] == "ok")
    scoring = run_child(
        [*me, "--part", "score", "--generators", ",".join(ok)], None, folder / "logs" / "score.log"
    )
    if scoring["status"] != "ok":
        raise SystemExit(f"scoring failed on {preset}: {scoring}")
    results = read_json(folder / "results.json")
    by_method = {r["method"]: r for r in results["methods"]}
    for row in rows:
        if row["status"] == "ok":
            found = by_method[row["generator"]]
            row["ndcg@100"] = found["ndcg_capped"]
            row["recall@300"] = found.get("recall@300")
    split = read_json(folder / "split.json")
    return {
        "machine": machine(),
        "preset": preset,
        "timeout_s": timeout,
        "split": split,
        "profiles_stage": profiles,
        "scoring": scoring,
        "rows": rows,
        "oracle_ndcg@100": by_method.get("oracle", {}).get("ndcg_capped"),
        "union_recall@300": by_method.get("union of sources", {}).get("recall@300"),
        "candidate_depth": bench_config(preset, generators).candidate_depth,
    }


def _cell(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def markdown(figures: dict) -> str:
    split = figures["split"]
    prof = figures["profiles_stage"]
    lines = [
        f"# Clip -> users generators on `{figures['preset']}` (validate mode, {split['n_targets']:,} new "
        f"clips, {split['users_with_history']:,} users with history, {split['fit_interactions']:,} fit "
        f"interactions, depth {figures['candidate_depth']})",
        "",
        f"Machine: {machine_line()}",
        "",
        f"Profiles stage (shared by every generator): {prof['wall_s']:.1f} s wall, peak RSS "
        f"{prof['peak_rss_gib']:.2f} GiB. Each generator ran in its own process, limit "
        f"{figures['timeout_s']:.0f} s.",
        "",
    ]
    rows = []
    for r in figures["rows"]:
        child = r["child"]
        process = [f"{child['wall_s']:.0f}", f"{child['peak_rss_gib']:.2f}"]
        if r["status"] != "ok":
            rows.append([r["generator"], f"{r['status']} after {child['wall_s']:.0f} s", *[""] * 6, *process])
            continue
        rows.append(
            [
                r["generator"],
                f"{r['fit_s']:.2f}",
                f"{r['stored_mb']:.1f}",
                f"{r['latency_ms']:.2f}",
                f"{r['single_qps']:,.0f}",
                f"{r['batch_qps']:,.0f}",
                _cell(r.get("ndcg@100"), ".4f"),
                _cell(r.get("recall@300"), ".4f"),
                *process,
            ]
        )
    header = [*GENERATOR_COLUMNS, "process wall s", "peak RSS GiB"]
    lines += table(header, rows)
    if figures.get("oracle_ndcg@100") is not None:
        lines += ["", f"Oracle NDCG@100 (true expected positives): {figures['oracle_ndcg@100']:.4f}."]
    if figures.get("union_recall@300") is not None:
        lines += [f"Union of the generators' pools: recall@300 {figures['union_recall@300']:.4f}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--generators", default=",".join(GENERATORS))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per generator process")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # child mode: profiles, score or one generator
    args = parser.parse_args()
    generators = tuple(g for g in args.generators.split(",") if g)
    if args.part == "profiles":
        run_all(bench_config(args.preset, GENERATORS), ("profiles",))
    elif args.part == "score":
        score(args.preset, generators)
    elif args.part:
        figures = measure_one(args.preset, args.part)
        write_json(run_dir(args.preset) / "logs" / f"{file_key(args.part)}.json", figures)
    else:
        figures = bench_preset(args.preset, generators, args.timeout)
        out = RESULTS / f"generators_{args.preset}"
        publish(out, figures, markdown(figures))


if __name__ == "__main__":
    main()
