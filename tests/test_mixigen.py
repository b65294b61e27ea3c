"""MixiGen merge, fixed-quota merge and their objective against slow references; the value model learns
which source's positions are worth more; the pipeline writes both methods."""

from __future__ import annotations

import heapq
import json

import numpy as np
import polars as pl
import pytest
from conftest import tiny_config

from audience.config import MixiGenConfig
from audience.metrics import ndcg_per_clip, pool_ndcg, pool_recall
from audience.rank.mixigen import (
    MixiGen,
    kway_merge,
    long_candidates,
    position_trend,
    quota_merge,
    tune_quota,
    value_by_position,
)


def random_long(seed: int, n_clips=6, n_sources=3, depth=12, n_users=30) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for clip in range(n_clips):
        for source in range(n_sources):
            users = rng.choice(n_users, size=depth, replace=False)
            for position, user in enumerate(users, start=1):
                rows.append((clip, int(user), source, position))
    frame = pl.DataFrame(rows, schema=["clip", "user", "source", "position"], orient="row")
    return frame.with_columns(pl.col("clip").cast(pl.Int32), pl.col("source").cast(pl.Int8))


def slow_kway(frame: pl.DataFrame, value: np.ndarray, budget: int) -> dict[int, list[int]]:
    """Heap-based k-way merge of each clip's source lists by running-minimum value, skipping taken users."""
    out = {}
    rows = frame.with_columns(pl.Series("value", value)).to_dicts()
    for clip in sorted({r["clip"] for r in rows}):
        lists = {}
        for r in sorted((r for r in rows if r["clip"] == clip), key=lambda r: (r["source"], r["position"])):
            lists.setdefault(r["source"], []).append(r)
        for items in lists.values():
            running = np.inf
            for r in items:
                running = min(running, r["value"])
                r["merge"] = np.float32(running)
        heap = [(-items[0]["merge"], s, items[0]["position"], 0) for s, items in lists.items()]
        heapq.heapify(heap)
        taken: list[int] = []
        while heap and len(taken) < budget:
            _, s, _, i = heapq.heappop(heap)
            user = lists[s][i]["user"]
            if user not in taken:
                taken.append(user)
            if i + 1 < len(lists[s]):
                nxt = lists[s][i + 1]
                heapq.heappush(heap, (-nxt["merge"], s, nxt["position"], i + 1))
        out[clip] = taken
    return out


def as_lists(merged: pl.DataFrame) -> dict[int, list[int]]:
    ordered = merged.sort("clip", "rank")
    return {c: g["user"].to_list() for (c,), g in ordered.group_by("clip", maintain_order=True)}


@pytest.mark.parametrize("seed", range(5))
def test_kway_merge_equals_a_heap_merge(seed):
    frame = random_long(seed)
    value = np.random.default_rng(seed + 100).random(frame.height).astype(np.float32)
    merged = kway_merge(frame, value, budget=20)
    assert as_lists(merged) == slow_kway(frame, value, 20)
    assert merged.group_by("clip").agg(pl.col("user").n_unique() == pl.len())["user"].all()


@pytest.mark.parametrize("seed", range(3))
def test_quota_merge_interleaves_by_share(seed):
    frame = random_long(seed)
    shares = {0: 0.6, 1: 0.3, 2: 0.1}
    merged = quota_merge(frame, shares, budget=15)
    # slow reference: every row gets key position / share, rows taken in key order (ties by source)
    expected = {}
    for clip in range(6):
        rows = frame.filter(pl.col("clip") == clip).to_dicts()
        rows.sort(key=lambda r: (r["position"] / shares[r["source"]], r["source"]))
        taken: list[int] = []
        for r in rows:
            if r["user"] not in taken and len(taken) < 15:
                taken.append(r["user"])
        expected[clip] = taken
    assert as_lists(merged) == expected
    only_first = quota_merge(frame, {0: 1.0}, budget=15)
    assert (only_first["source"] == 0).all()


def test_pool_ndcg_matches_the_challenge_metric_when_the_pool_holds_every_positive():
    frame = random_long(7)
    rng = np.random.default_rng(7)
    labels = (
        frame.select("clip", "user")
        .unique()
        .with_columns(
            pl.Series(
                "label", (rng.random(frame.select("clip", "user").unique().height) < 0.2).astype(np.int8)
            )
        )
    )
    merged = quota_merge(frame, {0: 1.0, 1: 1.0, 2: 1.0}, budget=10)
    truth = labels.filter(pl.col("label") > 0).select(
        pl.col("clip").cast(pl.UInt32).alias("item_id"), pl.col("user").cast(pl.UInt32).alias("user_id")
    )
    lists = (
        merged.sort("clip", "rank")
        .group_by("clip", maintain_order=True)
        .agg(pl.col("user").cast(pl.UInt32).alias("user_id"))
        .select(pl.col("clip").cast(pl.UInt32).alias("item_id"), "user_id")
    )
    reference = ndcg_per_clip(lists, truth, 10)["ndcg"].mean()
    assert pool_ndcg(merged, labels, 10) == pytest.approx(reference, abs=1e-9)


