"""Rewrite the generated blocks of the README and docs/ from the committed result files (`make docs`).

A block is the text between `<!-- figures:NAME -->` and `<!-- /figures:NAME -->`; `BLOCKS` maps each NAME
to a function that returns the block's lines, read from files under the repository (benchmarks/results/,
reports/). To add one: write `def block_x(root) -> list[str]`, register it in `BLOCKS`, and put the two
markers in README.md. `--check` writes nothing and exits 1 when the README differs from what it would write
(tests/test_docs.py runs it). Every figure comes from a file; none is typed here.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from audience.config import STAGES  # noqa: E402
from audience.markdown import fmt, fmt_duration, parse_table, table  # noqa: E402

README = ROOT / "README.md"
DOC_PAGES = ("figures", "results", "scale", "engine", "shapes", "models")  # docs/<name>.md
PAGES = (README, *(ROOT / "docs" / f"{name}.md" for name in DOC_PAGES))  # the pages `make docs` rewrites
RESULTS = ROOT / "benchmarks" / "results"
WIDTH = 180  # generated prose wraps here (the README allows 200)
ANN_EF = 256  # the pipeline's query ef (HnswConfig.ef): the row shown per index
MARKER = re.compile(r"(<!-- figures:([\w-]+) -->\n)(.*?)(<!-- /figures:\2 -->)", re.S)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def machine_text(m: dict) -> str:
    return f"{m['date']}, {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB RAM, Python {m['python']}"


def prose(text: str, bullet: bool = False) -> list[str]:
    """`text` wrapped to the README's width (a '* ' bullet when asked)."""
    if bullet:
        return textwrap.wrap(text, WIDTH, initial_indent="* ", subsequent_indent="  ", break_on_hyphens=False)
    return textwrap.wrap(text, WIDTH, break_on_hyphens=False)


def share(value: float, whole: float) -> str:
    return f"{100 * value / whole:.0f}%"


def block_demo(root: Path) -> list[str]:
    """The validate run of `make demo` (synthetic small): every method's NDCG and pool recall, from the record
    `reports/record_run.py` writes of a run folder."""
    path = root / "reports" / "results" / "synthetic-small-validate.json"
    res = read_json(path)
    rows = sorted(res["methods"], key=lambda r: -r.get("ndcg_capped", -1.0))
    oracle = next(r["ndcg_capped"] for r in rows if r["method"] == "oracle")
    final = next(r for r in rows if r["method"] == res["final_method"])

    def cell(row: dict, key: str) -> str:
        return f"{row[key]:.4f}" if isinstance(row.get(key), float) else ""

    body = [
        [
            f"**{r['method']} (final)**" if r["method"] == res["final_method"] else r["method"],
            *(cell(r, k) for k in ("ndcg_capped", "cap_cost", "recall@100", "recall@300")),
        ]
        for r in rows
    ]
    walls = res["stage_wall_s"]
    stages = ", ".join(f"{k} {walls[k]:.0f} s" for k in STAGES if walls.get(k, 0) >= 0.5)
    return [
        *table(["method", "NDCG@100", "cap cost", "recall@100", "recall@300"], body),
        "",
        *prose(
            f"Validate mode, {res['n_targets']:,} target clips"
            f" ({res['n_targets_with_positives']:,} with positives);"
            f" NDCG@100 after the cap, cap cost = uncapped - capped. The final method reaches"
            f" {share(final['ndcg_capped'], oracle)} of the oracle. Measured {machine_text(res['machine'])},"
            f" code {res['commit']}: `{res['command']}`; stage wall times {stages}"
            f" (`{path.relative_to(root)}`).",
        ),
    ]


