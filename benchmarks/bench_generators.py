"""Every clip -> users generator in one table: fit time, stored size, single-clip latency, batch
throughput, NDCG@100 (after the cap) and truth-week recall@300, on one preset in validate mode.

    python benchmarks/bench_generators.py --preset small

Stored size is the pickled size of the fitted generator (hnswlib indexes pickle their graph). Latency is
the median of 20 one-clip calls. NDCG and recall come from the pipeline's own assign/evaluate stages with
every generator as a source (reranker off). Writes benchmarks/results/generators_<preset>.md."""

from __future__ import annotations

import argparse
import json
import pickle
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _machine import machine_line

from audience.candidates import make_source
from audience.config import load_config
from audience.pipeline import Run, run_all

ROOT = Path(__file__).resolve().parents[1]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small")
    args = parser.parse_args()
    data = ROOT / "data" / f"synthetic-{args.preset}"
    run_dir = ROOT / "artifacts" / f"bench-generators-{args.preset}"
    cfg = load_config(data_dir=data, run_dir=run_dir, quiet=True)
    cfg = replace(cfg, sources=GENERATORS, baselines=(), rerank=False, final_method="popular")
    run_all(cfg, ("profiles", "candidates", "blend", "assign", "evaluate"))
    results = {r["method"]: r for r in json.loads((run_dir / "results.json").read_text())["methods"]}
    run = Run(cfg)
    fit, queries = run.fit_data(), run.queries()
    rows = []
    for name in GENERATORS:
        source = make_source(name, cfg)
        start = time.perf_counter()
        source.fit(fit, run.catalog)
        fit_s = time.perf_counter() - start
        size_mb = len(pickle.dumps(source, protocol=pickle.HIGHEST_PROTOCOL)) / 2**20
        singles = []
        for row in np.linspace(0, len(queries) - 1, 20).astype(int):
            one = queries.subset(slice(row, row + 1))
            start = time.perf_counter()
            source.recommend(one, cfg.candidate_depth)
            singles.append(time.perf_counter() - start)
        start = time.perf_counter()
        source.recommend(queries, cfg.candidate_depth)
        batch_qps = len(queries) / (time.perf_counter() - start)
        r = results[name]
        rows.append(
            (
                name,
                fit_s,
                size_mb,
                1000 * float(np.median(singles)),
                batch_qps,
                r["ndcg_capped"],
                r.get("recall@300", float("nan")),
            )
        )
    lines = [
        f"# Clip -> users generators on `{args.preset}` (validate mode, {len(queries):,} new clips, "
        f"{int((fit.user_views > 0).sum()):,} users with history, depth {cfg.candidate_depth})",
        "",
        f"Machine: {machine_line()}",
        "",
        "| generator | fit s | stored MB | latency ms (1 clip) | clips/s (batch) | NDCG@100 | recall@300 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, fit_s, size, lat, qps, ndcg, rec in rows:
        lines.append(
            f"| {name} | {fit_s:.2f} | {size:.1f} | {lat:.2f} | {qps:,.0f} | {ndcg:.4f} | {rec:.4f} |"
        )
    out = ROOT / "benchmarks" / "results" / f"generators_{args.preset}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
