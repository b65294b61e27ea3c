"""Vectorized streamed profiles equal the notebook-style per-user loop."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from audience.data.catalog import load_catalog
from audience.data.layout import DatasetLayout
from audience.data.schema import DEFAULT_POSITIVE_FLAGS
from audience.profiles.fit_data import build_fit_data


@pytest.fixture(scope="module")
def setup(tiny_dir):
    layout = DatasetLayout(tiny_dir)
    catalog = load_catalog(layout, embedding_dim=32)
    fit = build_fit_data(layout.train_weeks(), catalog, DEFAULT_POSITIVE_FLAGS, progress=False)
    return layout, catalog, fit


def reference_profiles(layout, catalog, flags):
    """The slow way: every interaction in one frame, then a Python loop over users."""
    frame = pl.concat([pl.read_parquet(p) for p in layout.train_weeks()])
    frame = frame.with_columns(pl.any_horizontal(list(flags)).alias("pos"))
    emb = {int(i): catalog.embedding[k] for k, i in enumerate(catalog.items.ids) if catalog.has_embedding[k]}
    out = {"all": {}, "positive": {}}
    for (user_id,), rows in frame.group_by(["user_id"]):
        items = rows["item_id"].to_list()
        pos = rows["pos"].to_list()
        for name, keep in (("all", [True] * len(items)), ("positive", pos)):
            vecs = [emb[i] for i, k in zip(items, keep, strict=True) if k and i in emb]
            if vecs:
                mean = np.mean(vecs, axis=0)
                out[name][int(user_id)] = mean / np.linalg.norm(mean)
    return out, frame


def test_profiles_equal_per_user_loop(setup):
    layout, catalog, fit = setup
    ref, frame = reference_profiles(layout, catalog, DEFAULT_POSITIVE_FLAGS)
    for name in ("all", "positive"):
        users = catalog.users.lookup(np.array(list(ref[name]), dtype=np.uint32))
        np.testing.assert_allclose(fit.profiles[name][users], np.stack(list(ref[name].values())), atol=1e-5)
        no_profile = np.setdiff1d(np.arange(catalog.n_users), users)
        assert np.all(fit.profiles[name][no_profile] == 0)
        assert np.all(fit.profile_weight[name][no_profile] == 0)
    counts = frame.group_by("user_id").agg(pl.len(), pl.col("pos").sum())
    idx = catalog.users.lookup(counts["user_id"].to_numpy())
    np.testing.assert_array_equal(fit.user_views[idx], counts["len"].to_numpy())
    np.testing.assert_array_equal(fit.user_positives[idx], counts["pos"].to_numpy())


def test_fit_data_roundtrip(setup, tmp_path):
    _, _, fit = setup
    fit.save(tmp_path / "fit.npz")
    back = type(fit).load(tmp_path / "fit.npz")
    np.testing.assert_array_equal(back.user_views, fit.user_views)
    for name in fit.profiles:
        np.testing.assert_array_equal(back.profiles[name], fit.profiles[name])


def test_chunked_stream_equals_whole_weeks(setup):
    layout, catalog, fit = setup
    chunked = build_fit_data(
        layout.train_weeks(), catalog, DEFAULT_POSITIVE_FLAGS, progress=False, chunk_rows=997
    )
    np.testing.assert_array_equal(chunked.user_views, fit.user_views)
    np.testing.assert_array_equal(chunked.item_positives, fit.item_positives)
    for name in fit.profiles:
        np.testing.assert_allclose(chunked.profiles[name], fit.profiles[name], atol=1e-6)
