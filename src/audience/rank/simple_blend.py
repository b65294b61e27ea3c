"""Reciprocal-rank fusion of candidate sources: no training, robust to score scales that differ by source.

score(clip, user) = sum over sources s of weight_s / (k + rank_s(clip, user)), each pair's terms added in
ascending order, so the score depends only on the pair's ranks, not on the order of the sources: pairs
with the same ranks in swapped sources tie exactly, and ties go to the smaller user id (the tie rule of
`arrays`). Per clip in numba threads: the clip's terms sorted by (user, term), summed per user, then the
top `depth` selected (`arrays.select_top`). Cost O(T log T) per clip for its T terms. `rrf_blend_files`
blends the sources' parquet files block of clips by block, so memory holds one block of every source (and
the blend's output) instead of every source's frame."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numba as nb
import numpy as np
import polars as pl

from audience.arrays import TopK, key_buckets, select_top


@nb.njit(parallel=True, cache=True, nogil=True)
def _rrf_top(offsets, order, user, term, depth, ids, scores):  # pragma: no cover - numba
    """Clip c's terms are order[offsets[c]:offsets[c + 1]]: sums per user in ascending term order, then the
    top `depth` users by (sum descending, user ascending) into ids[c] / scores[c]."""
    for c in nb.prange(offsets.size - 1):
        lo, hi = offsets[c], offsets[c + 1]
        if hi == lo:
            continue
        rows = order[lo:hi]
        by_term = np.argsort(term[rows], kind="mergesort")
        rows = rows[by_term]
        rows = rows[np.argsort(user[rows], kind="mergesort")]  # by user, terms ascending within each
        users = np.empty(hi - lo, dtype=user.dtype)
        sums = np.empty(hi - lo, dtype=np.float64)
        m = -1
        for r in rows:
            if m < 0 or users[m] != user[r]:
                m += 1
                users[m] = user[r]
                sums[m] = term[r]
            else:
                sums[m] += term[r]
        select_top(users, sums, m + 1, depth, ids[c], scores[c])


def rrf_blend(
    frames: Mapping[str, pl.DataFrame],
    k: float = 60.0,
    depth: int | None = None,
    weights: Mapping[str, float] | None = None,
) -> pl.DataFrame:
    """Blend long candidate frames (clip, user, rank) into one (clip, user, score, rank, source='blend'),
    rows by clip then rank; `depth` keeps each clip's best that many (default all)."""
    clip = np.concatenate([f["clip"].to_numpy() for f in frames.values()] or [np.zeros(0, np.int32)])
    user = np.concatenate([f["user"].to_numpy() for f in frames.values()] or [np.zeros(0, np.int32)])
    term = np.concatenate(
        [
            float((weights or {}).get(name, 1.0)) / (k + f["rank"].to_numpy().astype(np.float64))
            for name, f in frames.items()
        ]
        or [np.zeros(0)]
    )
    if clip.size == 0:
        return TopK.empty(0, 0).to_frame("blend")
    first = int(clip.min())
    local = (clip - first).astype(np.int64)
    offsets, order = key_buckets(local, int(local.max()) + 1)
    width = int(np.diff(offsets).max()) if depth is None else depth
    top = TopK.empty(offsets.size - 1, width)
    scores = np.full(top.ids.shape, -np.inf)
    _rrf_top(offsets, order, user.astype(np.int32), term, width, top.ids, scores)
    blended = TopK(top.ids, scores).to_frame("blend")
    return blended.with_columns((pl.col("clip") + first).cast(pl.Int32))


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
