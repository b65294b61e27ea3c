"""Reciprocal-rank fusion of candidate sources: no training, robust to score scales that differ by source.

score(clip, user) = sum over sources s of weight_s / (k + rank_s(clip, user)). Fully vectorized with polars
(concatenate the long frames, group by (clip, user)). Cost O(total candidates). `rrf_blend_files` blends
the sources' parquet files block of clips by block, so memory holds one block of every source (and the
blend's output) instead of every source's frame and the group-by over all of them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

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


def rrf_blend_files(
    paths: Mapping[str, Path],
    n_clips: int,
    k: float = 60.0,
    depth: int | None = None,
    weights: Mapping[str, float] | None = None,
    block_clips: int = 4096,
) -> pl.DataFrame:
    """`rrf_blend` of the sources' candidate files (clip, user, rank columns), read `block_clips` clips at
    a time (a filter on clip that parquet's row-group statistics prune when the files are sorted by clip).
    The blend of a clip reads only its own rows, so the result equals the one-shot blend's."""
    parts = []
    for lo in range(0, max(n_clips, 1), block_clips):
        block = {
            name: pl.scan_parquet(path)
            .filter(pl.col("clip").is_between(lo, lo + block_clips - 1))
            .select("clip", "user", "rank")
            .collect()
            for name, path in paths.items()
        }
        parts.append(rrf_blend(block, k, depth, weights))
    return pl.concat(parts)
