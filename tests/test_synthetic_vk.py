"""The vk-shaped presets and the fast generator: density, heavy tail, the test week's new clips, chunk- and
thread-invariance, the alias sampler and the pruned oracle against their brute-force references, the
stocked shape's release weeks and exposure, and `synth`'s shape and warm-target flags."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numba as nb
import numpy as np
import polars as pl
import pytest

from audience.cli import main as cli_main
from audience.data import synthetic
from audience.data import synthetic_kernels as kernels
from audience.data.layout import DatasetLayout
from audience.data.presets import preset
from audience.data.schema import INTERACTIONS_SCHEMA
from audience.data.targets import mixed_targets_path
from audience.io import read_json

# vk-small's density and catalogue with 300 users and 4 weeks; new test clips scaled like vk-small's
VK_TINY = {"n_users": 300, "n_train_weeks": 2, "test_new_items": 143}
SMALL = {"n_users": 200, "n_items": 300, "n_authors": 20, "n_train_weeks": 2}


def weeks(layout: DatasetLayout) -> list[Path]:
    return [*layout.train_weeks(), layout.validation_week(), layout.test_week()]


@pytest.fixture(scope="module")
def vk_tiny(tmp_path_factory) -> DatasetLayout:
    return synthetic.generate(tmp_path_factory.mktemp("vk"), preset("vk-small", **VK_TINY), progress=False)


def test_vk_presets_shape():
    vk, small = preset("vk"), preset("vk-small")
    assert (vk.n_users, vk.n_items, vk.n_train_weeks, vk.test_new_items) == (100_000, 196_277, 25, 47_765)
    assert vk.test_new_items <= vk.n_users  # the cap: n_users x 100 slots / 100 users per clip
    assert vk.global_metadata and not small.global_metadata
    assert small.n_users == 10_000 and small.views_per_user_week == vk.views_per_user_week
    assert abs(small.test_new_items - vk.test_new_items * small.n_users / vk.n_users) <= 1


def test_vk_density_tail_dtypes_and_unique_pairs(vk_tiny):
    cfg = preset("vk-small", **VK_TINY)
    for path in weeks(vk_tiny):
        assert dict(pl.read_parquet_schema(path)) == INTERACTIONS_SCHEMA
    train = pl.concat([pl.read_parquet(p, columns=["user_id", "item_id"]) for p in vk_tiny.train_weeks()])
    per_user_week = train.height / (cfg.n_users * cfg.n_train_weeks)
    assert 500 < per_user_week < 1300, per_user_week  # ~544 over 25 weeks; the first weeks repeat less
    counts = np.sort(train["user_id"].value_counts()["count"].to_numpy())[::-1]
    assert counts[: len(counts) // 10].sum() / counts.sum() > 0.2  # the top decile of users: heavy tail
    assert counts.max() > 4 * np.median(counts)
    everything = pl.concat([pl.read_parquet(p, columns=["user_id", "item_id"]) for p in weeks(vk_tiny)])
    assert everything.select(pl.struct("user_id", "item_id").is_duplicated().sum()).item() == 0


def test_vk_test_week_releases_new_clips(vk_tiny):
    cfg = preset("vk-small", **VK_TINY)
    world = synthetic.build_world(cfg)
    assert int((world.item_release == cfg.n_weeks - 1).sum()) == cfg.test_new_items
    released = set(world.item_ids[world.item_release == cfg.n_weeks - 1].tolist())
    before = pl.concat([pl.read_parquet(p, columns=["item_id"]) for p in weeks(vk_tiny)[:-1]])["item_id"]
    test_items = set(pl.read_parquet(vk_tiny.test_week(), columns=["item_id"])["item_id"].to_list())
    new = test_items - set(before.to_list())
    assert len(released & new) >= 0.8 * cfg.test_new_items  # most released clips get views
    oracle = pl.read_parquet(vk_tiny.truth_dir / f"oracle_week_{cfg.n_weeks - 1:02d}.parquet")
    assert set(oracle["item_id"].to_list()) == new


def test_chunked_writing_equals_unchunked_and_threads_do_not_matter(tmp_path):
    cfg = preset("tiny", **SMALL)
    whole = synthetic.generate(tmp_path / "whole", cfg, progress=False)
    chunked = synthetic.generate(tmp_path / "chunked", cfg, progress=False, chunk_rows=500)
    threads = nb.get_num_threads()
    try:
        nb.set_num_threads(1)
        serial = synthetic.generate(tmp_path / "serial", cfg, progress=False)
    finally:
        nb.set_num_threads(threads)
    for a, b, c in zip(weeks(whole), weeks(chunked), weeks(serial), strict=True):
        assert pl.read_parquet(a).equals(pl.read_parquet(b))
        assert pl.read_parquet(a).equals(pl.read_parquet(c))
    sizes = [pl.read_parquet(p).height for p in weeks(whole)]
    assert max(sizes) > 1000  # so chunk_rows=500 did split weeks into several chunks
    for name in ("users_metadata.parquet", "items_metadata.parquet"):
        assert pl.read_parquet(whole.metadata_dir / name).equals(pl.read_parquet(chunked.metadata_dir / name))
    assert read_json(whole.truth_dir / "generator.json") == read_json(chunked.truth_dir / "generator.json")


def test_global_metadata_field_pads(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "REAL_USERS", 500)
    monkeypatch.setattr(synthetic, "REAL_ITEMS", 700)
    layout = synthetic.generate(tmp_path, preset("tiny", global_metadata=True, **SMALL), progress=False)
    assert pl.read_parquet(layout.users_metadata).height == 500
    assert pl.read_parquet(layout.items_metadata).height == 700
    assert read_json(layout.truth_dir / "metadata_padding.json")["items"]["own"] == SMALL["n_items"]


@nb.njit
def _draw_many(table, start, end, group, n, seed):
    out = np.empty(n, dtype=np.int64)
    state = kernels.stream(seed, 0, 0, 0)
    for i in range(n):
        state, v = kernels.uniform(state)
        out[i] = kernels._draw(table, start, end, group, v)
    return out


def test_alias_sampler_matches_weights():
    weight = np.array([1.0, 3.0, 1.0, 1.0, 2.0, 5.0, 0.5])
    start, end = np.array([0, 2, 5, 7]), np.array([2, 5, 7, 7])  # groups of 2, 3, 2 elements and an empty one
    prob, alias = kernels.build_alias(start, end, weight)
    table = kernels.pack_alias(prob, alias, np.arange(10, 17))
    draws = _draw_many(table, start, end, 1, 60_000, 3)
    freq = np.bincount(draws - 10, minlength=7) / draws.size
    np.testing.assert_allclose(freq[2:5], [0.25, 0.25, 0.5], atol=0.012)
    assert freq[[0, 1, 5, 6]].sum() == 0
    draws = _draw_many(table, start, end, 2, 60_000, 4)
    np.testing.assert_allclose(
        np.bincount(draws - 10, minlength=7)[5:] / draws.size, [10 / 11, 1 / 11], atol=0.01
    )


def test_pruned_oracle_equals_brute_force():
    cfg = preset("tiny", seed=3)
    world = synthetic.build_world(cfg)
    week = cfg.n_weeks - 1
    offsets = {"like": -3.7, "open_comments": -4.4, "share": -6.3, "click_on_author": -7.2, "bookmark": -7.8}
    offsets["dislike"] = -7.0
    items = np.flatnonzero(world.item_release == week)[:40]
    users, scores = synthetic.oracle_top(world, cfg, week, items, offsets)
    reference = synthetic.WeekOracle(world, cfg, week, offsets).scores(items).astype(np.float64)
    depth = users.shape[1]
    assert depth == cfg.oracle_depth
    np.testing.assert_allclose(scores, np.take_along_axis(reference, users, axis=1), rtol=1e-4)
    kth = np.sort(reference, axis=1)[:, ::-1][:, depth - 1]
    assert np.all(scores[:, -1] >= kth * (1 - 1e-4))  # nothing better than the last kept was skipped
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert all(len(set(row)) == depth for row in users.tolist())


def test_stocked_world_differs_from_rolling_only_in_release_weeks():
    cfg = preset("tiny", seed=3)
    rolling, stocked = synthetic.build_world(cfg), synthetic.build_world(replace(cfg, shape="stocked"))
    for name in ("item_quality", "item_embedding", "user_taste", "fan_keys", "user_ids", "item_ids"):
        assert np.array_equal(getattr(rolling, name), getattr(stocked, name)), name
    new_weeks = {cfg.n_train_weeks, cfg.n_train_weeks + 1}
    assert set(np.unique(stocked.item_release).tolist()) == {0} | new_weeks
    assert abs((stocked.item_release > 0).mean() - cfg.stocked_new_share) < 0.03
    exact = synthetic.build_world(replace(cfg, shape="stocked", test_new_items=40))
    assert int((exact.item_release == cfg.n_weeks - 1).sum()) == 40
    assert set(np.unique(exact.item_release).tolist()) <= {0} | new_weeks


def test_stocked_exposure_never_fades_and_new_clips_start_boosted():
    cfg = preset("tiny", seed=3, shape="stocked")
    world = synthetic.build_world(cfg)
    stock, new = world.item_release == 0, world.item_release == cfg.n_train_weeks
    for week in (0, cfg.n_train_weeks - 1, cfg.n_weeks - 1):  # the catalogue: its quality in every week
        weight = synthetic._week_weight(world, cfg, week)
        np.testing.assert_allclose(weight[stock], world.item_quality[stock])
    assert (synthetic._week_weight(world, cfg, cfg.n_train_weeks - 1)[new] == 0).all()
    at_release = synthetic._week_weight(world, cfg, cfg.n_train_weeks)[new]
    np.testing.assert_allclose(at_release, cfg.new_clip_boost * world.item_quality[new])
    after = synthetic._week_weight(world, cfg, cfg.n_train_weeks + 1)[new]
    np.testing.assert_allclose(after, cfg.freshness_decay * at_release)
    assert synthetic._dedupe_window(cfg) == cfg.n_weeks  # no pair repeats: stocked clips never die


def test_synth_cli_shape_and_warm_targets(tmp_path):
    out = tmp_path / "stocked"
    args = ["synth", "--preset", "tiny", "--data-dir", str(out), "--shape", "stocked", "--warm-targets", "20"]
    assert cli_main([*args, "--quiet"]) == 0
    layout = DatasetLayout(out)
    assert read_json(layout.truth_dir / "generator.json")["config"]["shape"] == "stocked"
    for split in ("validation", "test"):
        mixed = pl.read_parquet(mixed_targets_path(layout, split))
        assert mixed["warm"].sum() == 20 and (~mixed["warm"]).sum() > 0
    partial = synthetic.generate(  # two weeks: no validation week, so no mixed targets
        tmp_path / "partial", preset("tiny", warm_targets=20), progress=False, weeks=2
    )
    assert not mixed_targets_path(partial, "validation").exists()
