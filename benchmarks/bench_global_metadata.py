"""A preset end to end with metadata of the real global size against the same preset as generated.

    python benchmarks/bench_global_metadata.py [--preset small] [--users 10000000] [--items 19627601]

The real metadata files are global (10 M users, 19.6 M clips, 2.5 GB of embeddings) whatever subsample a
run uses. This copies the preset's data, pads the copy's metadata to the real sizes (timed), then runs
every stage of both modes on both datasets, each stage in a fresh process as `make demo` does, and records
wall time and peak RSS per stage and the results tables. Writes
benchmarks/results/global_metadata_<preset>.{json,md}."""

from __future__ import annotations

import argparse
import shutil
import sys

from _machine import machine
from _suite import MODES, RESULTS, ROOT, ensure_data, mode_run_dir, publish, run_child, run_mode

from audience.config import STAGES
from audience.data.metadata_padding import REAL_ITEMS, REAL_USERS
from audience.markdown import table


def pad_copy(source, target, users: int, items: int) -> dict:
    """Copy `source` to `target` and pad its metadata in a child process, timed."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    code = (
        "from audience.data.layout import DatasetLayout;"
        "from audience.data.metadata_padding import pad_metadata;"
        f"pad_metadata(DatasetLayout({str(target)!r}), {users}, {items}, progress=False)"
    )
    child = run_child([sys.executable, "-c", code], timeout=None)
    if child["status"] != "ok":
        raise SystemExit(f"padding {target} failed: {child}")
    return child


def summary(figures: dict) -> str:
    preset, pad, meta, m = figures["preset"], figures["padding"], figures["metadata"], figures["machine"]
    lines = [
        f"# `{preset}` with global-size metadata against `{preset}` as generated",
        "",
        f"Machine: {m['date']}, {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB RAM,"
        f" Python {m['python']}. Each stage in a fresh process; peak RSS of that process.",
        f"Padding the metadata to {meta['users']:,} users and {meta['items']:,} clips took "
        f"{pad['wall_s']} s wall, {pad['cpu_s']} s CPU, peak {pad['peak_rss_gib']} GiB.",
        "",
    ]
    rows = []
    for mode in MODES:
        plain, padded = figures["plain"][mode]["stages"], figures["global"][mode]["stages"]
        for stage in STAGES:
            a, b = plain[stage], padded[stage]
            rows.append(
                [mode, stage, *(str(r[k]) for r in (a, b) for k in ("wall_s", "cpu_s", "peak_rss_gib"))]
            )
    figures_of = ("wall s", "CPU s", "GiB")
    header = ["mode", "stage", *(f"{name}: {k}" for name in ("as generated", "global") for k in figures_of)]
    lines += [*table(header, rows), ""]
    rows = [
        [
            mode,
            f"{row['plain_s']} / {row['global_s']} / {row['extra_s']}",
            f"{row['plain_cpu_s']} / {row['global_cpu_s']} / {row['extra_cpu_s']}",
            f"{row['plain_peak_gib']} / {row['global_peak_gib']}",
            "yes" if row["identical_results"] else "NO",
        ]
        for mode, row in figures["comparison"].items()
    ]
    header = ["mode", "wall s: generated / global / extra", "CPU s: same", "peak GiB", "same results table"]
    lines += table(header, rows)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small")
    parser.add_argument("--users", type=int, default=REAL_USERS)
    parser.add_argument("--items", type=int, default=REAL_ITEMS)
    args = parser.parse_args()
    plain, _ = ensure_data(args.preset)
    padded = ROOT / "data" / f"synthetic-{args.preset}-global"
    figures: dict = {
        "machine": machine(),
        "preset": args.preset,
        "metadata": {"users": args.users, "items": args.items},
        "padding": pad_copy(plain, padded, args.users, args.items),
    }
    for name, data in (("plain", plain), ("global", padded)):
        # holdout runs rebuilt per dataset; submit reuses validate's, as in `make demo`
        shutil.rmtree(ROOT / "artifacts" / f"{data.name}-holdout", ignore_errors=True)
        figures[name] = {mode: run_mode(data, mode_run_dir(data, mode), mode) for mode in MODES}
        failed = [(mode, r["failed"]) for mode, r in figures[name].items() if "failed" in r]
        if failed:
            raise SystemExit(f"{data}: {failed}")
    figures["comparison"] = {}
    for mode in MODES:
        a, b = figures["plain"][mode], figures["global"][mode]
        plain_s, global_s = (sum(s["wall_s"] for s in r["stages"].values()) for r in (a, b))
        plain_cpu, global_cpu = (sum(s["cpu_s"] for s in r["stages"].values()) for r in (a, b))
        figures["comparison"][mode] = {
            "plain_s": round(plain_s, 1),
            "global_s": round(global_s, 1),
            "extra_s": round(global_s - plain_s, 1),
            "plain_cpu_s": round(plain_cpu, 1),
            "global_cpu_s": round(global_cpu, 1),
            "extra_cpu_s": round(global_cpu - plain_cpu, 1),
            "plain_peak_gib": max(s["peak_rss_gib"] for s in a["stages"].values()),
            "global_peak_gib": max(s["peak_rss_gib"] for s in b["stages"].values()),
            "identical_results": a["methods"] == b["methods"],
        }
    publish(RESULTS / f"global_metadata_{args.preset}", figures, summary(figures))


if __name__ == "__main__":
    main()