def block_assignment(root: Path) -> list[str]:
    """NDCG@100 of the same candidates under each assignment strategy."""
    path = root / "benchmarks" / "results" / "assignment_ablation-small-validate.md"
    text = path.read_text()
    rows = {r["method"]: r for r in parse_table(text)}
    methods = [m for m in ("popular", "author_fans", "blend", "mixigen", "quota", "reranked") if m in rows]
    strategies = [h.split()[0] for h in next(iter(rows.values())) if h.endswith("NDCG@100")]
    body = [[s, *(rows[m][f"{s} NDCG@100"] for m in methods)] for s in strategies]
    machine = next(line for line in text.splitlines() if line.startswith("Machine:"))
    return [
        *table(["strategy", *methods], body),
        "",
        *prose(
            "NDCG@100 after the cap on synthetic `small`, validate mode, the same candidates re-assigned;"
            " the"
            f" oracle (drafted by slots) {rows['oracle']['slots NDCG@100']}. {machine}"
            f" (`{path.relative_to(root)}`, `benchmarks/bench_assignment.py`)."
        ),
    ]


def ndcg(row: dict[str, str]) -> float:
    return float(row["NDCG@100"])


def block_ranking(root: Path) -> list[str]:
    """What each ranking stage earns on small and medium (reports/ranking_<dataset>.md)."""
    stages = ("author_fans", "blend", "quota", "mixigen", "reranked", "oracle")
    tables = {}
    for preset in ("small", "medium"):
        path = root / "reports" / f"ranking_synthetic-{preset}.md"
        if path.is_file():
            tables[preset] = {r["method"]: r for r in parse_table(path.read_text())}
    body = []
    for method in stages:
        first = next(t[method] for t in tables.values() if method in t)
        if first["stage"] == "single source":
            best = {
                name: max((r for r in t.values() if r["stage"] == "single source"), key=ndcg)
                for name, t in tables.items()
            }
            first = {
                **first,
                "stage": f"best single source ({', '.join(sorted({r['method'] for r in best.values()}))})",
            }
            cells = [c for r in best.values() for c in (r["NDCG@100"], r["share of oracle"])]
            body.append([first["stage"], *cells, first["verdict"]])
            continue
        cells = []
        for t in tables.values():
            row = t.get(method, {})
            cells += [row.get("NDCG@100", ""), row.get("share of oracle", "")]
        body.append([first["stage"], *cells, first["verdict"]])
    header = ["stage"] + [f"{p} {c}" for p in tables for c in ("NDCG@100", "share of oracle")] + ["verdict"]
    return [
        *table(header, body, "l" + "r" * (len(header) - 2) + "l"),
        "",
        *prose(
            "NDCG@100 after the cap, validate mode; each stage against the best before it"
            f" ({', '.join(f'`reports/ranking_synthetic-{p}.md`' for p in tables)}); medium:"
            " `configs/competition.toml` on db97de2's code (before the run index and label-week protocol)."
        ),
    ]


PEERS = (  # (ours, peer) rows of the CF benchmark, by their labels in the json
    ("EASE Cholesky (top 10000)", "EASE np.linalg.inv (top 10000)"),
    ("SLIM numba (top 2000, tol 1e-6)", "SLIM sklearn (top 2000, tol 1e-6)"),
    ("BPR uniform", "implicit 0.7.3 BPR"),
    ("BPR uniform", "implicit 0.7.3 ALS"),
)


def block_models(root: Path) -> list[str]:
    """User -> clips CF models against their peers, and the rankers, on medium."""
    cf_path, rank_path = RESULTS / "cf_models_medium.json", RESULTS / "rankers_medium.json"
    cf, rankers = read_json(cf_path), read_json(rank_path)
    rows = {r["model"]: r for r in cf["rows"] if r.get("status") == "ok"}
    body = [
        [
            ours,
            peer,
            fmt(rows[ours]["fit_s"]),
            fmt(rows[peer]["fit_s"]),
            f"{rows[ours]['recall@50']:.4f}",
            f"{rows[peer]['recall@50']:.4f}",
        ]
        for ours, peer in PEERS
        if ours in rows and peer in rows
    ]
    results = rankers["results"]
    return [
        *table(["ours", "peer", "fit s", "peer fit s", "recall@50", "peer recall@50"], body, "llrrrr"),
        "",
        *prose(
            "Synthetic medium, one thread; recall@50 of user -> clips on the validation week."
            " The tuned quota scored"
            f" {results['quota']['ndcg_capped']:.4f}, its search took"
            f" {fmt_duration(rankers['quota']['tune_s'])}. Measured {machine_text(cf['machine'])}"
            f" (`{cf_path.relative_to(root)}`, `{rank_path.relative_to(root)}`;"
            " every model in `benchmarks/results.md`). " + ann_sentence(root)
        ),
    ]


