"""What each source brings to the reranker's pool, from a run folder whose candidates stage has finished:

* recall of the truth week's positive (clip, user) pairs by each source's top `depth` users per clip, for
  every depth asked (up to the run's candidate_depth), overall and by the users' activity quintile in the
  fit weeks (the cap leaves the lighter users to fill the lists);
* the same for the pool (the union of the sources' top pool_depth) and for the pool without each source;
* with --ceilings, the pool's ceiling (the truth's positives within the pool, drafted by slots under the
  cap, as the assign stage does) for the same pools: one slots assignment per pool (minutes at vk size).

Writes benchmarks/results/pool_sources_<run folder>.{json,md}.
Usage: python benchmarks/bench_pool_sources.py artifacts/synthetic-vk-submit [--depths 150 300] [--ceilings]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import machine, machine_line  # noqa: E402

from audience.assign import assign_with_cap  # noqa: E402
from audience.candidates.popular import fallback_order  # noqa: E402
from audience.config import load_config  # noqa: E402
from audience.evaluation.report import lists_frame, pool_ceiling_frame  # noqa: E402
from audience.io import write_json  # noqa: E402
from audience.markdown import table  # noqa: E402
from audience.metrics import mean_ndcg, truth_positives  # noqa: E402
from audience.rank.features import best_rank, candidate_pool  # noqa: E402
from audience.stages.assign import oracle_frame  # noqa: E402
from audience.stages.run import Run  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
QUINTILES = ("lightest", "light", "middle", "heavy", "heaviest")


def truth_pairs(run: Run) -> pl.DataFrame:
    """(clip, user, quintile) of the truth week's positive pairs among the run's users; `quintile` is the
    user's activity quintile (fit-week views) among the users with a view."""
    item_ids = run.targets()["item_id"].to_numpy()
    truth = truth_positives(run.split().truth_week, run.cfg.positive_flags, item_ids)
    clip_of = pl.DataFrame({"item_id": pl.Series(item_ids, dtype=pl.UInt32)}).with_row_index("clip")
    truth = truth.join(clip_of, on="item_id")
    user = run.catalog.users.lookup(truth["user_id"].to_numpy())
    views = run.fit_data().user_views
    cuts = np.quantile(views[views > 0], [0.2, 0.4, 0.6, 0.8])
    quintile = np.searchsorted(cuts, views[np.maximum(user, 0)])
    frame = pl.DataFrame(
        {"clip": truth["clip"].cast(pl.Int64), "user": user.astype(np.int64), "quintile": quintile}
    )
    return frame.filter(pl.col("user") >= 0).unique(["clip", "user"])


def recall(truth: pl.DataFrame, pairs: pl.DataFrame) -> dict:
    """Share of the truth's pairs in `pairs` (clip, user), overall and per activity quintile."""
    hits = truth.join(
        pairs.select(pl.col("clip").cast(pl.Int64), pl.col("user").cast(pl.Int64), hit=pl.lit(1.0)),
        on=["clip", "user"],
        how="left",
    ).with_columns(pl.col("hit").fill_null(0.0))
    per = hits.group_by("quintile").agg(pl.col("hit").mean()).sort("quintile")
    return {"recall": float(hits["hit"].mean()), **dict(zip(QUINTILES, per["hit"].to_list(), strict=False))}


def ceiling(run: Run, pool: pl.DataFrame, oracle, truth_frame, fallback, cap: int) -> float:
    """NDCG@100 of the oracle's order within `pool` (slots assignment, users capped at `cap`)."""
    cfg = run.cfg
    frame = pool_ceiling_frame(pool.with_columns(pl.Series("rank", best_rank(pool))), oracle[0])
    n_clips = run.targets().height
    columns = (frame[c].to_numpy() for c in ("clip", "user", "score"))
    result = assign_with_cap(*columns, n_clips, len(oracle[1]), cfg.list_size, cap, fallback, "slots")
    lists = lists_frame(run.targets()["item_id"].to_numpy(), result.users, oracle[1])
    return mean_ndcg(lists, truth_frame, cfg.list_size)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--depths", type=int, nargs="*", default=[100, 150, 300])
    parser.add_argument("--ceilings", action="store_true", help="also the pools' ceilings (slow at vk size)")
    args = parser.parse_args()
    saved = json.loads((args.run_dir / "config.json").read_text())
    cfg = load_config(
        data_dir=saved["data_dir"], mode=saved["mode"], run_dir=args.run_dir, sources=tuple(saved["sources"])
    )
    run = Run(cfg)
    start = time.perf_counter()
    truth = truth_pairs(run)
    frames = {name: run.candidates(name) for name in cfg.sources}
    sources = []
    for name, frame in frames.items():
        for depth in args.depths:
            sources.append(
                {"source": name, "depth": depth, **recall(truth, frame.filter(pl.col("rank") <= depth))}
            )
    depth = cfg.reranker.pool_depth
    pools = {"pool": tuple(frames)} | {
        f"pool without {n}": tuple(s for s in frames if s != n) for n in frames
    }
    extra = {}
    if args.ceilings:
        item_ids = run.targets()["item_id"].to_numpy()
        oracle = oracle_frame(run, item_ids)
        if oracle is None:
            raise SystemExit(f"{args.run_dir}: no oracle (synthetic data only)")
        truth_frame = truth_positives(run.split().truth_week, cfg.positive_flags, item_ids)
        extra = {
            "oracle": oracle,
            "truth": truth_frame,
            "fallback": fallback_order(run.fit_data(), run.catalog),
        }
    rows = []
    for label, names in pools.items():
        pool = candidate_pool({n: frames[n] for n in names}, depth)
        row = {
            "pool": label,
            "pairs_per_clip": pool.height / max(run.targets().height, 1),
            **recall(truth, pool),
        }
        if extra:
            for key, cap in (("ceiling_uncapped", run.targets().height), ("ceiling_capped", cfg.user_cap)):
                row[key] = ceiling(run, pool, extra["oracle"], extra["truth"], extra["fallback"], cap)
        rows.append(row)
        print(f"{label}: {row}", flush=True)
    name = f"pool_sources_{args.run_dir.name}"
    figures = {
        "machine": machine(),
        "run": str(args.run_dir),
        "truth_pairs": truth.height,
        "truth_pairs_by_quintile": truth.group_by("quintile").len().sort("quintile")["len"].to_list(),
        "pool_depth": depth,
        "sources": sources,
        "pools": rows,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    write_json(figures, RESULTS / f"{name}.json")
    fmt = [*QUINTILES]
    lines = [
        f"# What each source brings to the pool ({args.run_dir.name})",
        "",
        f"{machine_line()}. Recall of the truth week's {truth.height:,} positive (clip, user) pairs,",
        "overall and by the users' activity quintile in the fit weeks (lightest first).",
        "",
        *table(
            ["source", "depth", "recall", *fmt],
            [
                [s["source"], str(s["depth"]), *(f"{s.get(k, float('nan')):.4f}" for k in ("recall", *fmt))]
                for s in sources
            ],
        ),
        "",
        f"Pools (each source's top {depth}):",
        "",
        *table(
            [
                "pool",
                "pairs per clip",
                "recall",
                *fmt,
                *(["ceiling uncapped", "ceiling capped"] if extra else []),
            ],
            [
                [r["pool"], f"{r['pairs_per_clip']:.0f}"]
                + [f"{r.get(k, float('nan')):.4f}" for k in ("recall", *fmt)]
                + ([f"{r['ceiling_uncapped']:.4f}", f"{r['ceiling_capped']:.4f}"] if extra else [])
                for r in rows
            ],
        ),
        "",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
