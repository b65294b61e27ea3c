"""The synthetic dataset has the VK-LSVD layout, dtypes and the statistical shape the pipeline relies on."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from audience.data.embeddings import load_embeddings
from audience.data.layout import DatasetLayout
from audience.data.presets import preset
from audience.data.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, USERS_SCHEMA, check_schema
from audience.data.synthetic import REAL_RATES, GroupedSampler, build_world, generate
from audience.io import read_json


@pytest.fixture(scope="module")
def layout(tiny_dir) -> DatasetLayout:
    return DatasetLayout(tiny_dir)


def all_weeks(layout: DatasetLayout) -> list[Path]:
    return [*layout.train_weeks(), layout.validation_week(), layout.test_week()]


def test_layout_file_names_and_dtypes(layout):
    cfg = preset("tiny")
    assert [p.name for p in layout.train_weeks()] == [
        f"week_{w:02d}.parquet" for w in range(cfg.n_train_weeks)
    ]
    assert layout.validation_week().name == f"week_{cfg.n_train_weeks:02d}.parquet"
    assert layout.test_week().name == f"week_{cfg.n_train_weeks + 1:02d}.parquet"
    for path in all_weeks(layout):
        assert dict(pl.read_parquet_schema(path)) == INTERACTIONS_SCHEMA
    assert dict(pl.read_parquet_schema(layout.users_metadata)) == USERS_SCHEMA
    assert dict(pl.read_parquet_schema(layout.items_metadata)) == ITEMS_SCHEMA
    item_id, emb = load_embeddings(layout.item_embeddings)
    assert item_id.dtype == np.uint32 and emb.dtype == np.float16 and emb.shape == (cfg.n_items, 64)
    check_schema(layout.users_metadata, USERS_SCHEMA)


def test_subsample_layout(tmp_path):
    lay = generate(
        tmp_path,
        preset("tiny", n_users=300, n_items=400, n_authors=30, n_train_weeks=2),
        subsample="ur0.5",
        progress=False,
    )
    assert lay.interactions_root == tmp_path / "subsamples" / "ur0.5"
    assert len(lay.train_weeks()) == 2 and lay.validation_week().is_file() and lay.test_week().is_file()


def test_ids_are_sparse_and_pairs_never_repeat(layout):
    frames = pl.concat([pl.read_parquet(p, columns=["user_id", "item_id"]) for p in all_weeks(layout)])
    assert frames.select(pl.struct("user_id", "item_id").is_duplicated().sum()).item() == 0
    users = pl.read_parquet(layout.users_metadata)["user_id"]
    assert users.max() > users.len()  # anonymised ids, not 0..n-1
    assert frames["user_id"].is_in(users.implode()).all()


def test_heavy_tails(layout):
    frames = pl.concat([pl.read_parquet(p, columns=["user_id", "item_id"]) for p in layout.train_weeks()])
    for column in ("user_id", "item_id"):
        counts = np.sort(frames[column].value_counts()["count"].to_numpy())[::-1]
        top_decile = counts[: max(1, len(counts) // 10)].sum() / counts.sum()
        assert top_decile > 0.25, f"{column}: top 10% hold only {top_decile:.2f} of interactions"


def test_embedding_dimensions_ordered_by_variance(layout):
    _, emb = load_embeddings(layout.item_embeddings)
    second_moment = (emb.astype(np.float64) ** 2).mean(axis=0)
    assert np.all(np.diff(second_moment) <= 1e-6 * second_moment[0])


def test_flag_rates_near_real_times_multiplier(layout):
    cfg = preset("tiny")
    frames = pl.concat([pl.read_parquet(p) for p in layout.train_weeks()])
    for flag, rate in REAL_RATES.items():
        observed = frames[flag].mean()
        assert 0.6 * rate * cfg.rate_multiplier < observed < 1.5 * rate * cfg.rate_multiplier, flag


def test_every_week_brings_new_clips_that_fade(layout):
    seen: set[int] = set()
    for path in all_weeks(layout):
        items = set(pl.read_parquet(path, columns=["item_id"])["item_id"].unique().to_list())
        if seen:
            assert len(items - seen) > 0.2 * len(items), f"{path.name}: too few new clips"
        seen |= items
    # clips fade: a clip's views in the week after its first week are fewer on average
    weeks = [
        pl.read_parquet(p, columns=["item_id"]).with_columns(pl.lit(i).alias("w"))
        for i, p in enumerate(all_weeks(layout))
    ]
    counts = pl.concat(weeks).group_by("item_id", "w").len()
    first = counts.group_by("item_id").agg(pl.col("w").min().alias("w0"))
    age = counts.join(first, on="item_id").with_columns((pl.col("w") - pl.col("w0")).alias("age"))
    by_age = age.group_by("age").agg(pl.col("len").mean()).sort("age")["len"].to_list()
    assert by_age[1] < by_age[0]


def test_demographics_correlate_with_taste():
    cfg = preset("tiny", seed=5)
    world = build_world(cfg)
    female = world.user_gender == 2
    young = world.user_age < 30
    gap = np.abs(world.user_theta[female & young].mean(0) - world.user_theta[~female & ~young].mean(0)).sum()
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(female & young)
    null = np.abs(world.user_theta[shuffled].mean(0) - world.user_theta[~shuffled].mean(0)).sum()
    assert gap > 2 * null


def test_deterministic_given_seed(tmp_path):
    small = {"n_users": 200, "n_items": 300, "n_authors": 20, "n_train_weeks": 2}
    a = generate(tmp_path / "a", preset("tiny", **small), progress=False)
    b = generate(tmp_path / "b", preset("tiny", **small), progress=False)
    for pa, pb in zip(all_weeks(a), all_weeks(b), strict=True):
        assert pl.read_parquet(pa).equals(pl.read_parquet(pb))
    c = generate(tmp_path / "c", preset("tiny", seed=1, **small), progress=False)
    assert not pl.read_parquet(all_weeks(a)[0]).equals(pl.read_parquet(all_weeks(c)[0]))


def test_truth_is_separate_and_pipeline_code_never_reads_it(layout):
    assert layout.truth_dir.is_dir() and not layout.truth_dir.is_relative_to(layout.interactions_root)
    summary = read_json(layout.truth_dir / "generator.json")
    assert summary["rows"] > 0
    src = Path(__file__).resolve().parents[1] / "src" / "audience"
    # the generator and its metadata padding write the truth folder; only the oracle reads it
    allowed = {"data/synthetic.py", "data/metadata_padding.py", "data/layout.py", "evaluation/oracle.py"}
    readers = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if re.search(r"truth_dir|_synthetic_truth|TRUTH_DIRNAME", p.read_text())
    ]
    assert set(readers) <= allowed, readers


def test_grouped_sampler_matches_weights():
    rng = np.random.default_rng(0)
    group = np.array([0, 0, 1, 1, 1, 2])
    weight = np.array([1.0, 3.0, 1.0, 1.0, 2.0, 5.0])
    sampler = GroupedSampler(group, weight, n_groups=4)
    draws, ok = sampler.sample(np.ones(40_000, dtype=np.int64), rng)
    assert ok.all()
    freq = np.bincount(draws, minlength=6) / draws.size
    np.testing.assert_allclose(freq[2:5], [0.25, 0.25, 0.5], atol=0.015)
    assert freq[[0, 1, 5]].sum() == 0
    _, ok = sampler.sample(np.array([3]), rng)
    assert not ok[0]  # empty group reported, not silently drawn
