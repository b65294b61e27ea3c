"""Commit-ready record of one finished pipeline run, the source of the README's demo table (`make docs`).

    python -m audience run --data-dir data/synthetic-small --mode validate
    python reports/record_run.py artifacts/synthetic-small-validate \
        --command "python -m audience run --data-dir data/synthetic-small --mode validate"

Writes reports/results/<dataset>-<mode>.json: the run's results.json plus the machine, the code's commit,
the command and each stage's wall time (timings.json) and peak RSS (memory.json, when recorded)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import machine  # noqa: E402

from audience.io import read_json, write_json  # noqa: E402


def commit() -> str:
    """The checkout's short commit, '+changes' when files differ from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True)
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def record(run_dir: Path, command: str) -> Path:
    results = read_json(run_dir / "results.json")
    memory = run_dir / "memory.json"
    out = ROOT / "reports" / "results" / f"{results['dataset']}-{results['mode']}.json"
    write_json(
        {
            **results,
            "machine": machine(),
            "commit": commit(),
            "command": command,
            "stage_wall_s": read_json(run_dir / "timings.json"),
            "stage_peak_rss_gib": read_json(memory) if memory.is_file() else {},
        },
        out,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--command", required=True, help="the command that made the run")
    args = parser.parse_args()
    print(f"wrote {record(args.run_dir, args.command)}")


if __name__ == "__main__":
    main()
