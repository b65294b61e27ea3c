"""The benchmark suite in one run: every clip -> users generator and every user -> clips CF model at each
preset, the peers beside them, one report (benchmarks/results.md) and its plots (benchmarks/results/*.png).

    python benchmarks/report.py --presets "tiny small medium" [--timeout 600]   # what `make bench` runs
    python benchmarks/report.py --presets "tiny small medium" --collect-only    # re-render from the json

Per preset (its synthetic data is generated first when missing), each benchmark runs as its own process:

* bench_generators.py --preset P: every clip -> users generator (fit, stored size, latency, throughput,
  NDCG@100, recall@300), each generator in a child process limited to --timeout seconds;
* bench_ann.py --preset P: hnswlib vs voyager vs exact search on that run's positive profiles;
* bench_cf_models.py --preset P: EASE (Cholesky and np.linalg.inv), SLIM (numba and scikit-learn), BPR
  (three samplers) and implicit's BPR and ALS, each model in a child process limited to --timeout seconds;
* bench_rankers.py --preset P: the validate pipeline with the learned blend (MixiGen, the tuned quota, the
  XGBoost reranker, their holdout runs built from scratch), limited to --ranker-timeout seconds;

then once: bench_profiles.py --preset tiny --no-table --loop-vs-vectorized (the notebook's loop against the
profiles stage) and bench_ndcg.py (metric and assignment at challenge scale). Each writes its own md/json
under benchmarks/results/; this script reads those json files and writes results.md atomically. Every
figure in it comes from the json files of the presets named, and a benchmark that failed or ran out of
time is reported as such (no figure is carried over from another run)."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, machine_line
from _suite import (
    GENERATOR_COLUMNS,
    PRESET_ORDER,
    RESULTS,
    ROOT,
    ensure_data,
    read_json,
    run_child,
    write_atomic,
    write_json,
)

from audience.markdown import fmt, fmt_duration, table

matplotlib.use("Agg")
import matplotlib.pyplot as plt

BENCH = ROOT / "benchmarks"
REPORT = BENCH / "results.md"
TEMPLATE = BENCH / "report_template.md"
PROSE_NAME = re.compile(r"<!-- ([a-z-]+) -->")
SUITE_JSON = RESULTS / "suite.json"
PNG_TRAINING = "training_time.png"
PNG_ANN = "ann_recall_qps.png"
PNG_NDCG = "ndcg_by_source.png"
ANN_EF = 256  # the pipeline's query ef (HnswConfig.ef): where the ANN peers are compared


# --- formatting (pure) -----------------------------------------------------------------------------------


def unfinished(status: str, wall_s: float) -> str:
    """How a benchmark process ended when it did not finish: 'timeout after 10 min 00 s'."""
    return f"{status} after {fmt_duration(wall_s)}"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def fmt_ratio(value: float | None) -> str:
    return "" if value is None else f"{fmt(value, 3)}x"


def order_presets(presets: list[str]) -> list[str]:
    """Presets from smallest to largest (unknown names last, in the order given)."""
    known = [p for p in PRESET_ORDER if p in presets]
    return known + [p for p in presets if p not in PRESET_ORDER]


def growth_rows(
    by_preset: dict[str, dict[str, dict]], presets: list[str], key: str, status_key: str = "status"
) -> list[list[str]]:
    """One row per name (first-seen order): its `key` at each preset ('timeout', 'failed' when it did not
    finish, '' when absent) and the growth factor from the first to the last preset where both exist."""
    names: list[str] = []
    for p in presets:
        names += [n for n in by_preset.get(p, {}) if n not in names]
    rows = []
    for name in names:
        cells, values = [], []
        for p in presets:
            row = by_preset.get(p, {}).get(name)
            if row is None:
                cells.append("")
                values.append(None)
            elif row.get(status_key, "ok") != "ok":
                cells.append(f"{row[status_key]} ({fmt_duration(row['child']['wall_s'])})")
                values.append(None)
            else:
                cells.append(fmt(row[key]))
                values.append(row[key])
        done = [v for v in values if v is not None]
        growth = ratio(done[-1], done[0]) if len(done) >= 2 else None
        rows.append([name, *cells, fmt_ratio(growth)])
    return rows


def peer_row(what: str, preset: str, ours: str, peer: str, value: float | None, reads: str) -> list[str]:
    return [what, preset, ours, peer, fmt_ratio(value), reads]


def cf_peer_rows(preset: str, rows: dict[str, dict]) -> list[list[str]]:
    """Peer comparisons of one preset's CF benchmark (rows keyed by part; missing sides are skipped)."""
    out = []
    chol, inv = rows.get("ease_cholesky"), rows.get("ease_inv")
    if chol and inv:
        out.append(
            peer_row(
                f"EASE solve, {chol['kept_clips']:,} clips: np.linalg.inv / our Cholesky",
                preset,
                f"{fmt(chol['solve_s'])} s",
                f"{fmt(inv['solve_s'])} s",
                ratio(inv["solve_s"], chol["solve_s"]),
                f"whole fit {fmt_ratio(ratio(inv['fit_s'], chol['fit_s']))}; max abs B difference "
                f"{inv.get('max_abs_diff_vs_cholesky', float('nan')):.1e}",
            )
        )
    nbt, skt = rows.get("slim_numba_top"), rows.get("slim_sklearn_top")
    if nbt and skt:
        out.append(
            peer_row(
                "SLIM fit, same clips, tol 1e-6: scikit-learn / our numba",
                preset,
                f"{fmt(nbt['fit_s'])} s",
                f"{fmt(skt['fit_s'])} s",
                ratio(skt["fit_s"], nbt["fit_s"]),
                f"max abs W difference {skt.get('max_abs_diff_vs_numba', float('nan')):.1e}",
            )
        )
    ours, imp, als = rows.get("bpr_popularity"), rows.get("implicit_bpr"), rows.get("implicit_als")
    if ours and imp:
        out.append(
            peer_row(
                "BPR samples/s: ours / implicit (popularity negatives)",
                preset,
                f"{fmt(ours['samples_per_s'] / 1e6)} M/s",
                f"{fmt(imp['samples_per_s'] / 1e6)} M/s",
                ratio(ours["samples_per_s"], imp["samples_per_s"]),
                f"fit {fmt(ours['fit_s'])} s vs {fmt(imp['fit_s'])} s; recall@50 {fmt(ours['recall@50'])} vs "
                f"{fmt(imp['recall@50'])}",
            )
        )
    if ours and als:
        out.append(
            peer_row(
                "fit time: implicit ALS / our BPR (popularity)",
                preset,
                f"{fmt(ours['fit_s'])} s",
                f"{fmt(als['fit_s'])} s",
                ratio(als["fit_s"], ours["fit_s"]),
                f"recall@50 {fmt(ours['recall@50'])} (BPR) vs {fmt(als['recall@50'])} (ALS); ALS / BPR "
                f"recall@50 {fmt_ratio(ratio(als['recall@50'], ours['recall@50']))}",
            )
        )
    return out


