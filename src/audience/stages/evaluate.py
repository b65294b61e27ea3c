"""The evaluate stage: NDCG@100 of every method's lists (capped and uncapped) against the truth week, the
pools' recall, and where the gap to the oracle goes -> results.json, results.md."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from audience.errors import DataError
from audience.evaluation.report import (
    ORACLE,
    POOL_CEILING,
    decomposition,
    group_ndcg,
    lists_frame,
    results_table,
)
from audience.io import atomic_path, read_json, write_json
from audience.metrics import ndcg_per_clip, recall_at_depth, truth_positives
from audience.stages.assign import list_user_ids
from audience.stages.run import Run, file_key

log = logging.getLogger(__name__)

RECALL_BLOCK_ROWS = 4_000_000  # rows of a pool gathered to external ids at a time (~100 MB)


def stage_evaluate(run: Run) -> dict:
    cfg = run.cfg
    targets = run.targets()
    item_ids = targets["item_id"].to_numpy()
    user_ids = run.catalog.users.ids
    split = run.split()
    assignment = read_json(run.require("lists/assignment.json", "assign"))
    truth = None
    if split.truth_week is not None:
        try:
            truth = truth_positives(split.truth_week, cfg.positive_flags, item_ids)
        except DataError as exc:
            if cfg.mode == "validate":
                raise
            log.warning("test week cannot be scored, results table left empty: %s", exc)
    rows = []
    depths = sorted(
        {d for d in (cfg.list_size, *cfg.recall_depths, cfg.candidate_depth) if d <= cfg.candidate_depth}
    )

    def pool_recall(methods: list[str]) -> dict[str, float]:
        """Recall of the union of `methods`' pools, read one method at a time in blocks of rows."""

        def parts():
            for method in methods:
                cands = run.candidates(method, columns=["clip", "user", "rank"])
                for block in cands.iter_slices(RECALL_BLOCK_ROWS):
                    yield block.select(
                        pl.Series("item_id", item_ids, dtype=pl.UInt32).gather(block["clip"]),
                        pl.Series("user_id", user_ids).gather(block["user"]),
                        "rank",
                    )

        found = recall_at_depth(parts(), truth, depths, targets=item_ids)
        return {f"recall@{d}": value for d, value in found.items()}

    if truth is not None and truth.height:
        for method in assignment:
            row: dict = {"method": method}
            method_users = list_user_ids(run, method)
            for name in ("uncapped", "capped"):
                lists = np.load(run.path("lists", f"{file_key(method)}.{name}.npy"))
                per_clip = ndcg_per_clip(lists_frame(item_ids, lists, method_users), truth, cfg.list_size)
                row[f"ndcg_{name}"] = float(per_clip["ndcg"].mean()) if per_clip.height else float("nan")
                row.update(group_ndcg(per_clip, targets, name) if name == "capped" else {})
            row["cap_cost"] = row["ndcg_uncapped"] - row["ndcg_capped"]
            if method not in (ORACLE, POOL_CEILING):
                row.update(pool_recall([method]))
            rows.append(row)
        rows.append({"method": "union of sources", **pool_recall(list(cfg.sources))})
    results = {
        "dataset": cfg.dataset_name,
        "mode": cfg.mode,
        "truth_week": str(split.truth_week),
        "n_targets": int(item_ids.shape[0]),
        "n_targets_with_positives": int(truth["item_id"].n_unique()) if truth is not None else 0,
        "final_method": cfg.final_method,
        "methods": rows,
    }
    bound_path = run.path("lists", "bound.json")
    if rows and bound_path.is_file():
        results["decomposition"] = decomposition(rows, read_json(bound_path), cfg.final_method)
    write_json(results, run.path("results.json"))
    table = results_table(results)
    with atomic_path(run.path("results.md")) as tmp:
        tmp.write_text(table + "\n")
    if not cfg.quiet:
        print(table)
    return results
