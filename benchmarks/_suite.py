"""Shared plumbing of the benchmark suite: run a piece in a child process under a time limit (wall time and
peak memory measured), write a file atomically, make sure a preset's synthetic data exists."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from audience.config import STAGES

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PRESET_ORDER = ("tiny", "small", "medium", "large")


def child_figures(code: str, args: list[str], name: str) -> dict:
    """Run `python -c code *args OUT` in a child process (its log artifacts/bench-<name>.log) and return the
    figures it wrote to OUT = artifacts/bench-<name>.json, with the child's wall time and peak RSS."""
    out = ROOT / "artifacts" / f"bench-{name}.json"
    out.unlink(missing_ok=True)
    log = ROOT / "artifacts" / f"bench-{name}.log"
    child = run_child([sys.executable, "-c", code, *args, str(out)], timeout=None, log=log)
    if not out.is_file():
        raise SystemExit(f"{name} failed: {child}; see {log.relative_to(ROOT)}")
    return read_json(out) | {"child": child}


def week_store(layout, cache: Path, users, items):
    """The default run's weekly-aggregate store over `cache` for a catalog of these users and clips (64-d),
    with the dataset's mixture (fitted here when `cache` has none), as a pipeline run builds it: what the
    week-pass benchmarks time."""
    from audience.config import RunConfig
    from audience.data.catalog import RunNeeds, load_catalog
    from audience.profiles.aggregates import AggregateStore
    from audience.profiles.dataset_mixture import dataset_mixture

    cfg = RunConfig()
    catalog = load_catalog(layout, cfg.embedding_dim, RunNeeds(users, items))
    metadata = (layout.items_metadata, layout.item_embeddings)
    mixture = dataset_mixture(layout.item_embeddings, items, cfg.gmm, cfg.embedding_dim, cache)
    return AggregateStore(cache, catalog, cfg.positive_flags, cfg.profiles, metadata, mixture=mixture)


def data_dir(preset: str) -> Path:
    return ROOT / "data" / f"synthetic-{preset}"


def mode_run_dir(data: Path, mode: str) -> Path:
    """The run folder a benchmark gives `mode` on `data`, where `bench_scale_vk.py --stages` finds it
    again."""
    return ROOT / "artifacts" / f"bench-{data.name}-{mode}"


def ensure_data(preset: str) -> tuple[Path, float | None]:
    """The preset's dataset, generated with the library's generator when its stamp is missing; returns the
    folder and the generation seconds (None when it already existed)."""
    data = data_dir(preset)
    if (data / "_synthetic_truth" / "full" / "generator.json").is_file():
        return data, None
    cmd = [sys.executable, "-m", "audience", "synth", "--preset", preset, "--data-dir", str(data)]
    child = run_child([*cmd, "--overwrite", "--quiet"], timeout=None)
    if child["status"] != "ok":
        raise SystemExit(f"generating {data} failed: {child}")
    return data, child["wall_s"]


def load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def run_child(cmd: list[str], timeout: float | None, log: Path | None = None) -> dict:
    """Run `cmd` from the repo root in its own process group. Returns {status: ok | timeout | failed (rc N),
    wall_s, peak_rss_gib, cpu_s, load_before, load_after}; on timeout the child's group is killed."""
    start = time.perf_counter()
    load_before = load_average()
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no artifacts/ yet
    out = open(log, "w") if log is not None else None
    try:
        proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        status = None
        while True:
            pid, raw, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                rc = os.waitstatus_to_exitcode(raw)
                proc.returncode = rc
                status = "ok" if rc == 0 else f"failed (rc {rc})"
                break
            if timeout is not None and time.perf_counter() - start > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                _, raw, usage = os.wait4(proc.pid, 0)
                status = "timeout"
                break
            time.sleep(0.2)
    finally:
        if out is not None:
            out.close()
    return {
        "status": status,
        "wall_s": round(time.perf_counter() - start, 2),
        "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),  # robust to other load, unlike wall_s
        "load_before": load_before,
        "load_after": load_average(),
    }


MODES = ("validate", "submit")
# the columns of a candidate generator's row, in bench_generators' tables and the suite's report
GENERATOR_COLUMNS = (
    "generator",
    "fit s",
    "stored MB",
    "latency ms (1 clip)",
    "clips/s (1 at a time)",
    "clips/s (batch)",
    "NDCG@100",
    "recall@300",
)


def run_mode(
    data: Path,
    run_dir: Path,
    mode: str,
    quiet: bool = True,
    timeout: float | None = None,
    stages: tuple[str, ...] = STAGES,
) -> dict:
    """Every stage of one mode, each in its own process as `make demo` runs them; wall time, CPU time and
    peak RSS per stage (each stage's log beside the run folder). A failed stage stops the mode: what ran is
    returned with `failed` naming the stage and its status. `stages` other than all of them rerun those
    stages on the folder a full run left (the figures returned are theirs alone, the tables the folder's
    after them)."""
    if tuple(stages) == STAGES:
        shutil.rmtree(run_dir, ignore_errors=True)
    elif not (run_dir / "config.json").is_file():
        raise SystemExit(f"{run_dir} holds no run to rerun {', '.join(stages)} on: run every stage first")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    figures = {}
    for stage in stages:
        cmd = [sys.executable, "-m", "audience", "stage", stage, "--data-dir", str(data), "--mode", mode]
        cmd += ["--run-dir", str(run_dir), "--out", str(run_dir / "submission.parquet")]
        cmd += ["--quiet"] if quiet else []
        child = run_child(cmd, timeout=timeout, log=run_dir.parent / f"{run_dir.name}-{stage}.log")
        figures[stage] = {
            k: child[k] for k in ("wall_s", "cpu_s", "peak_rss_gib", "load_before", "load_after")
        }
        if child["status"] != "ok":
            return {"stages": figures, "failed": {"stage": stage, "status": child["status"]}}
    results = read_json(run_dir / "results.json")
    split = read_json(run_dir / "split.json")
    substeps = read_json(run_dir / "timings.json").get("substeps", {})
    for stage in figures:
        figures[stage]["substeps"] = substeps.get(stage, {})
    out = {"stages": figures, "index": split["index"], "methods": results["methods"]}
    return out | ({"decomposition": results["decomposition"]} if "decomposition" in results else {})


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary sibling, then rename it over `path` (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def publish(stem: Path, figures: dict, text: str) -> None:
    """A benchmark's results: stem.json (the raw figures) and stem.md (`text`), both atomically; prints the
    markdown."""
    write_json(stem.with_suffix(".json"), figures)
    write_atomic(stem.with_suffix(".md"), text)
    print(text)


def write_json(path: Path, figures: dict) -> None:
    write_atomic(path, json.dumps(figures, indent=2, default=_plain) + "\n")


def _plain(value):
    """numpy scalars and paths as plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
