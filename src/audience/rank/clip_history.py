"""Clip-history features of a pool: a warm target's fit-week views, positives, positive rate and age in
weeks (data/target_history.py), NaN for a clip without history (cold or pseudo-new)."""

from __future__ import annotations

import numpy as np
import polars as pl

HISTORY_FEATURES = ("clip_past_views", "clip_past_positives", "clip_past_positive_rate", "clip_age_weeks")


def history_features(pool: pl.DataFrame, item_ids: np.ndarray, history: pl.DataFrame) -> pl.DataFrame:
    """The pool with the clip-history columns: views, positives and positive rate in the fit weeks, age in
    weeks since its first fit-week interaction (NaN for a clip without history: cold or pseudo-new)."""
    per_clip = history.group_by("item_id").agg(
        pl.len().cast(pl.Float32).alias("clip_past_views"),
        pl.col("positive").sum().cast(pl.Float32).alias("clip_past_positives"),
        (pl.col("weeks_ago").max() + 1).cast(pl.Float32).alias("clip_age_weeks"),
    )
    clips = (
        pl.DataFrame({"item_id": pl.Series(item_ids, dtype=pl.UInt32)})
        .with_row_index("clip")
        .join(per_clip, on="item_id", how="left")
        .with_columns(
            pl.col("clip_past_views").fill_null(0.0),
            pl.col("clip_past_positives").fill_null(0.0),
            (pl.col("clip_past_positives") / pl.col("clip_past_views")).alias("clip_past_positive_rate"),
        )
        .select(pl.col("clip").cast(pool.schema["clip"]), *HISTORY_FEATURES)
        .with_columns(pl.col(HISTORY_FEATURES).cast(pl.Float32).fill_nan(None).fill_null(np.nan))
    )
    return pool.join(clips, on="clip", how="left")
