"""The weekly aggregation on the Dask engine (1 and 2 LocalCluster workers) beside the local engine, on the
same data in the same run; the per-part figures the README's capacity plan for the full dataset is
derived from.

    python benchmarks/bench_dask.py [--preset vk] [--part-rows 8000000] [--report]

Each configuration runs in a fresh child process from an empty cache (deleted afterwards): index the train
weeks, load the run's catalog, then time building every week's aggregate. Per configuration: wall, rows/s,
rows/s per worker, the client's and each worker's peak RSS; on Dask also every aggregation task's compute
time (the task stream), the bytes broadcast to each worker (the pickled catalog) and the parts' sizes.
Writes benchmarks/results/dask_<preset>.{json,md}; `--report` rewrites the md from the json.

    python benchmarks/bench_dask.py --pipeline --preset P [--mode M] [--user-shards N] [--no-plain-dask]
    python benchmarks/bench_dask.py --record RUN_DIR "dask, N user shards" --preset P [--mode M]
    python benchmarks/bench_dask.py --plan

`--pipeline` runs `audience run` on each engine (dask_pipeline_<preset>.{json,md}, and with user shards an
entry of dask_sharded.json); `--record` adds a run made by hand to dask_sharded.json; `--plan` derives the
full dataset's plan on user shards from those entries (dask_sharded_plan.json, `sharded_plan`)."""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from _machine import machine
from _suite import (
    RESULTS,
    ROOT,
    child_figures,
    data_dir,
    publish,
    read_json,
    run_child,
    week_store,
    write_atomic,
    write_json,
)

from audience.config import STAGES, HnswConfig, ProfileSettings, RunConfig
from audience.markdown import table
from audience.profiles.kinds import weekly_kinds

FULL_ROWS = 40_800_000_000  # VK-LSVD's interactions over its weeks (the dataset card)
FULL_WEEKS = 27  # VK-LSVD's weeks (the dataset card)
FULL_GB = 452  # its parquet files (the dataset card)
PROFILES = ProfileSettings()
KINDS = len(weekly_kinds(PROFILES.kinds))  # profile kinds a week aggregates
DIM = RunConfig().embedding_dim
CHILD_CODE = "import sys; sys.path.insert(0, 'benchmarks'); import bench_dask as b; b.child()"
CONFIGS = {"local": 0, "dask, 1 worker": 1, "dask, 2 workers": 2}


def _peak_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


