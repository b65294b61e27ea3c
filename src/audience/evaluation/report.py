"""What the evaluate stage reports, from frames and arrays: the lists as (item_id, user_id list) frames, the
pool's ceiling (the oracle's order within a method's pool), where the gap to the oracle goes (the
decomposition), the cold / warm split of a method's NDCG and the results table."""

from __future__ import annotations

import numpy as np
import polars as pl

from audience.metrics import pair_positions, sorted_pair_keys

ORACLE = "oracle"
# the oracle's order restricted to the final method's pool (pool users it does not list follow in the final
# method's order): the best the pool allows
POOL_CEILING = "pool_ceiling"


def pool_ceiling_frame(pool: pl.DataFrame, oracle: pl.DataFrame, block_rows: int = 4_000_000) -> pl.DataFrame:
    """The pool's pairs (clip, user, rank) scored by the oracle (clip, user, score: distinct pairs); pairs
    beyond the oracle's list (its top `oracle_depth`, so below every pair it lists) follow in the pool's own
    order, with negative scores -rank. Pairs are looked up by their (clip, user) key in the oracle's sorted
    keys (`metrics.pair_positions`), `block_rows` pool rows at a time: the transient memory is the oracle's
    keys plus a block's."""
    oracle_keys, order = sorted_pair_keys(oracle["clip"].to_numpy(), oracle["user"].to_numpy())
    truth = oracle["score"].to_numpy().astype(np.float64)[order]
    scores = -pool["rank"].to_numpy().astype(np.float64)
    for start in range(0, pool.height, block_rows):
        block = pool.slice(start, block_rows)
        at = pair_positions(block["clip"].to_numpy(), block["user"].to_numpy(), oracle_keys)
        found = at >= 0
        scores[start : start + block.height][found] = truth[at[found]]
    return pool.select("clip", "user").with_columns(pl.Series("score", scores))


def lists_frame(item_ids: np.ndarray, lists: np.ndarray, user_ids: np.ndarray) -> pl.DataFrame:
    """(item_id, user_id list) from a dense index matrix, dropping -1 padding."""
    k = lists.shape[1]
    valid = lists.ravel() >= 0
    return (
        pl.DataFrame({"item_id": np.repeat(item_ids, k)[valid], "user_id": user_ids[lists.ravel()[valid]]})
        .group_by("item_id", maintain_order=True)
        .agg("user_id")
        .cast({"item_id": pl.UInt32, "user_id": pl.List(pl.UInt32)})
    )


def group_ndcg(per_clip: pl.DataFrame, targets: pl.DataFrame, suffix: str) -> dict[str, float]:
    """Mean NDCG of the cold and the warm targets (per_clip: item_id, ndcg); empty without warm targets."""
    if "warm" not in targets.columns or not targets["warm"].any():
        return {}
    joined = per_clip.join(targets.select(pl.col("item_id").cast(pl.UInt32), "warm"), on="item_id")
    out = {}
    for group, flag in (("cold", False), ("warm", True)):
        values = joined.filter(pl.col("warm") == flag)["ndcg"]
        out[f"ndcg_{suffix}_{group}"] = float(values.mean()) if values.len() else float("nan")
    return out


def decomposition(rows: list[dict], bound: dict, final_method: str) -> dict:
    """Where the gap to the oracle goes: the oracle, the pool's ceiling, our ranking uncapped, the best any
    assignment could keep of it, and our capped lists (NDCG@100; None where the run has no oracle).
    `assignment_bound` scales our capped NDCG by bound / capped gain under our own scores: what our lists
    would score if the assignment reached the bound and NDCG moved with our scores' expected gain."""
    by = {row["method"]: row for row in rows}
    final = by[final_method]

    def ndcg(method: str, kind: str) -> float | None:
        return by[method][f"ndcg_{kind}"] if method in by else None

    headroom = bound["bound"] / bound["capped_gain"] if bound["capped_gain"] > 0 else 1.0
    oracle_capped = ndcg(ORACLE, "capped")
    return {
        "oracle_capped": oracle_capped,
        "oracle_uncapped": ndcg(ORACLE, "uncapped"),
        "pool_ceiling_capped": ndcg(POOL_CEILING, "capped"),
        "pool_ceiling_uncapped": ndcg(POOL_CEILING, "uncapped"),
        "ranking_uncapped": final["ndcg_uncapped"],
        "assignment_bound": final["ndcg_capped"] * headroom,
        "final_capped": final["ndcg_capped"],
        "assignment_gap": bound["gap_to_bound"],
        "oracle_share": final["ndcg_capped"] / oracle_capped if oracle_capped else None,
    }


DECOMPOSITION_LABELS = {
    "oracle_uncapped": "oracle, uncapped",
    "oracle_capped": "oracle, capped",
    "pool_ceiling_uncapped": "oracle within our pool, uncapped",
    "pool_ceiling_capped": "oracle within our pool, capped",
    "ranking_uncapped": "our ranking, uncapped",
    "assignment_bound": "our ranking, capped by the best assignment (bound)",
    "final_capped": "our final lists, capped",
}


def decomposition_table(parts: dict) -> str:
    """The decomposition as a markdown table (NDCG@100, best first)."""
    lines = ["| where | NDCG@100 |", "|---|---:|"]
    for key, label in DECOMPOSITION_LABELS.items():
        if parts.get(key) is not None:
            lines.append(f"| {label} | {parts[key]:.4f} |")
    lines.append(
        f"| assignment's gap to its bound (our scores' expected gain) | {parts['assignment_gap']:.2%} |"
    )
    if parts.get("oracle_share") is not None:
        lines.append(f"| final share of the capped oracle | {parts['oracle_share']:.1%} |")
    return "\n".join(lines)


def results_table(results: dict) -> str:
    head = (
        f"dataset {results['dataset']} | mode {results['mode']} | {results['n_targets']} target clips, "
        f"{results['n_targets_with_positives']} with positives"
    )
    if not results["methods"]:
        return head + "\n(no truth available: nothing to score)"
    columns = [c for c in results["methods"][0] if c != "method"]
    for row in results["methods"][1:]:
        columns += [c for c in row if c != "method" and c not in columns]
    lines = [head, "", "| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    ranked = sorted(results["methods"], key=lambda r: -r.get("ndcg_capped", -1.0))
    for row in ranked:
        cells = [f"{row[c]:.4f}" if isinstance(row.get(c), float) else "" for c in columns]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    if results.get("decomposition"):
        lines += ["", "Where the gap goes:", "", decomposition_table(results["decomposition"])]
    return "\n".join(lines)