def ann_sentence(root: Path) -> str:
    """hnswlib and voyager against exact search at the pipeline's query ef, on medium, as one sentence."""
    path = RESULTS / "ann_medium.json"
    figs = read_json(path)
    parts = []
    for r in figs["rows"]:
        if r["ef"] is None:
            parts.append(f"exact search {fmt(r['qps'])} queries/s")
        elif r["ef"] == ANN_EF:
            recall, qps, build = f"{r['recall']:.4f}", fmt(r["qps"]), fmt(r["build_s"])
            parts.append(f"{r['index']} recall@100 {recall} at {qps} queries/s, built in {build} s")
    return (
        f"ANN over {figs['users']:,} users' positive profiles (medium; k=100, ef {ANN_EF}, one thread): "
        + "; ".join(parts)
        + f"; measured {machine_text(figs['machine'])} (`{path.relative_to(root)}`; every ef in its .md)."
    )


def block_global_metadata(root: Path) -> list[str]:
    """`small` with metadata of the real global size against `small` as generated
    (benchmarks/bench_global_metadata.py)."""
    path = RESULTS / "global_metadata_small.json"
    figs = read_json(path)
    body = []
    for mode, row in figs["comparison"].items():
        body.append(
            [
                mode,
                f"{row['plain_s']:,.0f} / {row['global_s']:,.0f}",
                f"{row['plain_cpu_s']:,.0f} / {row['global_cpu_s']:,.0f} ({row['extra_cpu_s']:+,.0f})",
                f"{row['plain_peak_gib']:.2f} / {row['global_peak_gib']:.2f}",
                "identical" if row["identical_results"] else "DIFFERENT",
            ]
        )
    meta, pad = figs["metadata"], figs["padding"]
    header = ["mode", "wall s", "CPU s (extra)", "peak GiB", "results table"]
    return [
        *table(header, body, "lrrrl"),
        "",
        *prose(
            "Each cell: as generated / metadata padded to"
            f" {meta['users']:,} users and {meta['items']:,} clips; every stage in a fresh process,"
            " wall and CPU time summed over the stages, peak RSS of the largest."
            f" Padding took {pad['wall_s']:.0f} s. Measured {machine_text(figs['machine'])}"
            f" (`{path.relative_to(root)}`; per stage in its .md)."
        ),
    ]


DECOMPOSITION = (
    ("oracle_uncapped", "oracle"),
    ("oracle_capped", "oracle capped"),
    ("pool_ceiling_uncapped", "pool ceiling"),
    ("pool_ceiling_capped", "pool ceiling capped"),
    ("ranking_uncapped", "our ranking"),
    ("assignment_bound", "assignment bound"),
    ("final_capped", "final capped"),
)


def decomposition_rows(modes: dict) -> list[str]:
    """Where the gap to the oracle goes, one row per mode that measured it (NDCG@100; the assignment's gap
    to its Lagrangian bound in our scores' expected gain)."""
    runs = {mode: run["decomposition"] for mode, run in modes.items() if run.get("decomposition")}
    if not runs:
        return []
    header = ["mode", *(label for _, label in DECOMPOSITION), "assignment gap to bound"]
    body = [
        [mode, *(fmt(d.get(key), 3) for key, _ in DECOMPOSITION), f"{100 * d['assignment_gap']:.2f}%"]
        for mode, d in runs.items()
    ]
    return [
        *table(header, body, "l" + "r" * 8),
        "",
        *prose(
            "Where the gap to the oracle goes (NDCG@100; uncapped unless said): the pool ceiling is the"
            " oracle's order within our pool, the assignment bound our capped lists scaled to the Lagrangian"
            " bound on our scores' expected gain (`matching.py`)."
        ),
        "",
    ]