def child() -> None:
    """argv: data dir, cache dir, workers (0 = local engine), part rows, result json."""
    from audience.config import DaskConfig
    from audience.data.layout import DatasetLayout
    from audience.data.weeks import count_rows, week_parts
    from audience.engine import LocalEngine
    from audience.engine.cluster import close_clients, local_cluster_shape
    from audience.engine.dask_engine import DaskEngine

    data, cache, workers, part_rows, out = (
        Path(sys.argv[1]),
        Path(sys.argv[2]),
        *map(int, sys.argv[3:5]),
        Path(sys.argv[5]),
    )
    layout = DatasetLayout(data)
    weeks = layout.train_weeks()
    shutil.rmtree(cache, ignore_errors=True)
    dask_cfg = DaskConfig(workers=workers, part_rows=part_rows)
    engine = DaskEngine(dask_cfg) if workers else LocalEngine()
    figures: dict = {"weeks": len(weeks), "rows": count_rows(weeks), "workers": workers}
    if workers:
        memory = local_cluster_shape(dask_cfg)[1]
        figures |= {"part_rows": part_rows, "worker_memory_gib": round(memory / 2**30, 2)}
        parts = [p.rows for w in weeks for p in week_parts(w, part_rows)]
        figures |= {"parts": len(parts), "part_rows_mean": round(float(np.mean(parts)))}
        clock = time.perf_counter()
        engine.client  # noqa: B018 - start the LocalCluster outside the timings
        figures["cluster_start_s"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    users, items = engine.distinct_ids(weeks, False, cache)
    figures["index_s"] = round(time.perf_counter() - clock, 2)
    store = week_store(layout, cache, users, items)
    figures["catalog_broadcast_mib"] = round(len(pickle.dumps(store.catalog, protocol=5)) / 2**20, 1)
    stream = None
    clock, cpu = time.perf_counter(), time.process_time()
    if workers:
        from distributed import get_task_stream

        with get_task_stream(engine.client) as stream:
            engine.build_aggregates(store, weeks, progress=True)
    else:
        engine.build_aggregates(store, weeks, progress=True)
    wall = time.perf_counter() - clock
    figures |= {"aggregate_s": round(wall, 2), "client_cpu_s": round(time.process_time() - cpu, 2)}
    figures["rows_per_s"] = round(figures["rows"] / wall)
    figures["rows_per_s_per_worker"] = round(figures["rows"] / wall / max(workers, 1))
    figures["client_peak_rss_gib"] = _peak_gib()
    if workers:
        peaks = engine.client.run(_peak_gib)
        figures["worker_peak_rss_gib"] = sorted(peaks.values())
        tasks: dict[str, list[float]] = {}
        for task in stream.data:
            name = task["key"].split("-")[0] if isinstance(task["key"], str) else str(task["key"][0])
            compute = sum(s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute")
            tasks.setdefault(name, []).append(compute)
        figures["tasks"] = {
            name: {"count": len(t), "compute_s": round(sum(t), 2), "max_s": round(max(t), 2)}
            for name, t in tasks.items()
        }
        part_s = figures["tasks"].get("aggregate_part", {}).get("compute_s")
        if part_s:
            figures["part_rows_per_compute_s"] = round(figures["rows"] / part_s)
        close_clients()
    figures["cache_gib"] = round(sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2**30, 2)
    shutil.rmtree(cache, ignore_errors=True)
    write_atomic(out, json.dumps(figures, indent=2))


def pipeline(data: Path, mode: str = "validate", user_shards: int = 0, plain_dask: bool = True) -> dict:
    """`audience run` end to end on each engine (one process each, as a user runs it; the Dask ones on a
    LocalCluster of one worker per core, the last with `user_shards` when given; `plain_dask` False leaves
    out the Dask run without shards), from empty run and aggregate folders: wall time, the client's and the
    workers' peak RSS, per-stage times, the run's users and fit rows, and whether each NDCG@100 table equals
    the local engine's to 4 decimals."""
    engines = {"local": ["--engine", "local"]}
    if plain_dask or not user_shards:
        engines["dask"] = ["--engine", "dask"]
    if user_shards:
        engines[f"dask, {user_shards} user shards"] = ["--engine", "dask", "--user-shards", str(user_shards)]
    runs = {}
    for engine, flags in engines.items():
        slug = engine.replace(", ", "-").replace(" ", "-")
        run_dir = ROOT / "artifacts" / f"bench-dask-pipeline-{slug}"
        weeks = ROOT / "artifacts" / f"bench-dask-pipeline-{slug}-weeks"
        for folder in (run_dir, weeks):
            shutil.rmtree(folder, ignore_errors=True)
        cmd = [sys.executable, "-m", "audience", "run", *flags, "--data-dir", str(data)]
        cmd += ["--mode", mode, "--run-dir", str(run_dir), "--weeks-dir", str(weeks), "--quiet"]
        print(f"== pipeline, {engine}", flush=True)
        child = run_child(cmd, timeout=None, log=run_dir.parent / f"{run_dir.name}.log")
        if child["status"] != "ok":
            raise SystemExit(f"pipeline on {engine} failed: {child}; see {run_dir.parent / run_dir.name}.log")
        runs[engine] = run_figures(run_dir, child["wall_s"]) | {"cpu_s": child["cpu_s"]}
        shutil.rmtree(weeks, ignore_errors=True)
    compare(runs)
    return {"mode": mode, "runs": runs, "tables_equal": all(r["identical"] for r in runs.values())}


def run_figures(run_dir: Path, wall_s: float | None = None) -> dict:
    """One `audience run`'s figures from its folder: wall time (`wall_s`, else the stages' sum), the client's
    peak RSS (the largest of its stages' in memory.json: each stage resets the process's high-water mark, so
    the process's own maximum covers only its last stage), the workers' peak, the users and fit rows, the
    stages' seconds and the NDCG@100 table. A run of some stages only (`--stages profiles,candidates`) has
    no table: `ndcg_capped` and what is read from the table or the pools are None (its stages are the keys
    of its peaks by stage, `stages_run`)."""
    results_path = run_dir / "results.json"
    results = read_json(results_path) if results_path.is_file() else None
    split = read_json(run_dir / "split.json")
    config = read_json(run_dir / "config.json")
    memory = read_json(run_dir / "memory.json")
    workers = memory.pop("workers", {})
    stages = {k: v for k, v in read_json(run_dir / "timings.json").items() if k != "substeps"}
    shards = [
        p for p in sorted((run_dir / "fit_shards").glob("users_*.npz")) if not p.name.endswith(".gmm.npz")
    ]
    reranked = run_dir / "candidates" / "reranked.parquet"
    return {
        "wall_s": round(sum(stages.values()), 2) if wall_s is None else wall_s,
        "peak_rss_gib": max(memory.values()),
        "peak_rss_gib_by_stage": memory,
        "worker_peak_gib": max(workers.values(), default=None),
        "users": split["n_users"],
        "rows": split["fit_interactions"],
        "stages": stages,
        "ndcg_capped": None
        if results is None
        else {r["method"]: r["ndcg_capped"] for r in results["methods"] if "ndcg_capped" in r},
        "n_targets": None if results is None else results["n_targets"],
        # with user shards: their number and their users' state on disk (profiles, histories, counts)
        "user_shards": len(shards),
        "shard_state_gib": round(sum(p.stat().st_size for p in shards) / 2**30, 3) if shards else None,
        "pool_rows": pq.ParquetFile(reranked).metadata.num_rows if reranked.is_file() else None,
        "workers": config["dask"]["workers"] if config["engine"] == "dask" else None,
        "hnsw_sources": sum(s.startswith("hnsw:") for s in config["sources"]),
        # what one shard sends back for every source: targets x depth x (int32 user, float32 score)
        "answer_gib_per_shard": None
        if results is None
        else results["n_targets"] * config["candidate_depth"] * len(config["sources"]) * 8 / 2**30,
    }


def compare(runs: dict) -> None:
    """Each run's `identical` (its NDCG@100 table equals the local engine's to 4 decimals; None without a
    local run) and `differs` (the methods that do not)."""
    tables = {
        e: {m: round(v, 4) for m, v in r["ndcg_capped"].items()}
        for e, r in runs.items()
        if r.get("ndcg_capped") is not None
    }
    local = tables.get("local")
    for engine, run in runs.items():
        own = tables.get(engine)
        run["identical"] = None if local is None or own is None else own == local
        run["differs"] = (
            None if run["identical"] is None else sorted(m for m, v in own.items() if local.get(m) != v)
        )


def record_run(
    run_dir: Path,
    engine: str,
    preset: str,
    mode: str,
    cached_aggregates: bool = False,
    note: str | None = None,
) -> None:
    """dask_sharded.json's entry for `preset` in `mode` gains (or replaces) `engine`'s figures from a run's
    folder (`cached_aggregates`: its week pass was done before, its wall time leaves it out; `note`: how the
    run was made, when its stages' sum is not one run's wall time), compared with the entry's local run when
    it has one."""
    path = RESULTS / "dask_sharded.json"
    sharded = read_json(path) if path.is_file() else {}
    key = preset if mode == "validate" else f"{preset}_{mode}"
    entry = sharded.get(key, {"machine": machine(), "mode": mode})
    figures = run_figures(run_dir) | {"cached_aggregates": cached_aggregates, "note": note}
    # runs recorded with their NDCG@100 table (older entries kept as they are)
    runs = {e: r for e, r in entry.items() if isinstance(r, dict) and "ndcg_capped" in r} | {engine: figures}
    compare(runs)
    sharded[key] = entry | {e: sharded_figures(r) for e, r in runs.items()} | {"machine": machine()}
    write_json(path, sharded)


def sharded_figures(run: dict) -> dict:
    """The keys of one engine's figures that dask_sharded.json keeps."""
    keys = (
        "users",
        "rows",
        "wall_s",
        "identical",
        "differs",
        "n_targets",
        "cached_aggregates",
        "user_shards",
        "shard_state_gib",
        "pool_rows",
        "workers",
        "hnsw_sources",
        "answer_gib_per_shard",
        "note",
    )
    return {
        **{k: run.get(k) for k in keys},
        "client_peak_gib": run.get("client_peak_gib", run.get("peak_rss_gib")),
        "client_peak_gib_by_stage": run.get("client_peak_gib_by_stage", run.get("peak_rss_gib_by_stage")),
        "worker_peak_gib": run["worker_peak_gib"],
        "ndcg_capped": run["ndcg_capped"],
    }


def sharded_record(preset: str, figures: dict) -> dict:
    """benchmarks/results/dask_sharded.json's entry for one preset: per engine its users, fit rows, client
    and worker peaks, wall time and whether its table is the local engine's."""
    return {engine: sharded_figures(run) for engine, run in figures["runs"].items()} | {
        "machine": figures["machine"],
        "mode": figures["mode"],
    }


def measure(data: Path, name: str, workers: int, part_rows: int) -> dict:
    slug = "dask-" + name.replace(", ", "-").replace(" ", "-")
    cache = ROOT / "artifacts" / f"bench-{slug}-weeks"
    return child_figures(CHILD_CODE, [str(data), str(cache), str(workers), str(part_rows)], slug)


def capacity(figures: dict) -> dict:
    """The full dataset's needs, extrapolated linearly from the 1- and 2-worker runs (and vk's histories per
    user from scale_vk.json); every size not measured is computed from dtypes, as named."""
    from audience.data.metadata_padding import REAL_ITEMS, REAL_USERS

    one, two = figures["runs"]["dask, 1 worker"], figures["runs"]["dask, 2 workers"]
    per_worker = two["rows_per_s_per_worker"]  # end to end: parts, merges, saves, scheduling
    core_hours = FULL_ROWS / per_worker / 3600
    catalog = REAL_ITEMS * (4 * DIM + 4 + 4 + 1 + 1) + REAL_USERS * (4 + 4 + 1 + 1 + 1)  # float32 rows, ids
    working = max(two["worker_peak_rss_gib"]) - two["catalog_broadcast_mib"] / 1024
    week = REAL_USERS * (KINDS * DIM * 4 + KINDS * 8 + 3 * 8)  # float32 sums, float64 totals, counts
    scale = read_json(RESULTS / "scale_vk.json")
    pairs = sum(scale["week_pass"]["history_pairs"].values())
    users = scale["modes"]["validate"]["index"]["users_with_history"]
    return {
        "full_rows": FULL_ROWS,
        "full_gb": FULL_GB,
        "full_users": REAL_USERS,
        "full_clips": REAL_ITEMS,
        "part_rows": two["part_rows"],
        "part_rows_per_core_s": two["part_rows_per_compute_s"],
        "rows_per_s_per_worker": per_worker,
        "scaling_1_to_2": two["rows_per_s"] / (2 * one["rows_per_s"]),
        "aggregation_core_hours": core_hours,
        "hours_on": {workers: core_hours / workers for workers in (16, 64)},
        "catalog_gib": catalog / 2**30,
        "part_working_gib": working,
        "week_aggregate_gib": week / 2**30,
        "worker_gib": catalog / 2**30 + working + 3 * week / 2**30,
        "client_profiles_gib": REAL_USERS * len(PROFILES.kinds) * DIM * 8 / 2**30,
        "pairs_per_user": pairs / users,
        "client_histories_gib": REAL_USERS * pairs / users * 8 / 2**30,  # float32 value + int32 key per pair
        "hnsw_index_gib": REAL_USERS * (4 * DIM + 8 * HnswConfig().m) / 2**30,  # hnswlib: vectors, 2M links
    }


PLAN_WORKER_GIB = 64  # the largest machine the plan allows
PLAN_WORKERS = (8, 16, 64)


def sharded_plan() -> dict:
    """The full dataset on user shards, from measured figures: `vk` submit on 4 user shards (each user's state
    on disk, the workers' peak, the client's peak, the stages' times), the many-users runs (the client's
    growth per user, when both sizes ran) and the week pass (dask_vk.json). Worker memory: the catalog
    broadcast (from dtypes), the working set a `vk` worker needs beyond its users' state (its largest peak
    less its share of that state: parts, blocks and training partitions, which grow with the part size and
    the targets, not the users), then the users'
    state at `vk`'s bytes a user (its most active users: an upper bound) plus each HNSW source's index
    (hnswlib: float32 vectors and 2m links a user). Time: the week pass at its measured per-worker rate; the
    per-shard stages scaled linearly with the users a worker holds (an upper bound: HNSW queries grow with
    the log of the users). Bytes moved: the interactions read once, the weekly aggregates written and read
    once, each source's answers (targets x depth x shards) and the pair features' blocks to the shards and
    back (pool rows x columns, float32), from the `vk` run's sizes."""
    sharded = read_json(RESULTS / "dask_sharded.json")
    aggregation = read_json(RESULTS / "dask_vk.json")["capacity"]
    run = next(r for e, r in sharded["vk_submit"].items() if "user shards" in e)
    per_user = run["shard_state_gib"] * 2**30 / run["users"]
    index_per_user = run["hnsw_sources"] * (4 * DIM + 8 * HnswConfig().m)
    working = run["worker_peak_gib"] - run["shard_state_gib"] / run["workers"]
    catalog = aggregation["catalog_gib"]
    full_users = aggregation["full_users"]
    growth = client_growth(sharded)
    client = run["client_peak_gib"] + max(growth or 0.0, 0.0) * (full_users - run["users"])
    rows = {}
    for workers in PLAN_WORKERS:
        users = full_users / workers
        memory = catalog + working + users * (per_user + index_per_user) / 2**30
        rows[str(workers)] = {
            "users_per_worker": round(users),
            "worker_gib": round(memory, 1),
            "fits": memory <= PLAN_WORKER_GIB,
            "week_pass_h": round(aggregation["aggregation_core_hours"] / workers, 2),
            # the run's stages on cached aggregates, scaled by the users each worker holds
            "stages_h": round(run["wall_s"] * users / (run["users"] / run["workers"]) / 3600, 1),
        }
    return {
        "from": {k: run[k] for k in ("users", "shard_state_gib", "worker_peak_gib", "wall_s", "pool_rows")},
        "full_users": full_users,
        "full_rows": aggregation["full_rows"],
        "state_kib_per_user": round(per_user / 1024, 1),
        "hnsw_kib_per_user": round(index_per_user / 1024, 2),
        "worker_working_gib": round(working, 2),
        "catalog_gib": round(catalog, 2),
        "client_gib_per_million_users": None if growth is None else round(growth * 1e6, 3),
        "client_growth_contrast": growth_contrast(sharded),
        "client_gib": round(client, 1),
        "workers": rows,
        "bytes_moved_gib": {
            "interactions": round(aggregation["full_gb"] * 1e9 / 2**30),
            "weekly_aggregates": round(2 * FULL_WEEKS * aggregation["week_aggregate_gib"]),  # written, read
            "answers_per_shard": round(run["answer_gib_per_shard"], 2),
            # the run's pool to the shards (~25 columns) and back with its features (~75), float32
            "pair_features": round(run["pool_rows"] * 100 * 4 / 2**30),
        },
    }


def _many_users_run(sharded: dict, world: str, on_shards: bool) -> dict | None:
    """`world`'s run on user shards (`on_shards`) or on the local engine, None when not recorded."""
    runs = sharded.get(world, {}).items()
    return next(
        (
            r
            for e, r in runs
            if isinstance(r, dict) and "users" in r and ("user shards" in e if on_shards else e == "local")
        ),
        None,
    )


def client_growth(sharded: dict, on_shards: bool = True, stages: list[str] | None = None) -> float | None:
    """GiB a user adds to the client's peak, the slope between `many-users-half` and `many-users`: on user
    shards (`on_shards`) or on the local engine, the peak over `stages` (default every stage recorded). None
    until both sizes ran."""
    points = []
    for world in ("many-users-half", "many-users"):
        run = _many_users_run(sharded, world, on_shards)
        by_stage = (run or {}).get("client_peak_gib_by_stage") or {}
        peaks = [gib for stage, gib in by_stage.items() if stages is None or stage in stages]
        if not peaks:
            return None
        points.append((run["users"], max(peaks)))
    (u0, p0), (u1, p1) = points
    return (p1 - p0) / (u1 - u0)


def stages_run(run: dict) -> list[str]:
    """A recorded run's stages in pipeline order: those it recorded a client peak for."""
    return [s for s in STAGES if s in run["client_peak_gib_by_stage"]]


def growth_contrast(sharded: dict) -> dict | None:
    """The client's growth (GiB a million users) on the local engine and on user shards over the stages
    the local runs recorded (the sharded runs' peaks restricted to the same stages); None without local
    runs of both many-users sizes."""
    local = _many_users_run(sharded, "many-users", on_shards=False)
    if local is None or _many_users_run(sharded, "many-users-half", on_shards=False) is None:
        return None
    stages = stages_run(local)
    slopes = {
        "local": client_growth(sharded, False, stages),
        "user_shards": client_growth(sharded, True, stages),
    }
    return {"stages": stages} | {k: None if v is None else round(v * 1e6, 3) for k, v in slopes.items()}


def summary(figures: dict) -> str:
    m = figures["machine"]
    runs = figures["runs"]
    lines = [
        f"# Weekly aggregation: Dask engine vs local (`{figures['preset']}`)",
        "",
        f"Machine: {m['date']}, {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB RAM,"
        f" Python {m['python']}.",
        f"Rows: {figures['rows']:,} over {figures['weeks']} train weeks; every configuration in a fresh"
        " process from an empty cache; Dask on a LocalCluster of single-threaded worker processes.",
        "",
    ]
    rows = []
    for name, r in runs.items():
        workers = r["worker_peak_rss_gib"] if r["workers"] else []
        rows.append(
            [
                name,
                str(r["aggregate_s"]),
                f"{r['rows_per_s'] / 1e6:.2f}",
                f"{r['rows_per_s_per_worker'] / 1e6:.2f}" if r["workers"] else "",
                str(r["client_peak_rss_gib"]),
                ", ".join(str(w) for w in workers),
                str(r["index_s"]),
            ]
        )
    lines += table(
        [
            "engine",
            "aggregation s",
            "M rows/s",
            "M rows/s per worker",
            "client peak GiB",
            "worker peaks GiB",
            "index s",
        ],
        rows,
    )
    dask_runs = [r for r in runs.values() if r["workers"]]
    if dask_runs:
        r = dask_runs[-1]
        tasks = ", ".join(
            f"{k} {v['count']} tasks {v['compute_s']} s (max {v['max_s']} s)" for k, v in r["tasks"].items()
        )
        lines += [
            "",
            f"Parts: {r['parts']} of up to {r['part_rows']:,} rows (mean {r['part_rows_mean']:,}); the"
            f" catalog broadcast to each worker: {r['catalog_broadcast_mib']} MiB; per worker memory limit"
            f" {r['worker_memory_gib']} GiB. Tasks ({r['workers']} workers): {tasks}. Aggregation"
            f" compute per part: {r['part_rows_per_compute_s'] / 1e6:.2f} M rows per core-second.",
        ]
    if "capacity" in figures:
        c = figures["capacity"]
        lines += ["", "## Capacity plan for the full dataset (extrapolated)", ""]
        lines += table(["quantity", "value"], [[k, json.dumps(v)] for k, v in c.items()])
    return "\n".join(lines) + "\n"


def pipeline_summary(figures: dict) -> str:
    m, runs = figures["machine"], figures["runs"]
    lines = [
        f"# `audience run --mode {figures['mode']}` on each engine (`{figures['preset']}`)",
        "",
        f"Machine: {m['date']}, {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB RAM,"
        f" Python {m['python']}. One process per engine from empty folders; Dask on a LocalCluster of one"
        f" worker per core. NDCG@100 tables equal to 4 decimals: {figures['tables_equal']}.",
        "",
    ]
    stages = list(next(iter(runs.values()))["stages"])
    rows = [
        [
            engine,
            f"{r['wall_s']:.0f}",
            f"{r['peak_rss_gib']:.1f}",
            "" if r.get("worker_peak_gib") is None else f"{r['worker_peak_gib']:.1f}",
            f"{r['ndcg_capped']['reranked']:.4f}",
        ]
        + [f"{r['stages'].get(s, 0):.0f}" for s in stages]
        for engine, r in runs.items()
    ]
    headers = ["engine", "wall s", "client peak GiB", "worker peak GiB", "reranked"]
    lines += table([*headers, *[f"{s} s" for s in stages]], rows)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="vk")
    parser.add_argument("--part-rows", type=int, default=8_000_000)
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS), help="measure only these configurations")
    parser.add_argument("--report", action="store_true", help="rewrite the md from the json")
    parser.add_argument(
        "--pipeline", action="store_true", help="time `audience run` (validate) on each engine instead"
    )
    parser.add_argument(
        "--user-shards", type=int, default=0, help="--pipeline: also run Dask with this many user shards"
    )
    parser.add_argument(
        "--mode", choices=["validate", "submit"], default="validate", help="--pipeline's mode"
    )
    parser.add_argument(
        "--no-plain-dask", action="store_true", help="--pipeline with --user-shards: skip Dask without shards"
    )
    parser.add_argument(
        "--record",
        nargs=2,
        metavar=("RUN_DIR", "ENGINE"),
        help="add a run made by hand (`audience run ...`) to dask_sharded.json as ENGINE (e.g. 'dask, 4 user"
        " shards') under the preset and --mode; its wall time is its stages' sum",
    )
    parser.add_argument(
        "--cached-aggregates", action="store_true", help="--record: the run found its week aggregates built"
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="write dask_sharded_plan.json: the full dataset on user shards, from the recorded runs",
    )
    parser.add_argument("--note", help="--record: how the run was made (shown beside its wall time)")
    args = parser.parse_args()
    if args.plan:
        write_json(RESULTS / "dask_sharded_plan.json", sharded_plan())
        return
    if args.record:
        record_run(
            Path(args.record[0]), args.record[1], args.preset, args.mode, args.cached_aggregates, args.note
        )
        return
    if args.pipeline:
        figures = {
            "preset": args.preset,
            "machine": machine(),
            **pipeline(data_dir(args.preset), args.mode, args.user_shards, not args.no_plain_dask),
        }
        suffix = "" if args.mode == "validate" else f"_{args.mode}"
        # without the plain Dask run, the file of a run that had one is kept
        shards = "_sharded" if args.user_shards and args.no_plain_dask else ""
        stem = RESULTS / f"dask_pipeline_{args.preset}{suffix}{shards}"
        publish(stem, figures, pipeline_summary(figures))
        if args.user_shards:
            path = RESULTS / "dask_sharded.json"
            sharded = read_json(path) if path.is_file() else {}
            sharded[f"{args.preset}{suffix}"] = sharded_record(args.preset, figures)
            write_json(path, sharded)
        return
    stem = RESULTS / f"dask_{args.preset}"
    if args.report:
        figures = read_json(stem.with_suffix(".json"))
        figures["capacity"] = capacity(figures)
        write_json(stem.with_suffix(".json"), figures)
        write_atomic(stem.with_suffix(".md"), summary(figures))
        return
    data = data_dir(args.preset)
    if not (data / "metadata" / "items_metadata.parquet").is_file():
        raise SystemExit(
            f"{data}: generate it first (python scripts/01_synthetic_data.py --preset {args.preset})"
        )
    old = read_json(stem.with_suffix(".json")) if stem.with_suffix(".json").is_file() else {"runs": {}}
    figures = {"preset": args.preset, "machine": machine(), "runs": dict(old.get("runs", {}))}
    for name, workers in CONFIGS.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        figures["runs"][name] = measure(data, name, workers, args.part_rows)
        figures["rows"], figures["weeks"] = figures["runs"][name]["rows"], figures["runs"][name]["weeks"]
        if {"dask, 1 worker", "dask, 2 workers"} <= set(figures["runs"]):
            figures["capacity"] = capacity(figures)
        publish(stem, figures, summary(figures))


if __name__ == "__main__":
    main()