def ann_at(rows: list[dict], index: str, ef: int | None) -> dict | None:
    found = [r for r in rows if r["index"] == index and (ef is None or r["ef"] == ef)]
    return found[0] if found else None


def ann_peer_rows(preset: str, figures: dict, ef: int = ANN_EF) -> list[list[str]]:
    rows = figures["rows"]
    exact, hnsw, voy = ann_at(rows, "exact", None), ann_at(rows, "hnswlib", ef), ann_at(rows, "voyager", ef)
    out = []
    if hnsw and voy:
        out.append(
            peer_row(
                f"ANN queries/s at ef={ef}: hnswlib (ours) / voyager",
                preset,
                f"{fmt(hnsw['qps'])}/s (recall {hnsw['recall']:.4f})",
                f"{fmt(voy['qps'])}/s (recall {voy['recall']:.4f})",
                ratio(hnsw["qps"], voy["qps"]),
                f"build {fmt(hnsw['build_s'])} s vs {fmt(voy['build_s'])} s; one at a time "
                f"{fmt_ratio(ratio(hnsw['single_qps'], voy['single_qps']))}",
            )
        )
    if hnsw and exact:
        out.append(
            peer_row(
                f"ANN queries/s at ef={ef}: hnswlib / exact (numpy matmul)",
                preset,
                f"{fmt(hnsw['qps'])}/s",
                f"{fmt(exact['qps'])}/s",
                ratio(hnsw["qps"], exact["qps"]),
                f"recall@{figures['k']} {hnsw['recall']:.4f}; {figures['users']:,} users",
            )
        )
    return out


