"""Synthetic generation speed and memory: `vk-small` in full and the first weeks of `vk`, plus the two
pieces of `vk` that a few weeks leave out (the test week's oracle, the metadata padding to global sizes).

    python benchmarks/bench_generation.py [--small vk-small] [--large vk] [--weeks 6] [--full]

Each piece runs in a child process (wall, CPU of the process and its threads, peak RSS, load average
before/after). Rows/s is given per wall second and per CPU second: the machine is shared, so wall time
depends on the others' load while CPU time does not (it counts every thread of the child). `--full` also
generates the whole `vk` (1.36 B train rows) under data/. Writes benchmarks/results/generation_vk.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine
from _suite import RESULTS, ROOT, publish, run_child

from audience.markdown import table


def child_generate(preset: str, out: str, weeks: int | None, local_metadata: bool) -> None:
    from audience.data.presets import preset as get_preset
    from audience.data.synthetic import generate

    overrides = {"global_metadata": False} if local_metadata else {}
    generate(Path(out), get_preset(preset, **overrides), progress=False, overwrite=True, weeks=weeks)


def child_pad(out: str) -> None:
    from audience.data.layout import DatasetLayout
    from audience.data.metadata_padding import REAL_ITEMS, REAL_USERS, pad_metadata

    pad_metadata(DatasetLayout(Path(out)), REAL_USERS, REAL_ITEMS, progress=False)


def child_oracle(preset: str, out: str) -> None:
    """The oracle of the preset's test week for every clip released in it (what the full run computes)."""
    import numpy as np

    from audience.data.layout import DatasetLayout
    from audience.data.presets import preset as get_preset
    from audience.data.synthetic import build_world, oracle_top

    cfg = get_preset(preset)
    offsets = json.loads((DatasetLayout(Path(out)).truth_dir / "generator.json").read_text())["flag_offsets"]
    world = build_world(cfg)
    items = np.flatnonzero(world.item_release == cfg.n_weeks - 1)
    oracle_top(world, cfg, cfg.n_weeks - 1, items, offsets)
    print(json.dumps({"clips": int(items.shape[0])}))


def measure(args: list[str], log: Path) -> dict:
    child = run_child([sys.executable, __file__, *args], timeout=None, log=log)
    if child["status"] != "ok":
        raise SystemExit(f"{args}: {child['status']} (log {log})")
    return child


def rows_of(out: Path) -> dict:
    """Rows and weeks written, and the train rows (counted from the train files' parquet footers)."""
    import polars as pl

    from audience.data.layout import DatasetLayout

    summary = json.loads((out / "_synthetic_truth" / "full" / "generator.json").read_text())
    train = DatasetLayout(out).train_weeks()
    train_rows = sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in train)
    return {"rows": summary["rows"], "weeks": summary["weeks_written"], "train_rows": train_rows}


def generation_piece(preset: str, out: Path, weeks: int | None, local_metadata: bool, logs: Path) -> dict:
    args = ["--child", "generate", preset, str(out), str(weeks or 0), str(int(local_metadata))]
    child = measure(args, logs / f"generate-{preset}.log")
    piece = {"preset": preset, **rows_of(out), **child}
    piece["rows_per_wall_s"] = round(piece["rows"] / child["wall_s"])
    piece["rows_per_cpu_s"] = round(piece["rows"] / child["cpu_s"])
    piece["disk_gib"] = round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**30, 2)
    return piece


