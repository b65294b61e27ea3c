"""The ranking ablation of one validate run, as a markdown table and three PNGs.

    python -m audience run --data-dir data/synthetic-small --run-dir artifacts/ablation-small-validate \
        --learned-blend
    python reports/ranking_report.py artifacts/ablation-small-validate

Reads the run's results.json, ranker/meta.json and (with --learned-blend) mixigen/; writes
reports/ranking_<dataset>.md and reports/figures/<dataset>_{ablation,value_by_position,importance}.png.
The stages are compared in pipeline order: best single source -> RRF blend -> fixed quota -> MixiGen ->
reranker; a stage that does not beat the best stage before it is marked as dropped from the default."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl

from audience.io import atomic_path
from audience.markdown import table

ROOT = Path(__file__).resolve().parents[1]
STAGES = (
    ("blend", "RRF blend of the sources"),
    ("quota", "fixed quota per source, tuned on holdout weeks"),
    ("mixigen", "MixiGen: learned position value, k-way merge"),
    ("reranked", "XGBoost reranker"),
)


def ablation_rows(results: dict, sources: list[str]) -> list[dict]:
    """Rows of the ablation in pipeline order with the verdict of each stage against the best before it."""
    by_method = {r["method"]: r for r in results["methods"] if "ndcg_capped" in r}
    single = sorted((by_method[s] for s in sources if s in by_method), key=lambda r: -r["ndcg_capped"])
    rows = [{**r, "stage": "single source", "verdict": ""} for r in single]
    best = single[0]["ndcg_capped"] if single else 0.0
    for method, label in STAGES:
        if method not in by_method:
            continue
        row = by_method[method]
        kept = row["ndcg_capped"] > best
        verdict = "improves: kept" if kept else "does not improve on the best before it: not in the default"
        if method in ("quota", "mixigen") and kept:
            verdict = "improves on the sources, but the reranker does not use it: not in the default"
        rows.append({**row, "stage": label, "verdict": verdict})
        best = max(best, row["ndcg_capped"])
    if "oracle" in by_method:
        rows.append({**by_method["oracle"], "stage": "oracle (true expected positives)", "verdict": ""})
    return rows


def markdown(rows: list[dict], results: dict, run_dir: Path) -> str:
    oracle = next((r["ndcg_capped"] for r in rows if r["method"] == "oracle"), None)
    lines = [
        f"# Ranking ablation: {results['dataset']} ({results['mode']}, {results['n_targets']} target clips)",
        "",
        f"Run folder `{run_dir}`. NDCG@100 after the cap; cap cost = uncapped - capped.",
        "",
    ]
    body = []
    for r in rows:
        share = f"{r['ndcg_capped'] / oracle:.0%}" if oracle else ""
        recall = [f"{r[k]:.4f}" if isinstance(r.get(k), float) else "" for k in ("recall@100", "recall@300")]
        body.append(
            [
                r["method"],
                r["stage"],
                f"{r['ndcg_capped']:.4f}",
                share,
                f"{r['cap_cost']:.4f}",
                *recall,
                r["verdict"],
            ]
        )
    header = [
        "method",
        "stage",
        "NDCG@100",
        "share of oracle",
        "cap cost",
        "recall@100",
        "recall@300",
        "verdict",
    ]
    lines += table(header, body, "l" * 8)
    merge_path = run_dir / "mixigen" / "merge.json"
    if merge_path.is_file():
        merge = json.loads(merge_path.read_text())
        shares = [
            [source, f"{share:.3f}", f"{merge['position_trend_spearman'].get(source, float('nan')):.2f}"]
            for source, share in merge["quota_shares"].items()
        ]
        lines += ["", "## Merges", ""]
        lines += table(["source", "quota share", "Spearman(position, positive rate)"], shares, "lll")
        counts = next(v for k, v in merge.items() if k.startswith("mean_users_per_clip"))
        lines += ["", "Mean users per clip each source contributes to the top 100:", ""]
        for method, per_source in counts.items():
            lines.append(f"- {method}: " + ", ".join(f"{s} {n}" for s, n in per_source.items()))
    meta_path = run_dir / "ranker" / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        lines += ["", "## Reranker feature importance (share of total gain, top 15)", ""]
        lines += table(["feature", "share"], [[n, f"{s:.3f}"] for n, s in _top(meta["importance"], 15)], "ll")
        report = meta["report"]
        seeds = report.get("seeds", [report])
        lines += [
            "",
            f"Trained on {report['train_rows']:,} rows ({report['train_clips']:,} clips with a "
            f"positive); per seed, best iteration / held-out NDCG@100: "
            + ", ".join(f"{s['best_iteration']} / {s['valid_ndcg@100']:.4f}" for s in seeds)
            + f"; {meta.get('n_boosters', 1)} booster(s) averaged.",
        ]
    return "\n".join(lines) + "\n"


def plots(rows: list[dict], run_dir: Path, out: Path, dataset: str) -> list[Path]:
    written = []
    shown = [r for r in rows if r["method"] != "oracle"]
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(shown) + 1.2))
    ax.barh([r["method"] for r in shown][::-1], [r["ndcg_capped"] for r in shown][::-1], color="tab:blue")
    oracle = [r["ndcg_capped"] for r in rows if r["method"] == "oracle"]
    if oracle:
        ax.axvline(oracle[0], color="tab:green", ls="--", label="oracle")
        ax.legend(loc="lower right")
    ax.set(xlabel="NDCG@100 (capped)", title=f"ablation, {dataset}")
    written.append(_save(fig, out / f"{dataset}_ablation.png"))
    table_path = run_dir / "mixigen" / "value_by_position.parquet"
    if table_path.is_file():
        table = pl.read_parquet(table_path)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for (name,), part in table.group_by("source_name", maintain_order=True):
            smooth = part.sort("position").with_columns(
                pl.col("positive_rate").rolling_mean(5, min_samples=1)
            )
            axes[0].plot(smooth["position"], smooth["positive_rate"], label=name)
            axes[1].plot(part["position"], part["value"], label=name)
        axes[0].set(
            xlabel="position in the source",
            ylabel="positive rate (holdout weeks, 5-pt mean)",
            yscale="log",
            title="observed value",
        )
        axes[1].set(xlabel="position in the source", ylabel="mean MixiGen score", title="learned value")
        axes[0].legend(fontsize=8)
        written.append(_save(fig, out / f"{dataset}_value_by_position.png"))
    meta_path = run_dir / "ranker" / "meta.json"
    if meta_path.is_file():
        importance = _top(json.loads(meta_path.read_text())["importance"], 20)[::-1]
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(importance) + 1.2))
        ax.barh([k for k, _ in importance], [v for _, v in importance], color="tab:orange")
        ax.set(xlabel="share of total gain", title=f"reranker feature importance, {dataset}")
        written.append(_save(fig, out / f"{dataset}_importance.png"))
    return written


def _top(importance: dict[str, float], n: int) -> list[tuple[str, float]]:
    """The n largest shares (meta.json stores the mapping with sorted keys, not by share)."""
    return sorted(importance.items(), key=lambda kv: -kv[1])[:n]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args()
    results = json.loads((args.run_dir / "results.json").read_text())
    config = json.loads((args.run_dir / "config.json").read_text())
    rows = ablation_rows(results, list(config["sources"]))
    dataset = results["dataset"]
    text = markdown(rows, results, args.run_dir)
    path = args.out / f"ranking_{dataset}.md"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    written = plots(rows, args.run_dir, args.out / "figures", dataset)
    print(text)
    print("wrote", path, *written, sep="\n  ")


if __name__ == "__main__":
    main()