def block_scale(root: Path) -> list[str]:
    """The `vk` workload end to end: the week pass and each mode's wall time and peak RSS
    (benchmarks/bench_scale_vk.py)."""
    path = RESULTS / "scale_vk.json"
    figs = read_json(path)
    wp = figs["week_pass"]
    body = []
    for mode, run in figs["modes"].items():
        stages = run["stages"]
        total = sum(s["wall_s"] for s in stages.values())
        slowest = max(stages, key=lambda k: stages[k]["wall_s"])
        score = (
            f"{run['ndcg_capped']:.4f}" if "ndcg_capped" in run else f"stopped in {run['failed']['stage']}"
        )
        if run.get("oracle"):
            score += f" ({share(run['ndcg_capped'], run['oracle'])} of the oracle)"
        if run.get("code"):  # a mode measured on other code than the file's other modes
            score += f"; code {run['code']}"
        if run.get("rerun"):  # some stages measured again on later code (bench_scale_vk.py --stages)
            score += f"; {', '.join(run['rerun']['stages'])} rerun on {run['rerun']['code']}"
        body.append(
            [
                mode,
                f"{total / 60:.1f}",
                f"{slowest} {stages[slowest]['wall_s'] / 60:.1f}",
                f"{max(s['peak_rss_gib'] for s in stages.values()):.1f}",
                score,
            ]
        )
    header = ["mode", "wall min", "slowest stage (min)", "peak GiB", "NDCG@100 of the final method"]
    wp_machine = wp.get("machine", figs["machine"])
    return [
        *table(header, body, "lrlrl"),
        "",
        *decomposition_rows(figs["modes"]),
        *prose(
            f"`vk`: {figs['rows']:,} train rows over {wp['weeks']} weeks, metadata of the global size;"
            f" generated in {figs['generation_s'] / 60:.0f} min. **Week pass**"
            f" {wp['week_pass_rows_per_s'] / 1e6:.1f} M rows/s ({wp['week_pass_s']:.0f} s, peak"
            f" {wp['child']['peak_rss_gib']:.1f} GiB; a numba scatter-add of the embedding rows alone, one"
            f" thread: {wp['scatter_reference_rows_per_s'] / 1e6:.1f} M rows/s"
            + ("" if wp_machine == figs["machine"] else f", measured {machine_text(wp_machine)}")
            + "); the modes reuse its aggregates, every stage in a fresh process. Measured"
            f" {machine_text(figs['machine'])} (`{path.relative_to(root)}`; per stage in its .md)."
        ),
    ]


def pipeline_sentence(root: Path) -> str:
    """`audience run` end to end on each engine (benchmarks/bench_dask.py --pipeline), when measured."""
    path = RESULTS / "dask_pipeline_vk-small.json"
    if not path.is_file():
        return ""
    figs = read_json(path)
    local, dask = figs["runs"]["local"], figs["runs"]["dask"]
    differ = [
        m
        for m in local["ndcg_capped"]
        if round(local["ndcg_capped"][m], 4) != round(dask["ndcg_capped"][m], 4)
    ]
    same = ", ".join(
        f"{m} {dask['ndcg_capped'][m]:.4f} against {local['ndcg_capped'][m]:.4f}" for m in differ
    )
    return (
        f" End to end (`audience run`, {figs['mode']}, `{figs['preset']}`):"
        f" local {local['wall_s'] / 60:.1f} min, Dask {dask['wall_s'] / 60:.1f} min; "
        + (f"every other method's NDCG@100 identical, {same}" if differ else "identical NDCG@100 tables")
        + f" (`{path.relative_to(root)}`)."
    )


def _some_stages(run: dict) -> bool:
    """Whether a recorded run ran only some of the stages (`audience run --stages`): its peaks by stage
    name fewer than every stage."""
    return len(run.get("client_peak_gib_by_stage") or STAGES) < len(STAGES)