def summary(figures: dict) -> str:
    m = figures["machine"]
    lines = [
        "# Synthetic generation: vk presets",
        "",
        f"Machine: {m['date']}, {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB RAM, Python"
        f" {m['python']}; numba threads: {figures['numba_threads']}. Wall seconds depend on"
        " the other engineers' load on the shared cores (load average before/after shown); CPU"
        " seconds count every thread of the child process.",
        "",
    ]
    header = ["piece", "rows", "wall s", "CPU s", "M rows/s wall", "M rows/s CPU", "peak GiB", "load"]
    rows = []
    for name, piece in figures["pieces"].items():
        rows.append(
            [
                name,
                f"{piece.get('rows', 0):,}",
                str(piece["wall_s"]),
                str(piece["cpu_s"]),
                f"{piece['rows_per_wall_s'] / 1e6:.2f}" if "rows_per_wall_s" in piece else "",
                f"{piece['rows_per_cpu_s'] / 1e6:.2f}" if "rows_per_cpu_s" in piece else "",
                str(piece["peak_rss_gib"]),
                f"{piece['load_before']} / {piece['load_after']}",
            ]
        )
    lines += [*table(header, rows), ""]
    est = figures["vk_estimate"]
    lines += [
        f"Train rows per user-week of {figures['small']}:"
        f" {figures['train_rows_per_user_week'][figures['small']]}. Whole `vk` estimated from these"
        f" pieces: {est['train_rows']:,} train rows (those per user-week x its users x 25 weeks) +"
        f" validation and test weeks, {est['generation_wall_s']} s wall / {est['generation_cpu_s']} s CPU"
        " at the measured vk rates, plus the test-week oracle and the padding:"
        f" {est['total_wall_s']} s wall, {est['total_cpu_s']} s CPU.",
    ]
    if "vk_whole" in figures:
        whole = figures["vk_whole"]
        lines.append(
            f"Whole `vk` generated (padded metadata, oracle included): {whole['rows']:,} rows"
            f" ({whole['train_rows']:,} train), {whole['wall_s']} s wall, {whole['cpu_s']} s CPU,"
            f" {whole['disk_gib']} GiB on disk."
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "generate":
            child_generate(rest[0], rest[1], int(rest[2]) or None, bool(int(rest[3])))
        elif kind == "pad":
            child_pad(rest[0])
        else:
            child_oracle(rest[0], rest[1])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", default="vk-small")
    parser.add_argument("--large", default="vk")
    parser.add_argument("--weeks", type=int, default=6, help="weeks of the large preset to generate")
    parser.add_argument("--full", action="store_true", help="also generate the whole large preset")
    parser.add_argument("--report", action="store_true", help="only rewrite the .md from the .json")
    args = parser.parse_args()
    if args.report:
        figures = json.loads((RESULTS / "generation_vk.json").read_text())
        publish(RESULTS / "generation_vk", figures, summary(figures))
        return
    import numba

    from audience.data.presets import preset

    scratch = ROOT / "data" / "bench-generation"
    logs = ROOT / "artifacts" / "bench-generation"
    logs.mkdir(parents=True, exist_ok=True)
    pieces = {}
    small_out = scratch / args.small
    pieces[f"{args.small} (all weeks)"] = generation_piece(args.small, small_out, None, False, logs)
    large_out = scratch / f"{args.large}-first-weeks"
    pieces[f"{args.large} (first {args.weeks} weeks)"] = generation_piece(
        args.large, large_out, args.weeks, True, logs
    )
    oracle = measure(["--child", "oracle", args.large, str(large_out)], logs / "oracle.log")
    pieces[f"{args.large} test-week oracle"] = oracle
    pieces[f"{args.large} metadata padding"] = measure(["--child", "pad", str(large_out)], logs / "pad.log")
    small_cfg, large_cfg = preset(args.small), preset(args.large)
    small_piece = pieces[f"{args.small} (all weeks)"]
    large_piece = pieces[f"{args.large} (first {args.weeks} weeks)"]
    per_user_week = small_piece["train_rows"] / (small_cfg.n_users * small_cfg.n_train_weeks)
    per_user_other = (small_piece["rows"] - small_piece["train_rows"]) / small_cfg.n_users
    train_rows = round(per_user_week * large_cfg.n_users * large_cfg.n_train_weeks)
    total_rows = train_rows + round(per_user_other * large_cfg.n_users)
    gen_wall = total_rows / large_piece["rows_per_wall_s"]
    gen_cpu = total_rows / large_piece["rows_per_cpu_s"]
    extra = [pieces[f"{args.large} test-week oracle"], pieces[f"{args.large} metadata padding"]]
    figures = {
        "machine": machine(),
        "numba_threads": numba.get_num_threads(),
        "small": args.small,
        "pieces": pieces,
        "train_rows_per_user_week": {args.small: round(per_user_week, 1)},
        "vk_estimate": {
            "train_rows": train_rows,
            "rows": total_rows,
            "generation_wall_s": round(gen_wall),
            "generation_cpu_s": round(gen_cpu),
            "total_wall_s": round(gen_wall + sum(p["wall_s"] for p in extra)),
            "total_cpu_s": round(gen_cpu + sum(p["cpu_s"] for p in extra)),
        },
    }
    if args.full:
        full = generation_piece(args.large, ROOT / "data" / f"synthetic-{args.large}", None, False, logs)
        pieces[f"{args.large} (whole, padded)"] = full
        figures["vk_whole"] = {k: full[k] for k in ("rows", "train_rows", "wall_s", "cpu_s", "disk_gib")}
    shutil.rmtree(large_out, ignore_errors=True)
    publish(RESULTS / "generation_vk", figures, summary(figures))


if __name__ == "__main__":
    main()
