"""Reciprocal-rank fusion: the formula against a slow loop, and the blocked file blend against the
one-shot blend."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import polars as pl

from audience.arrays import TopK
from audience.rank.simple_blend import rrf_blend, rrf_blend_files


def _sources(n_clips: int, n_users: int, k: int, n_sources: int, seed: int = 0) -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    frames = {}
    for s in range(n_sources):
        ids = np.stack([rng.choice(n_users, size=k, replace=False) for _ in range(n_clips)]).astype(np.int32)
        ids[rng.random(ids.shape) < 0.1] = -1  # short lists
        scores = -np.sort(-rng.random(ids.shape), axis=1).astype(np.float32)
        frames[f"s{s}"] = TopK(ids, scores).to_frame(f"s{s}")
    return frames


def test_rrf_matches_a_slow_loop():
    # each pair's terms summed in ascending order, rows by clip, then score descending, user ascending
    frames = _sources(6, 40, 10, 3)
    frames["s3"] = frames["s1"].with_columns(pl.col("rank").reverse().over("clip"))  # many exact ties
    weights = {"s0": 2.0, "s1": 1.0, "s2": 0.5, "s3": 1.0}
    blended = rrf_blend(frames, k=60.0, weights=weights)
    terms: dict[tuple[int, int], list[float]] = defaultdict(list)
    for name, frame in frames.items():
        for clip, user, rank in frame.select("clip", "user", "rank").iter_rows():
            terms[(clip, user)].append(weights[name] / (60.0 + rank))
    rows = []
    for (clip, user), values in terms.items():
        total = 0.0
        for value in sorted(values):
            total += value
        rows.append((clip, -total, user))
    rows.sort()
    assert blended["clip"].to_list() == [c for c, _, _ in rows]
    assert blended["user"].to_list() == [u for _, _, u in rows]
    np.testing.assert_array_equal(blended["score"].to_numpy(), np.array([-t for _, t, _ in rows], np.float32))
    ranks = [sum(1 for c2, _, _ in rows[: i + 1] if c2 == c) for i, (c, _, _) in enumerate(rows)]
    assert blended["rank"].to_list() == ranks
    assert len({t for _, t, _ in rows}) < len(rows)  # ties were there to break


def test_swapped_ranks_tie_exactly_whatever_the_source_order():
    a = pl.DataFrame({"clip": [0, 0, 0], "user": [5, 3, 9], "rank": [1, 2, 3]})
    b = pl.DataFrame({"clip": [0, 0, 0], "user": [9, 5, 3], "rank": [1, 2, 3]})
    c = pl.DataFrame({"clip": [0, 0, 0], "user": [3, 9, 5], "rank": [1, 2, 3]})
    for frames in ({"a": a, "b": b, "c": c}, {"c": c, "a": a, "b": b}, {"b": b, "c": c, "a": a}):
        blended = rrf_blend(frames, k=7.0)
        assert blended["user"].to_list() == [3, 5, 9]  # one score for all three: users ascending
        assert blended["score"].n_unique() == 1


def test_blocked_file_blend_equals_the_one_shot_blend(tmp_path):
    frames = _sources(23, 200, 30, 4, seed=3)
    paths = {}
    for name, frame in frames.items():
        paths[name] = tmp_path / f"{name}.parquet"
        frame.write_parquet(paths[name], row_group_size=50)
    one_shot = rrf_blend(frames, k=30.0, depth=25)
    for block in (1, 5, 23, 64):
        blocked = rrf_blend_files(paths, 23, k=30.0, depth=25, block_clips=block)
        assert blocked.select("clip", "user", "rank").equals(one_shot.select("clip", "user", "rank"))
        np.testing.assert_allclose(blocked["score"].to_numpy(), one_shot["score"].to_numpy(), rtol=1e-6)