def block_sharded(root: Path) -> list[str]:
    """`audience run` with user shards beside the other engines (benchmarks/results/dask_sharded.json): per
    world and engine the wall time, the client's peak (and its stage) and the workers' peak."""
    path = RESULTS / "dask_sharded.json"
    if not path.is_file():
        return []
    body = []
    for world, entry in read_json(path).items():
        for engine, r in entry.items():
            if not isinstance(r, dict) or "wall_s" not in r:
                continue
            by_stage = r.get("client_peak_gib_by_stage") or {}
            where = f" ({max(by_stage, key=by_stage.get)})" if by_stage else ""
            body.append(
                [
                    f"`{world.removesuffix('_' + entry['mode'])}` ({entry['mode']})",
                    engine,
                    f"{r['users']:,}",
                    f"{r['rows'] / 1e6:,.0f} M",
                    f"{r['wall_s'] / 60:.1f}"
                    + (
                        f" ({' and '.join(s for s in STAGES if s in by_stage)} only)"
                        if _some_stages(r)
                        else ""
                    )
                    + (" (aggregates cached)" if r.get("cached_aggregates") else "")
                    + (f" ({r['note']})" if r.get("note") else ""),
                    f"{r['client_peak_gib']:.1f}{where}",
                    "" if r.get("worker_peak_gib") is None else f"{r['worker_peak_gib']:.1f}",
                    "(no table)"
                    if _some_stages(r)
                    else {True: "yes", False: ", ".join(r.get("differs") or []), None: "(no local run)"}[
                        r.get("identical")
                    ],
                ]
            )
    header = [
        "world",
        "engine",
        "users",
        "fit rows",
        "wall min",
        "client peak GiB",
        "workers' GiB",
        "as local",
    ]
    machines = {machine_text(e["machine"]) for e in read_json(path).values()}
    stages = [
        f"`{world.removesuffix('_' + entry['mode'])}` {entry['mode']} with {engine}: "
        + ", ".join(f"{stage} {gib:.1f}" for stage, gib in r["client_peak_gib_by_stage"].items())
        for world, entry in read_json(path).items()
        for engine, r in entry.items()
        if isinstance(r, dict)
        and ("user shards" in engine or _some_stages(r))
        and r.get("client_peak_gib_by_stage")
    ]
    return [
        *table(header, body, "llrrrlrl"),
        "",
        *prose(
            "Each run from an empty run folder and, unless said, an empty aggregate cache (the week pass"
            " included), the client's peak the"
            " largest of its stages'; 'as local' lists the methods whose NDCG@100 differs from the local"
            " engine's run on the same data (HNSW indexes are one per shard). Measured "
            + "; ".join(sorted(machines))
            + f" (`{path.relative_to(root)}`). The client's peak by stage (GiB; one process runs every"
            " stage, so a stage's peak includes what earlier stages left resident): "
            + "; ".join(stages)
            + "."
        ),
    ]


def _client_growth_text(growth: float | None) -> str:
    """How the plan's client peak was derived from the many-users runs' slope (GiB a million users)."""
    if growth is None:
        return "the `vk` run's peak; the many-users runs not yet recorded"
    slope = (
        f"the slope of the client's peak from `many-users-half` to `many-users`, {growth:.2f} GiB a million"
        " users"
    )
    if growth <= 0:
        return f"the `vk` run's peak: it does not grow with the users, {slope}"
    return f"the `vk` run's peak plus {slope}, extrapolated linearly"


def _contrast_text(contrast: dict | None) -> str:
    """The plan's sentence on the client's growth with the users, local engine against user shards."""
    if not contrast:
        return ""
    local, shards = contrast["local"], contrast["user_shards"]
    return (
        f"; over the stages the local engine ran on both many-users sizes ({', '.join(contrast['stages'])}),"
        f" its client grows {local:.2f} GiB a million users, the sharded client {shards:.2f}"
    )