def loop_peer_row(loop: dict) -> list[str]:
    return peer_row(
        "user profiles: notebook per-user loop / our streamed stage",
        "tiny",
        f"{fmt(loop['vectorized_s'])} s (5 kinds)",
        f"{fmt(loop['loop_s'])} s (1 kind)",
        ratio(loop["loop_s"], loop["vectorized_s"]),
        f"best of {loop.get('repeat', 1)}; max abs difference {loop['max_abs_diff']:.1e}",
    )


# --- running the pieces ----------------------------------------------------------------------------------


def run_suite(presets: list[str], timeout: float, ranker_timeout: float) -> dict:
    """Every benchmark of every preset, each in its own process; returns what ran, how long, how it ended."""
    py = sys.executable
    logs = ROOT / "artifacts" / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    suite: dict = {
        "presets": {},
        "once": {},
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "commit": git_commit(),  # before the run: the suite rewrites tracked files under benchmarks/results
    }
    start_all = time.perf_counter()
    for preset in presets:
        start = time.perf_counter()
        _, generated_s = ensure_data(preset)
        pieces = {
            "generators": [
                py,
                str(BENCH / "bench_generators.py"),
                "--preset",
                preset,
                "--timeout",
                str(timeout),
            ],
            "ann": [py, str(BENCH / "bench_ann.py"), "--preset", preset],
            "cf_models": [
                py,
                str(BENCH / "bench_cf_models.py"),
                "--preset",
                preset,
                "--timeout",
                str(timeout),
            ],
            "rankers": [
                py,
                str(BENCH / "bench_rankers.py"),
                "--preset",
                preset,
                "--timeout",
                str(ranker_timeout),
            ],
        }
        for kind in ("generators", "ann", "cf_models", "rankers"):  # a piece that fails leaves no old figures
            (RESULTS / f"{kind}_{preset}.json").unlink(missing_ok=True)
        ran = {}
        for name, cmd in pieces.items():
            print(f"== {preset}: {name}", flush=True)
            ran[name] = run_child(cmd, None, logs / f"{preset}-{name}.log")
            print(json.dumps(ran[name]), flush=True)
        suite["presets"][preset] = {
            "generated_s": generated_s,
            "pieces": ran,
            "wall_s": round(time.perf_counter() - start, 1),
        }
    for stale in ("profiles_tiny.json", "bench_ndcg.txt"):
        (RESULTS / stale).unlink(missing_ok=True)
    for name, cmd in {
        "profiles_loop": [
            py,
            str(BENCH / "bench_profiles.py"),
            "--preset",
            "tiny",
            "--no-table",
            "--loop-vs-vectorized",
        ],
        "ndcg": [py, str(BENCH / "bench_ndcg.py")],
    }.items():
        print(f"== {name}", flush=True)
        suite["once"][name] = run_child(cmd, None, logs / f"{name}.log")
        print(json.dumps(suite["once"][name]), flush=True)
    ndcg_log = logs / "ndcg.log"
    if suite["once"]["ndcg"]["status"] == "ok":
        write_atomic(RESULTS / "bench_ndcg.txt", ndcg_log.read_text())
    suite["wall_s"] = round(time.perf_counter() - start_all, 1)
    suite["timeout_s"] = timeout
    suite["ranker_timeout_s"] = ranker_timeout
    suite["machine"] = machine()
    return suite


