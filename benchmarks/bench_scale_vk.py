"""The `vk` workload (shaped like up0.01_ip0.01) end to end on this machine.

    python benchmarks/bench_scale_vk.py [--preset vk] [--modes validate submit] [--report]
    python benchmarks/bench_scale_vk.py --modes submit --stages assign evaluate   # after a code change

1. Data: generated when missing (timed); otherwise the generation figure of benchmarks/results/
   generation_<preset>.json is carried over (its machine and load are in that file).
2. The week pass, in a child process from an empty cache: every train week reduced to its weekly aggregate
   (read + every profile kind + histories), rows/s; in the same child the physical reference, a numba
   scatter-add of 64-d embedding rows (one thread) over the last week's rows.
3. Each mode, every stage in a fresh process (wall, CPU, peak RSS); the modes reuse the week pass's
   aggregates, as every run of a dataset does, so a cold run costs the week pass on top (stated).
`--stages` reruns some stages of a mode on the folder its last full run left (their figures replace the
stored ones; the mode records the rerun). Writes benchmarks/results/scale_<preset>.{json,md}; `--report`
rewrites the md from the json."""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _machine import machine
from _suite import (
    MODES,
    RESULTS,
    ROOT,
    child_figures,
    data_dir,
    mode_run_dir,
    publish,
    read_json,
    run_child,
    run_mode,
    week_store,
    write_atomic,
)
from numba import njit

from audience.config import STAGES
from audience.evaluation.report import decomposition_table
from audience.markdown import table

WEEK_PASS_CODE = (
    "import sys; sys.path.insert(0, 'benchmarks'); import bench_scale_vk as b; b.week_pass_child()"
)