def block_sharded_plan(root: Path) -> list[str]:
    """The full dataset on user shards (benchmarks/results/dask_sharded_plan.json, bench_dask.py --plan): per
    worker count the users a worker holds, its memory and the hours, then the client and the bytes moved."""
    path = RESULTS / "dask_sharded_plan.json"
    if not path.is_file():
        return []
    plan = read_json(path)
    body = [
        [
            workers,
            f"{w['users_per_worker']:,}",
            f"{w['worker_gib']:.0f}" + ("" if w["fits"] else " (over 64)"),
            f"{w['week_pass_h']:.2f}",
            f"{w['stages_h']:.1f}",
        ]
        for workers, w in plan["workers"].items()
    ]
    header = ["workers", "users each", "worker GiB", "week pass h", "other stages h (upper bound)"]
    moved = plan["bytes_moved_gib"]
    growth = plan["client_gib_per_million_users"]
    source = plan["from"]
    return [
        *table(header, body, "rrrrr"),
        "",
        *prose(
            f"From the `vk` submit run on 4 user shards ({source['users']:,} users, their state"
            f" {source['shard_state_gib']:.1f} GiB on disk: {plan['state_kib_per_user']:.1f} KiB a user,"
            " the most active users' density, an upper bound for the full data's), for"
            f" {plan['full_users']:,} users and {plan['full_rows'] / 1e9:.1f} B rows: a worker holds the"
            f" catalog ({plan['catalog_gib']:.1f} GiB, from its dtypes), a working set of"
            f" {plan['worker_working_gib']:.1f} GiB (the `vk` workers' largest peak, in the week pass, less"
            " a worker's share of the users' state: parts, blocks and training partitions, which grow with"
            " the part size and the targets, not the users), and its users' state plus"
            f" each HNSW source's index ({plan['hnsw_kib_per_user']:.2f} KiB a user). The week pass runs at"
            " the measured per-worker rate; the other stages are the `vk` run's recorded stage times (the"
            " week pass and shared cores included) scaled linearly with the users a worker holds (HNSW"
            " queries grow more slowly). The client holds the pools, bounded by the targets, and what"
            f" grows with the users: {plan['client_gib']:.1f} GiB at the full size ("
            + _client_growth_text(growth)
            + ")"
            + _contrast_text(plan.get("client_growth_contrast"))
            + f". Bytes moved: the interactions once ({moved['interactions']:,} GiB), the weekly"
            f" aggregates written and read once ({moved['weekly_aggregates']:,} GiB), each source's answers"
            f" ({moved['answers_per_shard']:.1f} GiB a shard) and the pool's pair-feature blocks to the"
            f" shards and back ({moved['pair_features']:,} GiB). Derived by"
            f" `benchmarks/bench_dask.py --plan` (`{path.relative_to(root)}`)."
        ),
    ]


def block_engine_summary(root: Path) -> list[str]:
    """The README's engine figures: the client's and the workers' peaks on user shards for `vk` submit and
    both many-users sizes, and the full dataset's plan (dask_sharded.json, dask_sharded_plan.json)."""
    sharded_path, plan_path = RESULTS / "dask_sharded.json", RESULTS / "dask_sharded_plan.json"
    if not (sharded_path.is_file() and plan_path.is_file()):
        return []
    sharded, plan = read_json(sharded_path), read_json(plan_path)
    runs = []
    for world in ("vk_submit", "many-users-half", "many-users"):
        entry = sharded.get(world, {})
        engine, run = next(((e, r) for e, r in entry.items() if "user shards" in e), (None, None))
        if run is not None:
            runs.append(
                f"`{world.replace('_', ' ')}` ({run['users']:,} users, {engine}): client"
                f" {run['client_peak_gib']:.1f} GiB, workers at most {run['worker_peak_gib']:.1f}"
            )
    fits = [w for w, row in plan["workers"].items() if row["fits"]]
    smallest = min(fits, key=int) if fits else None
    users, rows = plan["full_users"] / 1e6, plan["full_rows"] / 1e9
    planned = (
        f"the plan for the full dataset ({users:.0f} M users, {rows:.1f} B rows) fits {smallest} workers of"
        f" {plan['workers'][smallest]['worker_gib']:.0f} GiB (the fewest it lists) and a client of"
        f" {plan['client_gib']:.1f} GiB"
        if smallest
        else "no plan fits 64 GiB workers"
    )
    machines = "; ".join(
        sorted({machine_text(sharded[w]["machine"]) for w in sharded if "machine" in sharded[w]})
    )
    return prose(f"Peak memory on user shards: {'; '.join(runs)}; {planned}. Measured on {machines}.")