def git_commit() -> str | None:
    """The checked-out commit (with '+changes' when the tree differs from it), None outside a git clone."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


# --- collecting and writing ------------------------------------------------------------------------------


def load_figures(presets: list[str]) -> dict:
    """The per-benchmark json of each preset (None where a benchmark wrote none)."""

    def maybe(path: Path) -> dict | None:
        return read_json(path) if path.is_file() else None

    return {
        "generators": {p: maybe(RESULTS / f"generators_{p}.json") for p in presets},
        "cf": {p: maybe(RESULTS / f"cf_models_{p}.json") for p in presets},
        "ann": {p: maybe(RESULTS / f"ann_{p}.json") for p in presets},
        "rankers": {p: maybe(RESULTS / f"rankers_{p}.json") for p in presets},
        "loop": (maybe(RESULTS / "profiles_tiny.json") or {}).get("loop"),
        "ndcg": (RESULTS / "bench_ndcg.txt").read_text().strip()
        if (RESULTS / "bench_ndcg.txt").is_file()
        else "",
    }


def _by_name(figures: dict, key: str) -> dict[str, dict]:
    return {r[key]: r for r in figures["rows"]} if figures else {}


def training_points(figs: dict, presets: list[str]) -> list[tuple[str, str, dict[str, list]]]:
    """Per panel (title, x label, {name: [(size, fit seconds), ...]}): generators against fit interactions,
    CF models against training rows, rankers against their own training rows (sampled pool rows)."""
    generators: dict[str, list] = {}
    cf: dict[str, list] = {}
    rankers: dict[str, list] = {}
    for p in presets:
        g, c, r = figs["generators"].get(p), figs["cf"].get(p), figs["rankers"].get(p)
        for row in (g or {}).get("rows", []):
            if row["status"] == "ok" and row["fit_s"] > 0:
                generators.setdefault(row["generator"], []).append(
                    (g["split"]["fit_interactions"], row["fit_s"])
                )
        for row in (c or {}).get("rows", []):
            if row["status"] == "ok" and row["fit_s"] > 0:
                cf.setdefault(row["part"], []).append((c["info"]["train_rows"], row["fit_s"]))
        for name, model in (r or {}).get("models", {}).items():
            if model.get("fit_s"):
                rankers.setdefault(name, []).append((model["train_rows"], model["fit_s"]))
    return [
        ("clip -> users generators (fit)", "fit interactions", generators),
        ("user -> clips CF models (fit)", "train rows", cf),
        ("rankers (XGBoost boosting)", "ranker training rows (after negative sampling)", rankers),
    ]


def plot_training(figs: dict, presets: list[str], path: Path) -> None:
    panels = training_points(figs, presets)
    fig, axes = plt.subplots(1, len(panels), figsize=(19, 5.5))
    cmap = plt.get_cmap("tab20")
    for ax, (title, xlabel, lines) in zip(axes, panels, strict=True):
        for i, (name, points) in enumerate(lines.items()):
            style = "-" if i < 10 else "--"
            ax.plot(*zip(*points, strict=True), marker="o", linestyle=style, color=cmap(i % 20), label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"{xlabel} (tiny, small, medium)")
        ax.set_ylabel("fit seconds")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if lines:
            ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ranker_rows(rankers: dict[str, dict | None], presets: list[str]) -> list[list[str]]:
    """One row per (preset, booster): fit, size, scoring speed and the NDCG@100 of its list; one row for a
    preset whose pipeline did not finish."""
    rows = []
    for p in presets:
        f = rankers.get(p)
        if not f:
            continue
        if f["pipeline"]["status"] != "ok":
            pipeline = f["pipeline"]
            rows.append([p, f"pipeline {unfinished(pipeline['status'], pipeline['wall_s'])}"] + [""] * 8)
            continue
        for name, method in (("mixigen", "mixigen"), ("reranker", "reranked")):
            model = f["models"][name]
            speed = f.get("scoring", {}).get(name, {})
            result = f["results"].get(method, {})
            rows.append(
                [
                    p,
                    name,
                    fmt(model.get("fit_s")),
                    f"{model['train_rows']:,}",
                    fmt(model["stored_mb"]),
                    fmt(speed.get("latency_ms")),
                    fmt(speed.get("single_clips_per_s")),
                    fmt(speed.get("batch_clips_per_s")),
                    f"{result['ndcg_capped']:.4f}" if result else "",
                    f"{result['recall@100']:.4f}" if result.get("recall@100") is not None else "",
                ]
            )
    return rows


def ranker_stage_rows(rankers: dict[str, dict | None], presets: list[str]) -> list[list[str]]:
    """One row per finished preset: pipeline and stage seconds, peak memory, NDCG@100 of every list."""
    rows = []
    for p in presets:
        f = rankers.get(p)
        if not f or f["pipeline"]["status"] != "ok":
            continue
        stages, results = f["stages_s"], f["results"]
        rows.append(
            [
                p,
                fmt(f["pipeline"]["wall_s"]),
                fmt(stages.get("blend")),
                fmt(f["quota"].get("tune_s")),
                fmt(stages.get("rank")),
                fmt(f["pipeline"]["peak_rss_gib"]),
                *[
                    f"{results[m]['ndcg_capped']:.4f}" if m in results else ""
                    for m in ("blend", "quota", "mixigen", "reranked", "oracle")
                ],
            ]
        )
    return rows


def plot_ann(figs: dict, presets: list[str], path: Path) -> None:
    done = [p for p in presets if figs["ann"].get(p)]
    fig, axes = plt.subplots(1, max(len(done), 1), figsize=(5 * max(len(done), 1), 4), squeeze=False)
    for ax, p in zip(axes[0], done, strict=False):
        f = figs["ann"][p]
        for label in ("hnswlib", "voyager"):
            pts = [r for r in f["rows"] if r["index"] == label]
            ax.plot([r["recall"] for r in pts], [r["qps"] for r in pts], marker="o", label=label)
        exact = ann_at(f["rows"], "exact", None)
        ax.axhline(exact["qps"], color="gray", linestyle="--", label="exact")
        ax.set_yscale("log")
        ax.set_xlabel("recall@100 vs exact")
        ax.set_ylabel("queries / s (batch, 1 thread)")
        ax.set_title(f"{p}: {f['users']:,} users")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ndcg(figs: dict, presets: list[str], path: Path) -> None:
    done = [p for p in presets if figs["generators"].get(p)]
    names: list[str] = []
    for p in done:
        names += [r["generator"] for r in figs["generators"][p]["rows"] if r["generator"] not in names]
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / max(len(done), 1)
    for i, p in enumerate(done):
        rows = _by_name(figs["generators"][p], "generator")
        values = [rows[n].get("ndcg@100") or 0.0 if n in rows else 0.0 for n in names]
        ax.bar([j + i * width for j in range(len(names))], values, width, label=p)
    ax.set_xticks([j + width * (len(done) - 1) / 2 for j in range(len(names))])
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_ylabel("NDCG@100 after the cap")
    ax.set_title("Each clip -> users generator alone (validate mode); bars at 0 = not measured")
    ax.legend(title="preset")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_prose(path: Path = TEMPLATE) -> dict[str, str]:
    """The named prose blocks of the report template (`<!-- name -->` then the block's text)."""
    blocks: dict[str, str] = {}
    name = None
    for line in path.read_text().splitlines():
        found = PROSE_NAME.fullmatch(line)
        if found:
            name = found.group(1)
            blocks[name] = ""
        elif name is not None:
            blocks[name] += line + "\n"
    return {k: v.rstrip("\n") for k, v in blocks.items()}


def section_header(figs: dict, suite: dict | None, presets: list[str], prose: dict[str, str]) -> list[str]:
    """Title, how long the suite took and how loaded the machine was, the machine and library versions."""
    m = machine()
    lines = ["# Benchmark report", ""]
    if suite:
        per = ", ".join(
            f"{p} {fmt_duration(suite['presets'][p]['wall_s'])}" for p in presets if p in suite["presets"]
        )
        gen = [
            f"{p} data generated in {fmt_duration(v['generated_s'])}"
            for p, v in suite["presets"].items()
            if v.get("generated_s")
        ]
        loads = [
            c[k]
            for v in suite["presets"].values()
            for c in v["pieces"].values()
            for k in ("load_before", "load_after")
            if c.get(k) is not None
        ]
        duration = prose["suite-duration"].format(
            presets=" ".join(presets),
            wall=fmt_duration(suite["wall_s"]),
            started=suite["started"],
            commit=suite.get("commit") or "unknown",
            per_preset=per,
            generated=f" Including {'; '.join(gen)}." if gen else " Every preset's data existed already.",
        )
        load = prose["suite-load"].format(low=f"{min(loads):.2f}", high=f"{max(loads):.2f}") if loads else ""
        lines += [duration, "", load, ""]
    else:
        lines += [prose["collect-only"], ""]
    source = "Every figure below was measured in this run" if suite else "Figures from the benchmarks' json"
    return [
        *lines,
        f"Machine: {machine_line()}. Date: {m['date']}.",
        "",
        *table(["library", "version"], [[k, v] for k, v in m["versions"].items()], "ll"),
        "",
        prose["figures-source"].format(source=source),
        "",
    ]


def section_data(figs: dict, presets: list[str]) -> list[str]:
    """The size of each preset's data and CF matrix."""
    size_rows = []
    for p in presets:
        g, c = figs["generators"].get(p), figs["cf"].get(p)
        size_rows.append(
            [
                p,
                f"{g['split']['n_users']:,}" if g else "",
                f"{g['split']['n_items']:,}" if g else "",
                f"{g['split']['fit_interactions']:,}" if g else "",
                f"{g['split']['n_targets']:,}" if g else "",
                f"{c['info']['users']:,} x {c['info']['items']:,}, {c['info']['nnz']:,} nnz" if c else "",
                f"{c['info']['eval_users']:,}" if c else "",
            ]
        )
    header = [
        "preset",
        "users",
        "clips",
        "fit interactions",
        "new clips (targets)",
        "CF positives matrix",
        "CF eval users",
    ]
    return ["## Data (synthetic presets, validate mode)", "", *table(header, size_rows), ""]


def section_training(figs: dict, presets: list[str], prose: dict[str, str]) -> list[str]:
    """Fit time of every generator and CF model against the preset size."""
    gen_by = {p: _by_name(figs["generators"][p], "generator") for p in presets if figs["generators"].get(p)}
    cf_by = {p: _by_name(figs["cf"][p], "part") for p in presets if figs["cf"].get(p)}
    done_g = [p for p in presets if p in gen_by]
    done_c = [p for p in presets if p in cf_by]
    lines = [
        "## Training time against data size",
        "",
        f"![training time vs data size](results/{PNG_TRAINING})",
        "",
        prose["training-generators"],
        "",
        *table(
            ["generator", *[f"fit s {p}" for p in done_g], "growth"], growth_rows(gen_by, done_g, "fit_s")
        ),
        "",
    ]
    for p in done_g:
        prof = figs["generators"][p]["profiles_stage"]
        lines.append(
            f"- profiles stage (shared by every generator) on {p}: {fmt(prof['wall_s'])} s wall, peak RSS "
            f"{fmt(prof['peak_rss_gib'])} GiB"
        )
    return [
        *lines,
        "",
        prose["training-cf"],
        "",
        *table(["model", *[f"fit s {p}" for p in done_c], "growth"], growth_rows(cf_by, done_c, "fit_s")),
        "",
    ]


def section_generators(figs: dict, presets: list[str]) -> list[str]:
    """Every clip -> users generator per preset."""
    lines = ["## Clip -> users generators", "", f"![NDCG@100 by source](results/{PNG_NDCG})", ""]
    for p in (p for p in presets if figs["generators"].get(p)):
        f = figs["generators"][p]
        rows = []
        for r in f["rows"]:
            if r["status"] != "ok":
                rows.append([r["generator"], unfinished(r["status"], r["child"]["wall_s"])] + [""] * 6)
                continue
            rows.append(
                [
                    r["generator"],
                    fmt(r["fit_s"]),
                    fmt(r["stored_mb"]),
                    fmt(r["latency_ms"]),
                    fmt(r["single_qps"]),
                    fmt(r["batch_qps"]),
                    f"{r['ndcg@100']:.4f}" if r.get("ndcg@100") is not None else "",
                    f"{r['recall@300']:.4f}" if r.get("recall@300") is not None else "",
                ]
            )
        extra = []
        if f.get("oracle_ndcg@100") is not None:
            extra.append(f"oracle NDCG@100 {f['oracle_ndcg@100']:.4f}")
        if f.get("union_recall@300") is not None:
            extra.append(f"union of the pools recall@300 {f['union_recall@300']:.4f}")
        header = list(GENERATOR_COLUMNS)
        lines += [
            f"### {p}: {f['split']['n_targets']:,} new clips, {f['split']['users_with_history']:,} users "
            f"with history, depth {f['candidate_depth']}",
            "",
            *table(header, rows),
            "",
            ("; ".join(extra) + ". " if extra else "")
            + f"Full table: `benchmarks/results/generators_{p}.md`.",
            "",
        ]
    return lines


def section_cf(figs: dict, presets: list[str]) -> list[str]:
    """Every user -> clips CF model per preset."""
    lines = ["## User -> clips CF models", ""]
    for p in (p for p in presets if figs["cf"].get(p)):
        f = figs["cf"][p]
        rows = []
        for r in f["rows"]:
            if r["status"] != "ok":
                rows.append([r["part"], unfinished(r["status"], r["child"]["wall_s"])] + [""] * 7)
                continue
            rows.append(
                [
                    r["model"],
                    fmt(r["fit_s"]),
                    fmt(r["params_mb"]),
                    fmt(r["latency_ms"]),
                    fmt(r["single_qps"]),
                    fmt(r["users_per_s"]),
                    f"{fmt(r['samples_per_s'] / 1e6)} M" if "samples_per_s" in r else "",
                    f"{r['recall@10']:.4f}",
                    f"{r['recall@50']:.4f}",
                ]
            )
        info = f["info"]
        header = [
            "model",
            "fit s",
            "params MB",
            "latency ms (1 user)",
            "users/s (1 at a time)",
            "users/s (batch)",
            "samples/s",
            "recall@10",
            "recall@50",
        ]
        lines += [
            f"### {p}: {info['users']:,} users x {info['items']:,} clips, {info['nnz']:,} positives, "
            f"{info['eval_users']:,} evaluation users",
            "",
            *table(header, rows),
            "",
            f"Novelty, diversity and caveats: `benchmarks/results/cf_models_{p}.md`.",
            "",
        ]
    return lines


def section_rankers(figs: dict, presets: list[str], prose: dict[str, str]) -> list[str]:
    """MixiGen and the reranker per preset: fit, size, latency, quality, and their pipeline stages."""
    done_r = [p for p in presets if figs["rankers"].get(p)]
    if not done_r:
        return []
    fit_by = {p: figs["rankers"][p].get("models", {}) for p in done_r}
    models_header = [
        "preset",
        "ranker",
        "fit s",
        "train rows",
        "stored MB",
        "latency ms (1 clip)",
        "clips/s (1 at a time)",
        "clips/s (batch)",
        "NDCG@100",
        "recall@100",
    ]
    stages_header = [
        "preset",
        "pipeline s",
        "blend stage s",
        "quota search s",
        "rank stage s",
        "peak RSS GiB",
        "RRF blend",
        "quota",
        "MixiGen",
        "reranked",
        "oracle",
    ]
    return [
        "## Rankers: MixiGen and the XGBoost reranker",
        "",
        prose["rankers"],
        "",
        *table(["ranker", *[f"fit s {p}" for p in done_r], "growth"], growth_rows(fit_by, done_r, "fit_s")),
        "",
        *table(models_header, ranker_rows(figs["rankers"], done_r), "ll" + "r" * 8),
        "",
        *table(stages_header, ranker_stage_rows(figs["rankers"], done_r)),
        "",
    ]


def section_peers(figs: dict, presets: list[str], prose: dict[str, str]) -> list[str]:
    """Our implementations against their peers, measured in the same run."""
    peers = []
    for p in presets:
        if figs["cf"].get(p):
            peers += cf_peer_rows(p, {r["part"]: r for r in figs["cf"][p]["rows"] if r["status"] == "ok"})
        if figs["ann"].get(p):
            peers += ann_peer_rows(p, figs["ann"][p])
    if figs.get("loop"):
        peers.append(loop_peer_row(figs["loop"]))
    return [
        "## Peers, measured in the same run",
        "",
        prose["peers"],
        "",
        *table(["comparison", "preset", "ours", "peer", "ratio", "also"], peers, "llrrrl"),
        "",
    ]


def section_ann(figs: dict, presets: list[str]) -> list[str]:
    """Recall against throughput of every ANN index per preset."""
    lines = ["## ANN: recall against throughput", "", f"![recall vs queries/s](results/{PNG_ANN})", ""]
    for p in (p for p in presets if figs["ann"].get(p)):
        f = figs["ann"][p]
        rows = [
            [
                r["index"],
                "" if r["ef"] is None else str(r["ef"]),
                f"{r['recall']:.4f}",
                fmt(r["qps"]),
                fmt(r["single_qps"]),
                fmt(r["build_s"]),
            ]
            for r in f["rows"]
        ]
        lines += [
            f"### {p}: {f['users']:,} positive profiles x {f['queries']:,} clip queries, k={f['k']}, "
            f"M={f['m']}, ef_construction={f['ef_construction']}, {f['threads']} thread",
            "",
            *table(
                ["index", "ef", "recall@100", "queries/s (batch)", "queries/s (1 at a time)", "build s"], rows
            ),
            "",
        ]
    return lines


def section_notes(figs: dict, suite: dict | None, presets: list[str], prose: dict[str, str]) -> list[str]:
    """What did not finish or was not measured, and the standing caveats."""
    notes = []
    for p in presets:
        for kind, key in (("generators", "generator"), ("cf", "part")):
            f = figs[kind].get(p)
            for r in (f or {}).get("rows", []):
                if r["status"] != "ok":
                    notes.append(
                        f"{p}: `{r[key]}` {unfinished(r['status'], r['child']['wall_s'])} "
                        f"(limit {fmt_duration(f['timeout_s'])} per process): not measured, no figure shown."
                    )
        for kind, script in (
            ("generators", "bench_generators"),
            ("cf", "bench_cf_models"),
            ("rankers", "bench_rankers"),
        ):
            if figs[kind].get(p) is None:
                notes.append(f"{p}: {script}.py wrote no results (see artifacts/bench-logs/).")
    if suite and not notes:
        notes.append(prose["note-all-finished"].format(limit=fmt_duration(suite["timeout_s"])))
    notes.append(prose["note-ease"])
    return ["## Notes", "", *[f"- {n}" for n in notes], ""]


def section_metric(figs: dict) -> list[str]:
    """The metric and assignment timings at challenge scale, verbatim."""
    if not figs.get("ndcg"):
        return []
    return [
        "## Metric and assignment at challenge scale (`bench_ndcg.py`)",
        "",
        "```",
        figs["ndcg"],
        "```",
        "",
    ]


def section_reproduce(presets: list[str], prose: dict[str, str]) -> list[str]:
    return ["## Reproduce", "", prose["reproduce"].format(presets=" ".join(presets)), ""]


def render(figs: dict, suite: dict | None, presets: list[str]) -> str:
    """benchmarks/results.md: one section function after another; their prose is report_template.md."""
    prose = load_prose()
    sections = [
        section_header(figs, suite, presets, prose),
        section_data(figs, presets),
        section_training(figs, presets, prose),
        section_generators(figs, presets),
        section_cf(figs, presets),
        section_rankers(figs, presets, prose),
        section_peers(figs, presets, prose),
        section_ann(figs, presets),
        section_notes(figs, suite, presets, prose),
        section_metric(figs),
        section_reproduce(presets, prose),
    ]
    return "\n".join(line for section in sections for line in section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="tiny small medium", help="space- or comma-separated")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per generator / model process")
    parser.add_argument(
        "--ranker-timeout", type=float, default=3600.0, help="seconds for each preset's ranker pipeline"
    )
    parser.add_argument("--collect-only", action="store_true", help="only re-render from the existing json")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args()
    presets = order_presets([p for p in args.presets.replace(",", " ").split() if p])
    if args.collect_only:
        suite = read_json(SUITE_JSON) if SUITE_JSON.is_file() else None
        if suite is not None and sorted(suite["presets"]) != sorted(presets):
            suite = None  # durations of another selection: not shown
    else:
        suite = run_suite(presets, args.timeout, args.ranker_timeout)
        write_json(SUITE_JSON, suite)
    figs = load_figures(presets)
    plot_training(figs, presets, RESULTS / PNG_TRAINING)
    plot_ann(figs, presets, RESULTS / PNG_ANN)
    plot_ndcg(figs, presets, RESULTS / PNG_NDCG)
    write_atomic(args.out, render(figs, suite, presets))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
