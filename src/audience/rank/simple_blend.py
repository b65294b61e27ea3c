"""Reciprocal-rank fusion of candidate sources: no training, robust to score scales that differ by source.

score(clip, user) = sum over sources s of weight_s / (k + rank_s(clip, user)). Fully vectorized with polars
(concatenate the long frames, group by (clip, user)). Cost O(total candidates)."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from audience.arrays import rank_within_clip


def rrf_blend(
    frames: Mapping[str, pl.DataFrame],
    k: float = 60.0,
    depth: int | None = None,
    weights: Mapping[str, float] | None = None,
) -> pl.DataFrame:
    """Blend long candidate frames (clip, user, rank) into one (clip, user, score, rank, source='blend')."""
    parts = [
        frame.select(
            "clip", "user", (float((weights or {}).get(name, 1.0)) / (k + pl.col("rank"))).alias("score")
        )
        for name, frame in frames.items()
    ]
    blended = pl.concat(parts).group_by("clip", "user").agg(pl.col("score").sum()).pipe(rank_within_clip)
    if depth is not None:
        blended = blended.filter(pl.col("rank") <= depth)
    return blended.with_columns(pl.col("score").cast(pl.Float32), pl.lit("blend").alias("source"))