def block_dask(root: Path) -> list[str]:
    """The weekly aggregation on the Dask engine beside the local engine, and the capacity plan for the full
    dataset derived from it (benchmarks/bench_dask.py)."""
    path = RESULTS / "dask_vk.json"
    figs = read_json(path)
    body = []
    for name, r in figs["runs"].items():
        workers = ", ".join(f"{w:.1f}" for w in r.get("worker_peak_rss_gib", []))
        body.append(
            [
                name,
                f"{r['aggregate_s']:.0f}",
                f"{r['rows_per_s'] / 1e6:.2f}",
                f"{r['rows_per_s_per_worker'] / 1e6:.2f}" if r["workers"] else "",
                f"{r['client_peak_rss_gib']:.1f}" + (f" / {workers}" if workers else ""),
            ]
        )
    header = [
        "engine (`vk`, 25 weeks)",
        "aggregation s",
        "M rows/s",
        "per worker",
        "peak GiB (client / workers)",
    ]
    c = figs["capacity"]
    hours = ", ".join(f"{h * 60:.0f} min on {w} workers" for w, h in c["hours_on"].items())
    return [
        *table(header, body, "lrrrl"),
        "",
        *prose(
            f"{figs['rows']:,} rows, every configuration from an empty cache in a fresh process; parts of"
            f" {c['part_rows']:,} rows; aggregation compute {c['part_rows_per_core_s'] / 1e6:.1f} M rows per"
            f" core-second per part; 1 -> 2 workers scale {c['scaling_1_to_2']:.0%}. Measured"
            f" {machine_text(figs['machine'])} (`{path.relative_to(root)}`; tasks and broadcasts in its .md)."
            + pipeline_sentence(root)
        ),
        "",
        *prose(
            "**Capacity plan for the full dataset**"
            f" ({c['full_rows'] / 1e9:.1f} B rows, {c['full_users']:,} users, {c['full_clips']:,} clips),"
            " extrapolated linearly from the figures above: the aggregation is"
            f" {c['aggregation_core_hours']:.0f} worker-hours at the measured per-worker rate ({hours}), plus"
            f" reading {c['full_gb']:.0f} GB from where it lives; each worker holds the catalog"
            f" ({c['catalog_gib']:.1f} GiB broadcast, from its dtypes), a part's working set"
            f" ({c['part_working_gib']:.1f} GiB: a `vk` worker's peak less the catalog) and, at the top"
            " of a week's merge tree with"
            " `merge_fan_in = 2`, three whole-week aggregates"
            f" ({c['week_aggregate_gib']:.1f} GiB each if every user is active): workers of"
            f" {c['worker_gib']:.0f} GiB. The client's split state is the limit:"
            f" profiles {c['client_profiles_gib']:.0f} GiB (float64 sums of 5 kinds) and histories up to"
            f" {c['client_histories_gib']:.0f} GiB at `vk`'s {c['pairs_per_user']:,.0f} pairs a user (the"
            " most active 1 %: an upper bound); that is beyond one machine of this size. Combining by"
            " user shards is the way out: with `[dask] user_shards = N` (`--user-shards N`), the profiles"
            " stage has each worker combine one shard's users from the memory-mapped aggregates"
            " (`fit_from_aggregates(..., shard=)`, tested bit for bit against the whole split) and save"
            " them beside the run, and the client keeps the counts alone. Every source that splits by user"
            " is fitted and answered per shard and the client merges clips x k x N answers"
            " (`candidates/sharded.py`): exact search, author fans and co-engagement give the local"
            " engine's lists, HNSW and reach build one index per shard (approximate as the global index"
            " is). The rank stage's pair features read each user's state on its shard and the author"
            " tables and similar-author neighbours are added over the shards (`rank/sharded_features.py`:"
            " the same features, and the same table on tiny, with 1, 2 or 3 shards). BPR learns the most"
            " engaged users up to `max_positives` and is trained, and asked, on a worker, from the rows the"
            " shards send it. Still on the"
            " client: the opt-in first stage, which gathers every shard's fit data; the reranker's sampled"
            " training rows (read block by block into one float32 matrix, each seed's split made in place)"
            " and its"
            " prediction by blocks of clips; the assignment's pools, one method at a time, as a CSR of about"
            " 16 bytes a pair (measured below)."
            " Candidates and training do not grow with"
            " the rows: the 47,765 targets and their pools are `vk`'s; each profile's HNSW index over"
            f" 10 M users, broadcast to every worker, is {c['hnsw_index_gib']:.1f} GiB."
        ),
    ]


NOT_SOURCES = ("oracle", "reranked", "blend", "quota", "mixigen", "union of sources")


