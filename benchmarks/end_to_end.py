"""End-to-end figures for one synthetic preset: generation and every pipeline stage, wall time and peak
memory (max RSS of the child process), the results table and HNSW recall/throughput.

    python benchmarks/end_to_end.py --preset medium [--mode validate] [--skip-generate]

Writes benchmarks/results/end_to_end_<preset>.json and prints a markdown summary."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _machine import machine, machine_line

ROOT = Path(__file__).resolve().parents[1]


def timed_child(cmd: list[str]) -> tuple[float, float]:
    """Run a child process; return (wall seconds, its peak RSS in GiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    _, status, usage = _wait4(proc.pid)
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}")
    return time.perf_counter() - start, usage.ru_maxrss / 2**20


def _wait4(pid: int):
    import os

    _, status, usage = os.wait4(pid, 0)
    return pid, os.waitstatus_to_exitcode(status), usage


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--mode", default="validate")
    parser.add_argument("--skip-generate", action="store_true")
    args = parser.parse_args()
    data = ROOT / "data" / f"synthetic-{args.preset}"
    run_dir = ROOT / "artifacts" / f"bench-{args.preset}-{args.mode}"
    figures: dict = {"machine": machine(), "preset": args.preset, "mode": args.mode, "stages": {}}
    py = sys.executable
    if not args.skip_generate:
        wall, rss = timed_child(
            [
                py,
                "-m",
                "audience",
                "synth",
                "--preset",
                args.preset,
                "--data-dir",
                str(data),
                "--overwrite",
                "--quiet",
            ]
        )
        figures["stages"]["generate"] = {"wall_s": round(wall, 1), "peak_rss_gib": round(rss, 2)}
    for stage in ("profiles", "candidates", "blend", "rank", "assign", "evaluate"):
        wall, rss = timed_child(
            [
                py,
                "-m",
                "audience",
                "stage",
                stage,
                "--data-dir",
                str(data),
                "--mode",
                args.mode,
                "--run-dir",
                str(run_dir),
                "--quiet",
            ]
        )
        figures["stages"][stage] = {"wall_s": round(wall, 1), "peak_rss_gib": round(rss, 2)}
    pipeline = [v for k, v in figures["stages"].items() if k != "generate"]
    figures["pipeline_wall_s"] = round(sum(s["wall_s"] for s in pipeline), 1)
    figures["pipeline_peak_rss_gib"] = max(s["peak_rss_gib"] for s in pipeline)
    figures["split"] = json.loads((run_dir / "split.json").read_text())
    figures["sources"] = json.loads((run_dir / "candidates" / "sources.json").read_text())
    figures["results"] = json.loads((run_dir / "results.json").read_text())
    out = ROOT / "benchmarks" / "results" / f"end_to_end_{args.preset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(f"## {args.preset} ({args.mode}) on {machine_line()}")
    split = figures["split"]
    print(f"interactions in fit weeks: {split['fit_interactions']:,}; targets: {split['n_targets']}")
    for stage, v in figures["stages"].items():
        print(f"- {stage}: {v['wall_s']} s, peak RSS {v['peak_rss_gib']} GiB")
    print((run_dir / "results.md").read_text())


if __name__ == "__main__":
    main()
