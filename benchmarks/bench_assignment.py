"""NDCG@100 after the cap for each assignment strategy, on an existing validate run's candidates.

    python benchmarks/bench_assignment.py artifacts/synthetic-small-validate

Re-assigns every method's candidates (and the oracle's) with each strategy in `audience.config.STRATEGIES`
and scores them against the truth week. Writes benchmarks/results/assignment_<run>.md."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import polars as pl
from _machine import machine_line
from _runs import open_run

from audience.assign import assign_with_cap
from audience.candidates.popular import fallback_order
from audience.config import STRATEGIES
from audience.evaluation.report import lists_frame
from audience.io import read_json
from audience.markdown import table
from audience.metrics import ndcg_per_clip, truth_positives
from audience.stages.assign import oracle_frame
from audience.stages.run import file_key

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    run_dir = Path(sys.argv[1])
    run = open_run(run_dir)
    cfg = run.cfg
    item_ids = run.targets()["item_id"].to_numpy()
    n = item_ids.shape[0]
    fallback = fallback_order(run.fit_data(), run.catalog)
    truth = truth_positives(run.split().truth_week, cfg.positive_flags, item_ids)
    methods = [m for m in read_json(run_dir / "lists" / "assignment.json") if m != "oracle"]
    frames = {m: pl.read_parquet(run.path("candidates", f"{file_key(m)}.parquet")) for m in methods}
    user_ids = dict.fromkeys(frames, run.catalog.users.ids)
    oracle = oracle_frame(run, item_ids)
    if oracle is not None:
        frames["oracle"], user_ids["oracle"] = oracle
    lines = [
        f"# Assignment strategies on `{run_dir.name}`",
        "",
        f"Machine: {machine_line()}",
        "",
    ]
    rows = []
    for method, frame in frames.items():
        clip, user, score = (frame[c].to_numpy() for c in ("clip", "user", "score"))
        cells = []
        for strategy in STRATEGIES:
            start = time.perf_counter()
            users = assign_with_cap(
                clip,
                user,
                score,
                n,
                len(user_ids[method]),
                cfg.list_size,
                cfg.user_cap,
                fallback_order=fallback,
                strategy=strategy,
            ).users
            seconds = time.perf_counter() - start
            per_clip = ndcg_per_clip(lists_frame(item_ids, users, user_ids[method]), truth, cfg.list_size)
            cells += [f"{float(per_clip['ndcg'].mean()):.4f}", f"{seconds:.2f}"]
        rows.append([method, *cells])
    header = ["method", *(f"{s} {what}" for s in STRATEGIES for what in ("NDCG@100", "s"))]
    lines += table(header, rows, "l" * len(header))
    out = ROOT / "benchmarks" / "results" / f"assignment_{run_dir.name}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