def block_shapes(root: Path) -> list[str]:
    """The default against the best single source (and, on small, the RRF blend) on each data shape, on
    small and medium (reports/shapes_report.py; a variant not run on medium is left blank)."""
    paths = {name: root / "reports" / f"shapes_{name}.json" for name in ("small", "medium")}
    figs = {name: read_json(path) for name, path in paths.items() if path.is_file()}

    def cells(name: str, shape: str, variant: str, key: str, blend: bool) -> list[str]:
        runs = figs.get(name, {}).get("shapes", {}).get(shape, {})
        if variant not in runs:
            return ["", ""] + ([""] if blend else [])
        methods = runs[variant]["methods"]
        sources = {m: r[key] for m, r in methods.items() if m not in NOT_SOURCES and key in r}
        best = max(sources, key=sources.get)
        found = [f"{methods['reranked'][key]:.4f}", f"{sources[best]:.4f} {best}"]
        return found + ([f"{methods['blend'][key]:.4f}"] if blend else [])

    variants = [
        ("rolling (new clips every week), protocol new: the default", "rolling", "new", "ndcg_capped"),
        ("rolling, new + pseudo-new clips", "rolling", "both", "ndcg_capped"),
        ("rolling, pseudo-new clips only", "rolling", "pseudo", "ndcg_capped"),
        (
            "stocked (no new clip in a train week), validate: falls back to pseudo-new",
            "stocked",
            "new->pseudo",
            "ndcg_capped",
        ),
        ("stocked, submit: the validation week's new clips", "stocked", "submit-new", "ndcg_capped"),
        ("warm targets mixed in: the cold group", "warm", "exclude", "ndcg_capped_cold"),
        ("warm targets mixed in: the warm group", "warm", "exclude", "ndcg_capped_warm"),
        ("warm group without the seen-user exclusion", "warm", "neither", "ndcg_capped_warm"),
        ("warm group with the own_audience source added", "warm", "exclude+own", "ndcg_capped_warm"),
    ]
    rows = [
        [label, *cells("small", *where, True), *cells("medium", *where, False)] for label, *where in variants
    ]
    header = [
        "shape, variant",
        "small: default",
        "best single source",
        "RRF blend",
        "medium: default",
        "best",
    ]
    machines = "; ".join(f"{name} {f['machine']}" for name, f in figs.items())
    files = ", ".join(f"`{p.relative_to(root)}`" for name, p in paths.items() if name in figs)
    return [
        *table(header, rows, "lrrrrr"),
        "",
        *prose(
            "NDCG@100 after the cap, synthetic data, validate mode unless said; the default is the reranked"
            f" list. Measured: {machines} ({files}; every method, the protocol used and wall times in"
            " their .md)."
        ),
    ]


BLOCKS: dict[str, Callable[[Path], list[str]]] = {
    "demo": block_demo,
    "assignment": block_assignment,
    "ranking": block_ranking,
    "models": block_models,
    "global-metadata": block_global_metadata,
    "shapes": block_shapes,
    "scale": block_scale,
    "dask": block_dask,
    "sharded": block_sharded,
    "sharded-plan": block_sharded_plan,
    "engine-summary": block_engine_summary,
}


def render(text: str, root: Path = ROOT) -> str:
    """`text` with every marked block rewritten; an unknown block name is an error."""

    def fill(match: re.Match) -> str:
        name = match.group(2)
        if name not in BLOCKS:
            raise KeyError(f"README block {name!r} has no generator; known: {sorted(BLOCKS)}")
        return match.group(1) + "\n".join(BLOCKS[name](root)) + "\n" + match.group(4)

    return MARKER.sub(fill, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a page is not up to date")
    args = parser.parse_args()
    stale = []
    for page in PAGES:
        current = page.read_text()
        wanted = render(current)
        if wanted == current:
            continue
        stale.append(page.relative_to(ROOT))
        if not args.check:
            tmp = page.with_suffix(".md.tmp")
            tmp.write_text(wanted)
            tmp.replace(page)
            print(f"{page.relative_to(ROOT)}: generated blocks rewritten")
    if args.check and stale:
        print(f"{', '.join(map(str, stale))} out of date: run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
