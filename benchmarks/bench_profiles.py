"""Issue 3's figures: what each user-profile type is worth, and what it costs.

    python benchmarks/bench_profiles.py --preset small [--grid] [--loop-vs-vectorized]

* Every profile kind as its own HNSW source (plus popularity and the GMM soft-cluster sources), at 32 and
  64 embedding dimensions: NDCG@100 alone and truth-week recall at pool depths 100/300/1000, the union's
  recall, and the profiles stage's throughput (interactions/s) and peak memory.
* --grid: the GMM source (gmm:positive) for 64/128/144/233 components x spherical/diag/full: NDCG@100 and
  recall@1000 (the mixture's own log-likelihood/BIC table is benchmarks/results/gmm.md).
* --loop-vs-vectorized: the exploratory notebook's per-user loop against the streamed sparse products on
  the tiny preset (the same numbers, and the speed ratio).

Writes benchmarks/results/profiles_<preset>.md and .json; records the machine."""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
from _machine import machine, machine_line

from audience.config import load_config
from audience.data.catalog import load_catalog
from audience.data.layout import DatasetLayout
from audience.data.schema import DEFAULT_POSITIVE_FLAGS
from audience.data.synthetic import generate, preset
from audience.pipeline import run_all
from audience.profiles.fit_data import build_fit_data

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("all", "positive", "negative", "timespent", "recency")
STAGES = ("profiles", "candidates", "blend", "assign", "evaluate")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def ensure_data(name: str) -> Path:
    data = ROOT / "data" / f"synthetic-{name}"
    if not (data / "metadata" / "item_embeddings.npz").is_file():
        generate(data, preset(name), progress=False, overwrite=True)
    return data


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


def loop_vs_vectorized() -> dict:
    """The notebook's way (a Python loop over users, averaging their clips' embeddings) against ours."""
    tmp = ROOT / "data" / "synthetic-tiny-bench"
    if not (tmp / "metadata").is_dir():
        generate(tmp, preset("tiny"), progress=False, overwrite=True)
    layout = DatasetLayout(tmp)
    catalog = load_catalog(layout)
    start = time.perf_counter()
    fit = build_fit_data(layout.train_weeks(), catalog, DEFAULT_POSITIVE_FLAGS, progress=False)
    vectorized_s = time.perf_counter() - start
    start = time.perf_counter()
    frame = pl.concat([pl.read_parquet(p, columns=["user_id", "item_id"]) for p in layout.train_weeks()])
    emb = {int(i): catalog.embedding[k] for k, i in enumerate(catalog.items.ids) if catalog.has_embedding[k]}
    loop = {}
    for (user_id,), rows in frame.group_by(["user_id"]):  # the notebook's per-user loop, on purpose
        vectors = [emb[i] for i in rows["item_id"].to_list() if i in emb]
        if vectors:
            mean = np.mean(vectors, axis=0)
            loop[int(user_id)] = mean / np.linalg.norm(mean)
    loop_s = time.perf_counter() - start
    idx = catalog.users.lookup(np.array(list(loop), dtype=np.uint32))
    max_diff = float(np.abs(fit.profiles["all"][idx] - np.stack(list(loop.values()))).max())
    return {
        "rows": frame.height,
        "users": len(loop),
        "loop_s": loop_s,
        "vectorized_s": vectorized_s,
        "vectorized_covers": "all 5 profile kinds + counts + sparse histories",
        "speed_ratio": loop_s / vectorized_s,
        "max_abs_diff": max_diff,
    }


def write_report(name: str, figures: dict) -> None:
    lines = [f"# Profiles on `{name}`", "", f"Machine: {machine_line()}", ""]
    for dim, block in figures.get("profiles", {}).items():
        lines += [
            f"## {dim}: profiles stage {block['profiles_s']:.1f} s for {block['fit_interactions']:,} "
            f"interactions ({block['interactions_per_s'] / 1e6:.2f} M/s, every kind + counts + histories)",
            "",
            "| source | NDCG@100 | recall@100 | recall@300 | recall@1000 |",
            "|---|---|---|---|---|",
        ]
        for method, row in block["rows"].items():
            cells = [row.get(c) for c in ("ndcg_capped", "recall@100", "recall@300", "recall@1000")]
            lines.append(f"| {method} | " + " | ".join("" if v is None else f"{v:.4f}" for v in cells) + " |")
        lines.append("")
    if "gmm_grid" in figures:
        lines += [
            "## GMM source (gmm:positive) by mixture",
            "",
            "| components | covariance | NDCG@100 | recall@1000 | wall s (fit + profiles + search) |",
            "|---|---|---|---|---|",
        ]
        for g in figures["gmm_grid"]:
            lines.append(
                f"| {g['components']} | {g['covariance']} | {g['ndcg']:.4f} | {g['recall@1000']:.4f} | "
                f"{g['wall_s']:.0f} |"
            )
        lines.append("")
    if "loop" in figures:
        lp = figures["loop"]
        lines += [
            "## Notebook loop vs vectorized (tiny)",
            "",
            f"{lp['rows']:,} interactions, {lp['users']:,} users: per-user loop {lp['loop_s']:.2f} s "
            f"(one profile kind) vs streamed sparse products {lp['vectorized_s']:.2f} s "
            f"({lp['vectorized_covers']}): {lp['speed_ratio']:.0f}x; max |difference| "
            f"{lp['max_abs_diff']:.1e}.",
            "",
        ]
    out = ROOT / "benchmarks" / "results" / f"profiles_{name}.md"
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(
        json.dumps({"machine": machine(), **figures}, indent=2, default=float)
    )
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small")
    parser.add_argument("--grid", action="store_true")
    parser.add_argument("--loop-vs-vectorized", action="store_true")
    parser.add_argument("--dims", default="32,64", help="embedding widths to compare, e.g. 64")
    args = parser.parse_args()
    data = ensure_data(args.preset)
    out = ROOT / "artifacts" / f"bench-profiles-{args.preset}"
    dims = tuple(int(d) for d in args.dims.split(","))
    figures: dict = {"profiles": profile_table(data, out, dims)}
    if args.grid:
        figures["gmm_grid"] = gmm_grid(data, out)
    if args.loop_vs_vectorized:
        figures["loop"] = loop_vs_vectorized()
    figures["peak_rss_gib"] = peak_rss_gib()
    write_report(args.preset, figures)


if __name__ == "__main__":
    main()