@njit(cache=True)
def _scatter_add(user: np.ndarray, item: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    for r in range(user.shape[0]):
        out[user[r]] += table[item[r]]


def week_pass_child() -> None:
    """argv: data dir, cache dir, result json. Times the week pass and the scatter reference."""
    from audience.data.layout import DatasetLayout
    from audience.data.weeks import count_rows, distinct_ids, read_week
    from audience.profiles.aggregates import fit_from_aggregates

    data, cache, out = (Path(a) for a in sys.argv[1:4])
    layout = DatasetLayout(data)
    weeks = layout.train_weeks()
    shutil.rmtree(cache, ignore_errors=True)
    figures: dict = {"weeks": len(weeks), "rows": count_rows(weeks)}
    clock = time.perf_counter()
    users, items = distinct_ids(weeks, cache_dir=cache)
    figures["index_s"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    store = week_store(layout, cache, users, items)
    catalog = store.catalog
    figures["catalog_and_mixture_s"] = round(time.perf_counter() - clock, 2)
    clock, cpu = time.perf_counter(), time.process_time()
    store.build_missing(weeks, progress=True)
    wall = time.perf_counter() - clock
    figures |= {"week_pass_s": round(wall, 2), "week_pass_cpu_s": round(time.process_time() - cpu, 2)}
    figures["week_pass_rows_per_s"] = round(figures["rows"] / wall)
    figures["cache_gib"] = round(
        sum(p.stat().st_size for p in Path(cache).rglob("*") if p.is_file()) / 2**30, 2
    )
    batch = read_week(weeks[-1], catalog.users, catalog.items)
    out_sums = np.zeros((catalog.n_users, catalog.embedding.shape[1]), dtype=np.float32)
    _scatter_add(batch.user[:1000], batch.item[:1000], catalog.embedding, out_sums)  # compile
    clock = time.perf_counter()
    _scatter_add(batch.user, batch.item, catalog.embedding, out_sums)
    figures["scatter_reference_rows_per_s"] = round(len(batch) / (time.perf_counter() - clock))
    del batch, out_sums
    write_atomic(out, json.dumps(figures, indent=2))  # kept if the combine below fails
    clock = time.perf_counter()
    fit = fit_from_aggregates(store, weeks, progress=True)
    figures["combine_s"] = round(time.perf_counter() - clock, 2)
    figures["history_pairs"] = {name: int(m.nnz) for name, m in fit.histories.items()}
    write_atomic(out, json.dumps(figures, indent=2))


def week_pass(data: Path, cache: Path) -> dict:
    return child_figures(WEEK_PASS_CODE, [str(data), str(cache)], "week-pass")


def same_files(a: Path, b: Path) -> bool:
    """Whether two datasets' interaction files hold the same bytes (the generator's output is stable)."""
    names = sorted(p.relative_to(a) for p in a.rglob("*.parquet") if "interactions" in p.parts)
    return bool(names) and all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def generation(preset: str, data: Path) -> dict:
    """Generate the preset when missing (timed); else the figure of its generation benchmark."""
    if (data / "metadata" / "items_metadata.parquet").is_file():
        recorded = read_json(RESULTS / f"generation_{preset}.json")
        whole = recorded["pieces"][f"{preset} (whole, padded)"]
        return {"generation_s": whole["wall_s"], "from": f"generation_{preset}.json", **whole}
    cmd = [sys.executable, "scripts/01_synthetic_data.py", "--preset", preset, "--data-dir", str(data)]
    child = run_child(cmd, timeout=None, log=ROOT / "artifacts" / f"bench-generate-{preset}.log")
    if child["status"] != "ok":
        raise SystemExit(f"generating {preset} failed: {child}")
    return {"generation_s": child["wall_s"], "from": "this run", **child}


def summary(figures: dict) -> str:
    m, wp = figures["machine"], figures["week_pass"]
    lines = [
        f"# `{figures['preset']}` end to end",
        "",
        f"Machine: {m['date']}, {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB RAM,"
        f" Python {m['python']}.",
        f"Rows: {figures['rows']:,} train rows over {wp['weeks']} weeks. Generation:"
        f" {figures['generation_s']} s wall ({figures['generation']['from']}).",
        f"Week pass (every train week to its aggregate, from an empty cache): {wp['week_pass_s']} s wall,"
        f" {wp['week_pass_cpu_s']} s CPU, **{wp['week_pass_rows_per_s'] / 1e6:.1f} M rows/s**, peak"
        f" {wp['child']['peak_rss_gib']} GiB, cache {wp['cache_gib']} GiB; numba scatter-add reference"
        f" (64-d rows, one thread) {wp['scatter_reference_rows_per_s'] / 1e6:.1f} M rows/s in the same"
        f" process. Indexing the weeks {wp['index_s']} s; combining the aggregates into one split:"
        + (
            f" {wp['combine_s']} s, its histories {wp['history_pairs']} pairs."
            if "combine_s" in wp
            else f" {wp['child']['status']} (see the note)."
        ),
        "",
    ]
    rows = []
    for mode, run in figures["modes"].items():
        for stage, s in run["stages"].items():
            rows.append([mode, stage, str(s["wall_s"]), str(s["cpu_s"]), str(s["peak_rss_gib"])])
        total = sum(s["wall_s"] for s in run["stages"].values())
        peak = max(s["peak_rss_gib"] for s in run["stages"].values())
        rows.append([mode, "**total**", f"{total:.1f}", "", str(peak)])
    lines += [*table(["mode", "stage", "wall s", "CPU s", "peak GiB"], rows), ""]
    lines += substep_lines(figures["modes"])
    for mode, run in figures["modes"].items():
        if run.get("decomposition"):
            lines += [f"{mode}: where the gap goes", "", decomposition_table(run["decomposition"]), ""]
    for mode, run in figures["modes"].items():
        if "failed" in run:
            lines.append(f"{mode}: stopped in {run['failed']['stage']} ({run['failed']['status']}).")
        elif "ndcg_capped" in run:
            lines.append(
                f"{mode}: final method NDCG@100 {run['ndcg_capped']:.4f}"
                + (
                    f", {run['oracle_share']:.0%} of the oracle {run['oracle']:.4f}."
                    if run.get("oracle")
                    else "."
                )
                + (f" Measured on code {run['code']}." if run.get("code") else "")
                + (
                    f" Rerun on code {run['rerun']['code']}: {', '.join(run['rerun']['stages'])}."
                    if run.get("rerun")
                    else ""
                )
            )
    return "\n".join(lines)


def substep_lines(modes: dict, shown: int = 8) -> list[str]:
    """Where each stage's time goes: its `shown` longest substeps (timings.json), wall seconds."""
    rows = []
    for mode, run in modes.items():
        for stage, s in run["stages"].items():
            longest = sorted(s.get("substeps", {}).items(), key=lambda item: -item[1])[:shown]
            if longest:
                rows.append([mode, stage, ", ".join(f"{name} {seconds:.0f}" for name, seconds in longest)])
    if not rows:
        return []
    return ["Substeps (wall s, the longest first):", "", *table(["mode", "stage", "substeps"], rows), ""]


def mode_figures(run: dict, run_dir: Path) -> dict:
    if "failed" in run:
        return run
    final = read_json(run_dir / "config.json")["final_method"]
    methods = {row["method"]: row for row in run["methods"]}
    out = run | {"final_method": final, "ndcg_capped": methods[final]["ndcg_capped"]}
    if "oracle" in methods:
        out |= {"oracle": methods["oracle"]["ndcg_capped"]}
        out["oracle_share"] = out["ndcg_capped"] / max(out["oracle"], 1e-12)
    return out


def code_version() -> str:
    """The commit the benchmark runs, with "-dirty" when the library (src/) differs from it: edits to
    results or docs do not change what is measured."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)

    rev = git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"
    return rev + ("-dirty" if git("diff", "--quiet", "HEAD", "--", "src").returncode else "")


def rerun_stages(path: Path, data: Path, modes: list[str], stages: tuple[str, ...]) -> None:
    """`stages` of each mode again on its last run folder: their figures replace the stored ones, the other
    stages' stay, and the mode records which stages were rerun and on which machine."""
    figures = read_json(path.with_suffix(".json"))
    for mode in modes:
        run_dir = mode_run_dir(data, mode)
        new = run_mode(data, run_dir, mode, quiet=False, stages=stages)
        run = figures["modes"][mode]
        run["stages"] = {name: new["stages"].get(name, old) for name, old in run["stages"].items()}
        if "failed" in new:
            run["failed"] = new["failed"]
        else:
            run.update(mode_figures(new | {"stages": run["stages"]}, run_dir))
        run["rerun"] = {"stages": list(stages), "code": code_version(), "machine": machine()}
        publish(path, figures, summary(figures))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="vk")
    parser.add_argument("--modes", nargs="*", default=list(MODES))
    parser.add_argument("--report", action="store_true", help="rewrite the md from the json")
    parser.add_argument(
        "--week-pass-only", action="store_true", help="measure the week pass again, keep the json's modes"
    )
    parser.add_argument(
        "--keep-week-pass",
        action="store_true",
        help="keep the json's week-pass figures and run the modes on the aggregates already cached",
    )
    parser.add_argument(
        "--stages",
        nargs="+",
        choices=STAGES,
        help="rerun these stages of each mode on the run folder its last full run left, replacing their "
        "figures and the mode's tables; the other stages' figures and the week pass stay",
    )
    parser.add_argument(
        "--generation-only",
        action="store_true",
        help="time a fresh generation into a scratch folder (deleted after), keep the json's other figures",
    )
    args = parser.parse_args()
    path = RESULTS / f"scale_{args.preset}"
    if args.report:
        write_atomic(path.with_suffix(".md"), summary(read_json(path.with_suffix(".json"))) + "\n")
        return
    data = data_dir(args.preset)
    if args.generation_only:
        figures = read_json(path.with_suffix(".json"))
        scratch = ROOT / "data" / f"synthetic-{args.preset}-timing"
        shutil.rmtree(scratch, ignore_errors=True)
        figures["generation"] = generation(args.preset, scratch) | {"machine": machine()}
        figures["generation"]["same_bytes_as_data"] = same_files(scratch, data)
        figures["generation_s"] = figures["generation"]["generation_s"]
        shutil.rmtree(scratch, ignore_errors=True)
        publish(path, figures, summary(figures))
        return
    if args.stages:
        rerun_stages(path, data, args.modes, tuple(s for s in STAGES if s in args.stages))
        return
    if args.week_pass_only:
        figures = read_json(path.with_suffix(".json"))
        figures["week_pass"] = week_pass(data, ROOT / "artifacts" / f"{data.name}-weeks")
        figures["week_pass"]["machine"] = machine()
        for key in ("rows", "week_pass_rows_per_s", "scatter_reference_rows_per_s"):
            figures[key] = figures["week_pass"][key]
        publish(path, figures, summary(figures))
        return
    figures: dict = {"machine": machine(), "preset": args.preset, "generation": generation(args.preset, data)}
    figures["generation_s"] = figures["generation"]["generation_s"]
    cache = ROOT / "artifacts" / f"{data.name}-weeks"  # where the pipeline's runs find the aggregates
    if args.keep_week_pass:  # a stale or missing aggregate is rebuilt by the first stage that needs it
        kept = read_json(path.with_suffix(".json"))
        figures["week_pass"] = {"machine": kept["machine"]} | kept["week_pass"]
    else:
        figures["week_pass"] = week_pass(data, cache)
    figures["rows"] = figures["week_pass"]["rows"]
    figures["week_pass_rows_per_s"] = figures["week_pass"]["week_pass_rows_per_s"]
    figures["scatter_reference_rows_per_s"] = figures["week_pass"]["scatter_reference_rows_per_s"]
    shutil.rmtree(ROOT / "artifacts" / f"{data.name}-holdout", ignore_errors=True)
    # a mode not run this time keeps its figures from the json (`--modes submit` leaves validate's)
    stored = path.with_suffix(".json")
    previous = read_json(stored).get("modes", {}) if stored.is_file() else {}
    figures["modes"] = {mode: run for mode, run in previous.items() if mode not in args.modes}
    for mode in args.modes:
        run_dir = mode_run_dir(data, mode)
        figures["modes"][mode] = mode_figures(run_mode(data, run_dir, mode, quiet=False), run_dir)
        figures["modes"][mode]["code"] = code_version()
        publish(path, figures, summary(figures))  # after each mode: a long run leaves what it measured


if __name__ == "__main__":
    main()