def test_pool_recall_against_a_slow_count():
    frame = random_long(8)
    rng = np.random.default_rng(8)
    pairs = frame.select("clip", "user").unique().sort("clip", "user")
    labels = pairs.with_columns(pl.Series("label", (rng.random(pairs.height) < 0.2).astype(np.int8)))
    merged = quota_merge(frame, {0: 1.0, 2: 3.0}, budget=12)
    positives: dict[int, set] = {}
    for r in labels.filter(pl.col("label") > 0).iter_rows(named=True):
        positives.setdefault(r["clip"], set()).add(r["user"])
    shares = []
    for clip, users in positives.items():
        top = set(merged.filter((pl.col("clip") == clip) & (pl.col("rank") <= 7))["user"].to_list())
        shares.append(len(top & users) / len(users))
    assert pool_recall(merged, labels, 7) == pytest.approx(float(np.mean(shares)), abs=1e-12)


def synthetic_pool(seed: int, n_clips=300, depth=40) -> pl.DataFrame:
    """Two sources: source 'good' has positives concentrated at its head, 'noise' has few anywhere."""
    rng = np.random.default_rng(seed)
    parts = []
    for name, head_rate, tail_rate in (("good", 0.5, 0.02), ("noise", 0.03, 0.03)):
        clip = np.repeat(np.arange(n_clips), depth)
        position = np.tile(np.arange(1, depth + 1), n_clips)
        users = np.concatenate([rng.choice(5000, size=depth, replace=False) for _ in range(n_clips)])
        rate = np.where(position <= 10, head_rate, tail_rate)
        parts.append(
            pl.DataFrame(
                {
                    "clip": clip.astype(np.int32),
                    "user": users.astype(np.int32) + (0 if name == "good" else 5000),
                    f"rank__{name}": position.astype(np.int32),
                    f"score__{name}": (1.0 / position).astype(np.float32),
                    "label": (rng.random(clip.shape[0]) < rate).astype(np.int8),
                }
            )
        )
    pool = pl.concat(parts, how="diagonal")
    context = rng.random((pool.height, 2)).astype(np.float32)
    return pool.with_columns(
        pl.Series("user_log_views", context[:, 0]), pl.Series("clip_duration", context[:, 1])
    )


@pytest.mark.parametrize("objective", ["rank:ndcg", "binary:logistic"])
def test_mixigen_learns_which_positions_are_worth_more(objective):
    sources = ("good", "noise")
    cfg = MixiGenConfig(objective=objective, n_estimators=60, min_child_weight=5.0, negative_keep=1.0)
    train = long_candidates(synthetic_pool(0), sources)
    assert set(train["n_sources"].unique().to_list()) == {1}
    model = MixiGen(cfg, sources, seed=1).fit(train)
    test = long_candidates(synthetic_pool(1), sources)
    merged = kway_merge(test, model.value(test), budget=10)
    share_good = float((merged["source"] == 0).mean())
    assert share_good > 0.9
    table = value_by_position(test, model.value(test), sources)
    trend = position_trend(table)
    assert trend["good"] < -0.3  # positive rate falls after the head of the good source
    head = table.filter((pl.col("source_name") == "good") & (pl.col("position") <= 10))["value"].mean()
    tail = table.filter((pl.col("source_name") == "good") & (pl.col("position") > 10))["value"].mean()
    assert head > tail
    shares, _ = tune_quota(train, 2, 10, (0.25, 4.0), 2)
    assert shares[0] > shares[1]
    shares, best = tune_quota(train, 2, 10, (0.25, 4.0), 2, objective="recall")
    assert shares[0] > shares[1]
    assert best == pytest.approx(pool_recall(quota_merge(train, shares, 10), train, 10))


def test_learned_blend_in_the_pipeline(tiny_dir, tmp_path):
    from audience.pipeline import run_all

    cfg = tiny_config(tiny_dir, tmp_path / "run", learned_blend=True, rerank=False, final_method="mixigen")
    run = run_all(cfg, ("profiles", "candidates", "blend", "assign", "evaluate"))
    methods = {row["method"] for row in json.loads(run.path("results.json").read_text())["methods"]}
    assert {"mixigen", "quota", "blend"} <= methods
    merge = json.loads(run.path("mixigen", "merge.json").read_text())
    assert set(merge["quota_shares"]) == set(cfg.sources)
    assert sum(merge["quota_shares"].values()) == pytest.approx(1.0, abs=1e-3)
    table = pl.read_parquet(run.path("mixigen", "value_by_position.parquet"))
    assert set(table["source_name"].unique().to_list()) <= set(cfg.sources)
    for method in ("mixigen", "quota"):
        frame = run.candidates(method)
        assert frame.group_by("clip").agg(pl.col("user").n_unique() == pl.len())["user"].all()
        assert frame["rank"].max() <= cfg.candidate_depth


def test_mixigen_saved_and_loaded_gives_the_same_values(tmp_path):
    sources = ("good", "noise")
    train = long_candidates(synthetic_pool(0, n_clips=60), sources)
    model = MixiGen(MixiGenConfig(n_estimators=10, min_child_weight=5.0), sources, seed=1).fit(train)
    model.save(tmp_path / "mixigen")
    loaded = MixiGen.load(tmp_path / "mixigen")
    assert loaded.sources == list(sources) and loaded.report == model.report
    np.testing.assert_array_equal(loaded.value(train), model.value(train))
    meta = json.loads((tmp_path / "mixigen" / "meta.json").read_text())
    assert sum(meta["importance"].values()) == pytest.approx(1.0)
