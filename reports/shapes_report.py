"""NDCG@100 of every method on each data shape and training protocol (issue 16), measured by running the
pipeline in validate mode (one stocked run in submit mode); writes reports/shapes_<name>.md and .json.

    python reports/shapes_report.py --rolling data/synthetic-small --stocked data/synthetic-small-stocked

Shapes: "rolling" (the usual synthetic data: clips released every week), "stocked" (every clip lives in
every week; new clips only in validation/test: `audience synth --shape stocked`) and "warm" (rolling data
whose target list mixes the validation week's new clips with clips seen in the train weeks). Variants per
shape are the training protocols (new / pseudo / both) or, on warm, the seen-user exclusion and the
own-audience source. Runs are kept under --work and reused when their config is unchanged."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from audience.config import RunConfig, load_config
from audience.data.layout import DatasetLayout
from audience.data.targets import mixed_targets
from audience.io import atomic_path, read_json, write_parquet
from audience.pipeline import run_all

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _machine import machine_line  # noqa: E402

REPORT_ONLY = {"random", "hnsw:all", "exact:all", "oracle", "union of sources", "blend", "reranked"}
OWN = "own_audience"


def variants(
    rolling: Path, stocked: Path, work: Path, n_warm: int, n_threads: int
) -> list[tuple[str, str, RunConfig]]:
    base = load_config(quiet=True, n_threads=n_threads)
    sources = tuple(s for s in base.sources if s != OWN)
    mixed = work / "targets" / "mixed_validation.parquet"
    layout = DatasetLayout(rolling)
    if not mixed.is_file():
        write_parquet(mixed_targets(layout.train_weeks(), layout.validation_week(), n_warm, 0), mixed)

    def cfg(shape: str, name: str, data: Path, **over) -> tuple[str, str, RunConfig]:
        run_dir = work / f"{shape}-{name}"
        return shape, name, replace(base, data_dir=data, run_dir=run_dir, **{"sources": sources, **over})

    def protocol(label_clips: str, pick: str = "viewed", share: float = 0.1) -> dict:
        changed = replace(base.reranker, label_clips=label_clips, pseudo_pick=pick, pseudo_share=share)
        return {"reranker": changed}

    warm_sources = (*sources, OWN)
    return [
        cfg("rolling", "new", rolling, **protocol("new")),
        cfg("rolling", "pseudo", rolling, **protocol("pseudo")),
        cfg("rolling", "both", rolling, **protocol("both")),
        cfg("stocked", "new->pseudo", stocked, **protocol("new")),
        cfg("warm", "exclude+own", rolling, targets=mixed, sources=warm_sources),
        cfg("warm", "exclude", rolling, targets=mixed),
        cfg("warm", "neither", rolling, targets=mixed, exclude_seen=False),
        cfg("stocked", "new->pseudo-uniform", stocked, **protocol("new", "uniform")),
        # the case: in submit mode the validation week is a label week with new clips
        cfg("stocked", "submit-new", stocked, mode="submit", **protocol("new")),
    ]


def measure(cfg: RunConfig, cached_only: bool = False) -> dict | None:
    """The run's results (and wall time), reused when its config is unchanged; None if `cached_only` and
    it has not run."""
    done = cfg.artifacts / "results.json"
    config = json.loads(json.dumps(cfg.to_dict(), default=str))
    if done.is_file() and (cfg.artifacts / "shape_config.json").is_file():
        if read_json(cfg.artifacts / "shape_config.json") == config:
            return read_json(done) | {"wall_s": read_json(cfg.artifacts / "shape_wall.json")}
    if cached_only:
        return None
    start = time.perf_counter()
    run_all(cfg)
    wall = round(time.perf_counter() - start, 1)
    for name, value in (("shape_config.json", config), ("shape_wall.json", wall)):
        with atomic_path(cfg.artifacts / name) as tmp:
            tmp.write_text(json.dumps(value))
    return read_json(done) | {"wall_s": wall}


def verdict(rows: dict[str, dict], column: str) -> str:
    """Whether 'reranked' beats every single source (and the blend) on `column`."""
    singles = {m: r[column] for m, r in rows.items() if m not in REPORT_ONLY and column in r}
    best = max(singles, key=singles.get)
    default = rows["reranked"][column]
    word = "beats" if default > singles[best] else "does NOT beat"
    return f"reranked {default:.4f} {word} the best single source {best} {singles[best]:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rolling", type=Path, required=True)
    parser.add_argument("--stocked", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("artifacts/shapes"))
    parser.add_argument("--name", default="small")
    parser.add_argument("--warm-targets", type=int, default=500)
    parser.add_argument("--n-threads", type=int, default=1)
    parser.add_argument(
        "--only", nargs="*", metavar="SHAPE/NAME", help="run only these (e.g. rolling/new warm/exclude)"
    )
    parser.add_argument("--cached-only", action="store_true", help="report the runs done, run nothing")
    parser.add_argument(
        "--note", default="", help="a line for the report's header (e.g. how the machine was shared)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report: dict = {"machine": machine_line(), "n_threads": args.n_threads, "note": args.note, "shapes": {}}
    chosen = variants(args.rolling, args.stocked, args.work, args.warm_targets, args.n_threads)
    unknown = set(args.only or ()) - {f"{shape}/{name}" for shape, name, _ in chosen}
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}")
    for shape, name, cfg in chosen:
        if args.only and f"{shape}/{name}" not in args.only:
            continue
        print(f"== {shape} / {name}", flush=True)
        results = measure(cfg, args.cached_only)
        if results is None:
            continue
        training = cfg.artifacts / "training.json"
        report["shapes"].setdefault(shape, {})[name] = {
            "data": str(cfg.data_dir),
            "n_targets": results["n_targets"],
            "n_targets_with_positives": results["n_targets_with_positives"],
            "wall_s": results["wall_s"],
            "training": read_json(training) if training.is_file() else None,
            "methods": {row["method"]: row for row in results["methods"]},
        }
        write_report(report, args.name)


def write_report(report: dict, name: str) -> None:
    lines = [
        f"# NDCG@100 on each data shape ({name})",
        "",
        "Generated by `reports/shapes_report.py` (validate mode unless named submit, capped lists, "
        f"n_threads={report.get('n_threads', 1)}). "
        f"Machine: {report['machine']}.",
        "The oracle ranks only new clips (synthetic truth): its warm-group figure is not a ceiling.",
        *([report["note"]] if report.get("note") else []),
    ]
    for shape, runs in report["shapes"].items():
        columns = ["ndcg_capped"] + (["ndcg_capped_cold", "ndcg_capped_warm"] if shape == "warm" else [])
        for column in columns:
            lines += ["", f"## {shape}: {column}", ""]
            names = list(runs)
            methods = sorted(
                {m for r in runs.values() for m, row in r["methods"].items() if column in row},
                key=lambda m: -max(r["methods"].get(m, {}).get(column, -1) for r in runs.values()),
            )
            lines += ["| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
            for method in methods:
                cells = [
                    f"{r['methods'][method][column]:.4f}" if column in r["methods"].get(method, {}) else ""
                    for r in runs.values()
                ]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
            for run_name, r in runs.items():
                lines.append(f"- {run_name}: {verdict(r['methods'], column)}")
        lines += ["", f"### {shape}: protocol used and wall time", ""]
        for run_name, r in runs.items():
            used = (r["training"] or {}).get("used") or {}
            weeks = ", ".join(
                f"{w['week']} (new {w['new_clips']}, targets {w['targets']})" for w in used.get("weeks", [])
            )
            fell = (r["training"] or {}).get("fallback_source")
            lines.append(
                f"- {run_name}: {r['n_targets']} targets ({r['n_targets_with_positives']} with positives), "
                f"protocol {used.get('protocol', 'none')}: {weeks or fell}; {r['wall_s']} s"
            )
    out = ROOT / "reports" / f"shapes_{name}"
    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(report, indent=1, default=str))
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
