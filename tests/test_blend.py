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
    frames = _sources(6, 40, 10, 3)
    weights = {"s0": 2.0, "s1": 1.0, "s2": 0.5}
    blended = rrf_blend(frames, k=60.0, weights=weights)
    expected: dict[tuple[int, int], float] = defaultdict(float)
    for name, frame in frames.items():
        for clip, user, rank in frame.select("clip", "user", "rank").iter_rows():
            expected[(clip, user)] += weights[name] / (60.0 + rank)
    got = {(c, u): s for c, u, s in blended.select("clip", "user", "score").iter_rows()}
    assert got.keys() == expected.keys()
    assert all(abs(got[key] - value) < 1e-6 for key, value in expected.items())
    for _, part in blended.group_by("clip"):  # ranks 1..n in descending score within each clip
        assert part.sort("rank")["score"].is_sorted(descending=True)
        assert part["rank"].sort().to_list() == list(range(1, part.height + 1))


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
