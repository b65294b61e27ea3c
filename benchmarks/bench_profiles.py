"""Issue 3's figures: what each user-profile type is worth, and what it costs.

    python benchmarks/bench_profiles.py --preset small [--grid] [--loop-vs-vectorized] [--no-table]

* Every profile kind as its own HNSW source (plus popularity and the GMM soft-cluster sources), at 32 and
  64 embedding dimensions: NDCG@100 alone and truth-week recall at pool depths 100/300/1000, the union's
  recall, and the profiles stage's throughput (interactions/s) and peak memory.
* --grid: the GMM source (gmm:positive) for 64/128/144/233 components x spherical/diag/full: NDCG@100 and
  recall@1000 (the mixture's own log-likelihood/BIC table is benchmarks/results/gmm.md).
* --loop-vs-vectorized: the exploratory notebook's per-user loop against the streamed sparse products on
  the tiny preset (the same numbers, and the speed ratio); with --no-table, only that
  (`--preset tiny --no-table --loop-vs-vectorized` is what benchmarks/report.py runs).

Writes benchmarks/results/profiles_<preset>.md and .json; records the machine."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, machine_line
from _suite import ensure_data as ensure_preset
from _suite import write_atomic, write_json

from audience.config import load_config
from audience.data.catalog import load_catalog
from audience.data.layout import DatasetLayout
from audience.data.schema import DEFAULT_POSITIVE_FLAGS
from audience.markdown import table
from audience.pipeline import run_all
from audience.profiles.reference_pass import build_fit_data

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("all", "positive", "negative", "timespent", "recency")
STAGES = ("profiles", "candidates", "blend", "assign", "evaluate")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_sources(data: Path, run_dir: Path, sources: tuple[str, ...], **overrides) -> tuple[dict, dict]:
    cfg = load_config(data_dir=data, run_dir=run_dir, quiet=True, candidate_depth=1000)
    cfg = replace(cfg, sources=sources, baselines=(), rerank=False, final_method=sources[0], **overrides)
    run_all(cfg, STAGES)
    results = json.loads((run_dir / "results.json").read_text())
    timings = json.loads((run_dir / "timings.json").read_text())
    split = json.loads((run_dir / "split.json").read_text())
    return {row["method"]: row for row in results["methods"]}, {**timings, **split}


def profile_table(data: Path, out: Path, dims: tuple[int, ...] = (32, 64)) -> dict:
    sources = ("popular", *(f"hnsw:{k}" for k in KINDS), "gmm:all", "gmm:positive")
    figures = {}
    for dim in dims:
        rows, info = run_sources(data, out / f"dim{dim}", sources, embedding_dim=dim)
        figures[f"dim{dim}"] = {
            "rows": rows,
            "profiles_s": info["profiles"],
            "fit_interactions": info["fit_interactions"],
            "interactions_per_s": info["fit_interactions"] / info["profiles"],
        }
    return figures


def gmm_grid(data: Path, out: Path) -> list[dict]:
    grid = []
    for k in (64, 128, 144, 233):
        for cov in ("spherical", "diag", "full"):
            cfg = load_config().gmm
            start = time.perf_counter()
            rows, _ = run_sources(
                data,
                out / f"gmm{k}{cov}",
                ("gmm:positive",),
                gmm=replace(cfg, n_components=k, covariance_type=cov),
            )
            row = rows["gmm:positive"]
            grid.append(
                {
                    "components": k,
                    "covariance": cov,
                    "ndcg": row["ndcg_capped"],
                    "recall@1000": row.get("recall@1000"),
                    "wall_s": time.perf_counter() - start,
                }
            )
    return grid


def notebook_loop(layout: DatasetLayout, catalog) -> tuple[int, dict]:
    """The notebook's way: a Python loop over users, averaging their clips' embeddings (one kind)."""
    frame = pl.concat([pl.read_parquet(p, columns=["user_id", "item_id"]) for p in layout.train_weeks()])
    emb = {int(i): catalog.embedding[k] for k, i in enumerate(catalog.items.ids) if catalog.has_embedding[k]}
    loop = {}
    for (user_id,), rows in frame.group_by(["user_id"]):  # the notebook's per-user loop, on purpose
        vectors = [emb[i] for i in rows["item_id"].to_list() if i in emb]
        if vectors:
            mean = np.mean(vectors, axis=0)
            loop[int(user_id)] = mean / np.linalg.norm(mean)
    return frame.height, loop


def loop_vs_vectorized(repeat: int = 3) -> dict:
    """The notebook's per-user loop against the streamed sparse products on tiny: best of `repeat` runs
    each (the first run of each, which includes loading numba's cached kernels, is reported too)."""
    layout = DatasetLayout(ensure_preset("tiny")[0])
    catalog = load_catalog(layout)
    vectorized, looped = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        fit = build_fit_data(layout.train_weeks(), catalog, DEFAULT_POSITIVE_FLAGS, progress=False)
        vectorized.append(time.perf_counter() - start)
        start = time.perf_counter()
        n_rows, loop = notebook_loop(layout, catalog)
        looped.append(time.perf_counter() - start)
    idx = catalog.users.lookup(np.array(list(loop), dtype=np.uint32))
    max_diff = float(np.abs(fit.profiles["all"][idx] - np.stack(list(loop.values()))).max())
    return {
        "rows": n_rows,
        "users": len(loop),
        "repeat": repeat,
        "loop_s": min(looped),
        "vectorized_s": min(vectorized),
        "loop_first_s": looped[0],
        "vectorized_first_s": vectorized[0],
        "vectorized_covers": "all 5 profile kinds + counts + sparse histories",
        "speed_ratio": min(looped) / min(vectorized),
        "max_abs_diff": max_diff,
    }


PROFILE_COLUMNS = ("ndcg_capped", "recall@100", "recall@300", "recall@1000")


def write_report(name: str, figures: dict) -> None:
    lines = [f"# Profiles on `{name}`", "", f"Machine: {machine_line()}", ""]
    for dim, block in figures.get("profiles", {}).items():
        lines += [
            f"## {dim}: profiles stage {block['profiles_s']:.1f} s for {block['fit_interactions']:,} "
            f"interactions ({block['interactions_per_s'] / 1e6:.2f} M/s, every kind + counts + histories)",
            "",
        ]
        rows = [
            [method, *("" if row.get(c) is None else f"{row[c]:.4f}" for c in PROFILE_COLUMNS)]
            for method, row in block["rows"].items()
        ]
        lines += [
            *table(["source", "NDCG@100", "recall@100", "recall@300", "recall@1000"], rows, "lllll"),
            "",
        ]
    if "gmm_grid" in figures:
        lines += [
            "## GMM source (gmm:positive) by mixture",
            "",
        ]
        rows = [
            [
                str(g["components"]),
                g["covariance"],
                f"{g['ndcg']:.4f}",
                f"{g['recall@1000']:.4f}",
                f"{g['wall_s']:.0f}",
            ]
            for g in figures["gmm_grid"]
        ]
        header = ["components", "covariance", "NDCG@100", "recall@1000", "wall s (fit + profiles + search)"]
        lines += [*table(header, rows, "lllll"), ""]
    if "loop" in figures:
        lp = figures["loop"]
        lines += [
            "## Notebook loop vs vectorized (tiny)",
            "",
            f"{lp['rows']:,} interactions, {lp['users']:,} users, best of {lp.get('repeat', 1)}: per-user "
            f"loop {lp['loop_s']:.3f} s (one profile kind) vs streamed sparse products "
            f"{lp['vectorized_s']:.3f} s ({lp['vectorized_covers']}): loop / vectorized = "
            f"{lp['speed_ratio']:.2f}; max |difference| {lp['max_abs_diff']:.1e}.",
            "",
        ]
    out = ROOT / "benchmarks" / "results" / f"profiles_{name}.md"
    write_atomic(out, "\n".join(lines))
    write_json(out.with_suffix(".json"), {"machine": machine(), **figures})
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small")
    parser.add_argument("--grid", action="store_true")
    parser.add_argument("--loop-vs-vectorized", action="store_true")
    parser.add_argument("--dims", default="32,64", help="embedding widths to compare, e.g. 64")
    parser.add_argument("--no-table", action="store_true", help="skip the per-profile-kind table")
    args = parser.parse_args()
    data = ensure_preset(args.preset)[0]
    out = ROOT / "artifacts" / f"bench-profiles-{args.preset}"
    dims = tuple(int(d) for d in args.dims.split(","))
    figures: dict = {} if args.no_table else {"profiles": profile_table(data, out, dims)}
    if args.grid:
        figures["gmm_grid"] = gmm_grid(data, out)
    if args.loop_vs_vectorized:
        figures["loop"] = loop_vs_vectorized()
    figures["peak_rss_gib"] = peak_rss_gib()
    write_report(args.preset, figures)


if __name__ == "__main__":
    main()
