"""The synthetic dataset's oracle: users ranked by true expected positives, written by the generator.

This module is the only place that reads `_synthetic_truth/`; nothing that fits or ranks imports it. On
real data the folder does not exist and every function here returns None."""

from __future__ import annotations

import numpy as np
import polars as pl

from audience.data.ids import IdMap, unique_sorted
from audience.data.layout import DatasetLayout
from audience.data.location import read_parquet


def oracle_candidates(layout: DatasetLayout, week: int | None, target_ids: np.ndarray) -> pl.DataFrame | None:
    """Long frame (clip row, user_id external, score, rank) of the oracle for the target clips, or None.
    Users are external ids: the oracle may rank users the run never indexed (no history in its fit weeks)."""
    if week is None:
        return None
    path = layout.truth_dir / f"oracle_week_{week:02d}.parquet"
    if not path.is_file():
        return None
    targets = pl.DataFrame({"item_id": pl.Series(target_ids, dtype=pl.UInt32)}).with_row_index("clip")
    frame = (
        read_parquet(path)
        .join(targets, on="item_id", how="inner")
        .explode("user_id", "score")
        .with_columns(
            pl.col("score").rank("ordinal", descending=True).over("clip").cast(pl.Int32).alias("rank")
        )
    )
    return frame.select(pl.col("clip").cast(pl.Int32), "user_id", "score", "rank")


def oracle_on_users(
    layout: DatasetLayout, week: int | None, target_ids: np.ndarray, known: IdMap
) -> tuple[pl.DataFrame, np.ndarray] | None:
    """The oracle's candidates on user indices, and the external ids those indices name: the run's users
    (`known`, in index order), then the truth week's users the run never indexed (so the ceiling keeps
    every user). None without an oracle."""
    oracle = oracle_candidates(layout, week, target_ids)
    if oracle is None:
        return None
    ids = oracle["user_id"].to_numpy()
    outside = unique_sorted(ids[known.lookup(ids) < 0])
    user_ids = np.concatenate([known.ids, outside]).astype(np.uint32)
    users = IdMap(user_ids, "users of the run and of the oracle")
    return oracle.with_columns(pl.Series("user", users.lookup(ids))).drop("user_id"), user_ids
