"""ANN against exact search on the pipeline's own vectors: users' positive profiles, queried with the
target clips' embeddings (cosine, k=100).

    python benchmarks/bench_ann.py --preset small [--threads 1]       # on bench_generators.py's run folder
    python benchmarks/bench_ann.py artifacts/bench-medium-validate    # on any finished run folder

hnswlib and voyager (Spotify's HNSW library, a benchmark peer only) are built with the same M and
ef_construction, then queried at several ef: recall@100 against exact search and queries per second
(batched, plus one query at a time for a sample). Writes benchmarks/results/ann_<preset or run>.md, .json
and a recall-vs-throughput plot .png."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import hnswlib
import matplotlib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, machine_line
from _runs import open_run
from _suite import RESULTS, write_atomic, write_json

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from audience.arrays import TopK, unit_rows
from audience.candidates.ann import exact_search, recall_against_exact
from audience.markdown import table

ROOT = Path(__file__).resolve().parents[1]
EFS = (100, 128, 192, 256, 384, 512)  # hnswlib needs ef >= k
K = 100


SINGLE_QUERIES = 200


def single_qps(query_one, q: np.ndarray) -> float:
    """Queries per second one at a time (the first SINGLE_QUERIES clips)."""
    rows = q[:SINGLE_QUERIES]
    start = time.perf_counter()
    for row in rows:
        query_one(row[None, :])
    return rows.shape[0] / (time.perf_counter() - start)


def bench(run_dir: Path, threads: int = 1, m: int = 16, ef_construction: int = 100) -> dict:
    """Exact, hnswlib and voyager on the run's positive profiles; rows of (index, ef, recall, qps)."""
    run = open_run(run_dir)
    fit = run.fit_data()
    ids = np.flatnonzero(fit.profile_weight["positive"] > 0).astype(np.int32)
    vectors = np.ascontiguousarray(fit.profiles["positive"][ids])
    queries = run.queries()
    q = unit_rows(queries.embedding[queries.has_embedding, : vectors.shape[1]])
    k = min(K, len(ids))

    start = time.perf_counter()
    exact = exact_search(vectors, ids, q, k)
    exact_qps = q.shape[0] / (time.perf_counter() - start)
    exact_single = single_qps(lambda row: exact_search(vectors, ids, row, k), q)
    rows = [
        {
            "index": "exact",
            "ef": None,
            "recall": 1.0,
            "qps": exact_qps,
            "single_qps": exact_single,
            "build_s": 0.0,
        }
    ]

    start = time.perf_counter()
    index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    index.init_index(max_elements=len(ids), ef_construction=ef_construction, M=m, random_seed=0)
    index.add_items(vectors, ids, num_threads=threads)
    hnsw_build = time.perf_counter() - start
    for ef in EFS:
        index.set_ef(max(ef, k))
        start = time.perf_counter()
        labels, dist = index.knn_query(q, k=k, num_threads=threads)
        qps = q.shape[0] / (time.perf_counter() - start)
        recall = recall_against_exact(TopK(labels.astype(np.int32), (1 - dist).astype(np.float32)), exact)
        one = single_qps(lambda row: index.knn_query(row, k=k, num_threads=1), q)
        rows.append(
            {"index": "hnswlib", "ef": max(ef, k), "recall": recall, "qps": qps, "single_qps": one,
             "build_s": hnsw_build}
        )  # fmt: skip
    try:
        import voyager
    except ImportError:
        voyager = None
    if voyager is not None:
        start = time.perf_counter()
        vindex = voyager.Index(
            voyager.Space.Cosine, num_dimensions=vectors.shape[1], M=m, ef_construction=ef_construction,
            random_seed=0,
        )  # fmt: skip
        vindex.add_items(vectors, ids.astype(np.int64), num_threads=threads)
        voyager_build = time.perf_counter() - start
        for ef in EFS:
            start = time.perf_counter()
            labels, dist = vindex.query(q, k=k, num_threads=threads, query_ef=max(ef, k))
            qps = q.shape[0] / (time.perf_counter() - start)
            recall = recall_against_exact(TopK(labels.astype(np.int32), (1 - dist).astype(np.float32)), exact)
            query_ef = max(ef, k)
            one = single_qps(lambda row, e=query_ef: vindex.query(row, k=k, num_threads=1, query_ef=e), q)
            rows.append(
                {"index": "voyager", "ef": max(ef, k), "recall": recall, "qps": qps, "single_qps": one,
                 "build_s": voyager_build}
            )  # fmt: skip
    return {
        "machine": machine(),
        "run": Path(run_dir).name,
        "users": len(ids),
        "queries": int(q.shape[0]),
        "dim": int(vectors.shape[1]),
        "k": k,
        "threads": threads,
        "m": m,
        "ef_construction": ef_construction,
        "rows": rows,
    }


def markdown(figures: dict, title: str) -> str:
    lines = [
        f"# ANN vs exact on `{title}`: {figures['users']:,} user profiles x {figures['queries']:,} clip "
        f"queries, dim {figures['dim']}, k={figures['k']}, {figures['threads']} thread(s), M={figures['m']}, "
        f"ef_construction={figures['ef_construction']}",
        "",
        f"Machine: {machine_line()}",
        "",
    ]
    rows = [
        [
            r["index"],
            "" if r["ef"] is None else str(r["ef"]),
            f"{r['recall']:.4f}",
            f"{r['qps']:,.0f}",
            f"{r['single_qps']:,.0f}",
            f"{r['build_s']:.1f}",
        ]
        for r in figures["rows"]
    ]
    header = ["index", "ef", "recall@100 vs exact", "queries/s (batch)", "queries/s (1 at a time)", "build s"]
    return "\n".join([*lines, *table(header, rows, "lllrrr")]) + "\n"


def plot(figures: dict, title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for label in ("hnswlib", "voyager"):
        points = [r for r in figures["rows"] if r["index"] == label]
        if points:
            ax.plot([p["recall"] for p in points], [p["qps"] for p in points], marker="o", label=label)
    exact_qps = next(r["qps"] for r in figures["rows"] if r["index"] == "exact")
    ax.axhline(exact_qps, color="gray", linestyle="--", label="exact")
    ax.set_xlabel("recall@100 vs exact")
    ax.set_ylabel("queries / s")
    ax.set_yscale("log")
    ax.set_title(f"ANN on {title} ({figures['users']:,} users)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path, nargs="?")
    parser.add_argument("--preset", help="use bench_generators.py's run folder of this preset")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=100)
    args = parser.parse_args()
    if (args.run_dir is None) == (args.preset is None):
        parser.error("give a run folder or --preset")
    if args.preset:
        run_dir, title = ROOT / "artifacts" / f"bench-generators-{args.preset}", args.preset
    else:
        run_dir, title = args.run_dir, args.run_dir.name
    figures = bench(run_dir, args.threads, args.m, args.ef_construction)
    figures["preset"] = args.preset
    out = RESULTS / f"ann_{title}"
    write_json(out.with_suffix(".json"), figures)
    text = markdown(figures, title)
    write_atomic(out.with_suffix(".md"), text)
    plot(figures, title, out.with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    main()
