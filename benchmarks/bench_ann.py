"""ANN against exact search on the pipeline's own vectors: users' positive profiles, queried with the
target clips' embeddings (cosine, k=100).

    python benchmarks/bench_ann.py artifacts/bench-medium-validate [--threads 1]

hnswlib and voyager (Spotify's HNSW library, a benchmark peer only) are built with the same M and
ef_construction, then queried at several ef: recall@100 against exact search and queries per second
(batched). Writes benchmarks/results/ann_<run>.md and a recall-vs-throughput plot ann_<run>.png."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import hnswlib
import matplotlib
import numpy as np
from _machine import machine_line
from _runs import open_run

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from audience.candidates.ann import exact_search, recall_against_exact
from audience.candidates.base import TopK
from audience.candidates.embedding import unit_rows

ROOT = Path(__file__).resolve().parents[1]
EFS = (100, 128, 192, 256, 384, 512)  # hnswlib needs ef >= k
K = 100


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=100)
    args = parser.parse_args()
    run = open_run(args.run_dir)
    fit = run.fit_data()
    ids = np.flatnonzero(fit.profile_weight["positive"] > 0).astype(np.int32)
    vectors = np.ascontiguousarray(fit.profiles["positive"][ids])
    queries = run.queries()
    q = unit_rows(queries.embedding[queries.has_embedding, : vectors.shape[1]])

    start = time.perf_counter()
    exact = exact_search(vectors, ids, q, K)
    exact_qps = q.shape[0] / (time.perf_counter() - start)
    rows = [("exact (numpy matmul)", "", 1.0, exact_qps, 0.0)]

    start = time.perf_counter()
    index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    index.init_index(max_elements=len(ids), ef_construction=args.ef_construction, M=args.m, random_seed=0)
    index.add_items(vectors, ids, num_threads=args.threads)
    hnsw_build = time.perf_counter() - start
    curves = {"hnswlib": [], "voyager": []}
    for ef in EFS:
        index.set_ef(max(ef, K))
        start = time.perf_counter()
        labels, dist = index.knn_query(q, k=K, num_threads=args.threads)
        qps = q.shape[0] / (time.perf_counter() - start)
        recall = recall_against_exact(TopK(labels.astype(np.int32), (1 - dist).astype(np.float32)), exact)
        rows.append(("hnswlib", max(ef, K), recall, qps, hnsw_build))
        curves["hnswlib"].append((recall, qps))
    try:
        import voyager
    except ImportError:
        voyager = None
    if voyager is not None:
        start = time.perf_counter()
        vindex = voyager.Index(
            voyager.Space.Cosine,
            num_dimensions=vectors.shape[1],
            M=args.m,
            ef_construction=args.ef_construction,
            random_seed=0,
        )
        vindex.add_items(vectors, ids.astype(np.int64), num_threads=args.threads)
        voyager_build = time.perf_counter() - start
        for ef in EFS:
            start = time.perf_counter()
            labels, dist = vindex.query(q, k=K, num_threads=args.threads, query_ef=max(ef, K))
            qps = q.shape[0] / (time.perf_counter() - start)
            recall = recall_against_exact(TopK(labels.astype(np.int32), (1 - dist).astype(np.float32)), exact)
            rows.append(("voyager", max(ef, K), recall, qps, voyager_build))
            curves["voyager"].append((recall, qps))

    name = args.run_dir.name
    lines = [
        f"# ANN vs exact on `{name}`: {len(ids):,} user profiles x {q.shape[0]:,} clip queries, "
        f"dim {vectors.shape[1]}, k={K}, {args.threads} thread(s), M={args.m}, ef_construction="
        f"{args.ef_construction}",
        "",
        f"Machine: {machine_line()}",
        "",
        "| index | ef | recall@100 vs exact | queries/s | build s |",
        "|---|---|---|---|---|",
    ]
    for index_name, ef, recall, qps, build in rows:
        lines.append(f"| {index_name} | {ef} | {recall:.4f} | {qps:,.0f} | {build:.1f} |")
    out = ROOT / "benchmarks" / "results" / f"ann_{name}"
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in curves.items():
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.axhline(exact_qps, color="gray", linestyle="--", label="exact")
    ax.set_xlabel("recall@100 vs exact")
    ax.set_ylabel("queries / s")
    ax.set_yscale("log")
    ax.set_title(f"ANN on {name} ({len(ids):,} users)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
