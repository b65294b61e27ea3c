"""Vectorized streamed profiles equal the notebook-style per-user loop, for every profile kind."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from audience.config import ProfileSettings
from audience.data.catalog import load_catalog
from audience.data.layout import DatasetLayout
from audience.data.schema import DEFAULT_POSITIVE_FLAGS
from audience.profiles.kinds import KIND, WEEKLY_KINDS, flag_tables, packed_flags, view_weights
from audience.profiles.reference_pass import build_fit_data

SETTINGS = ProfileSettings()


@pytest.fixture(scope="module")
def setup(tiny_dir):
    layout = DatasetLayout(tiny_dir)
    catalog = load_catalog(layout, embedding_dim=32)
    fit = build_fit_data(layout.train_weeks(), catalog, DEFAULT_POSITIVE_FLAGS, SETTINGS, progress=False)
    return layout, catalog, fit


def row_weight(kind: str, row: dict, duration: float, age: int) -> float:
    positive = any(row[f] for f in DEFAULT_POSITIVE_FLAGS)
    if kind == "all":
        return 1.0
    if kind == "positive":
        return sum(w for f, w in SETTINGS.flag_weights.items() if row[f])
    if kind == "negative":
        skip = row["timespent"] < SETTINGS.skip_share * duration
        return float((row["dislike"] or skip) and not positive)
    if kind == "timespent":
        return min(row["timespent"] / duration, SETTINGS.watch_cap)
    if kind == "recency":
        return 0.5 ** (age / SETTINGS.recency_half_life)
    raise AssertionError(kind)


def reference_profiles(layout, catalog):
    """The slow way, as the exploratory notebook did it: a Python loop over users and their rows."""
    weeks = layout.train_weeks()
    frame = pl.concat(
        [
            pl.read_parquet(p).with_columns(pl.lit(len(weeks) - 1 - k).alias("age"))
            for k, p in enumerate(weeks)
        ]
    )
    emb = {int(i): catalog.embedding[k] for k, i in enumerate(catalog.items.ids) if catalog.has_embedding[k]}
    dur = {int(i): max(float(catalog.item_duration[k]), 1.0) for k, i in enumerate(catalog.items.ids)}
    out: dict[str, dict[int, np.ndarray]] = {kind: {} for kind in SETTINGS.kinds}
    for (user_id,), rows in frame.group_by(["user_id"]):
        for kind in SETTINGS.kinds:
            total, weight = np.zeros(catalog.embedding.shape[1]), 0.0
            for row in rows.iter_rows(named=True):
                if row["item_id"] not in emb:
                    continue
                w = row_weight(kind, row, dur[row["item_id"]], row["age"])
                total += w * emb[row["item_id"]]
                weight += w
            if weight > 0 and np.linalg.norm(total) > 0:
                out[kind][int(user_id)] = total / np.linalg.norm(total)
    return out, frame


def test_profiles_equal_per_user_loop(setup):
    layout, catalog, fit = setup
    ref, frame = reference_profiles(layout, catalog)
    for kind in SETTINGS.kinds:
        assert ref[kind], kind
        users = catalog.users.lookup(np.array(list(ref[kind]), dtype=np.uint32))
        np.testing.assert_allclose(fit.profiles[kind][users], np.stack(list(ref[kind].values())), atol=1e-5)
        no_profile = np.setdiff1d(np.arange(catalog.n_users), users)
        assert np.all(fit.profiles[kind][no_profile] == 0), kind
    positive = frame.with_columns(pl.any_horizontal(list(DEFAULT_POSITIVE_FLAGS)).alias("pos"))
    counts = positive.group_by("user_id").agg(pl.len(), pl.col("pos").sum())
    idx = catalog.users.lookup(counts["user_id"].to_numpy())
    np.testing.assert_array_equal(fit.user_views[idx], counts["len"].to_numpy())
    np.testing.assert_array_equal(fit.user_positives[idx], counts["pos"].to_numpy())


def test_profile_kinds_differ(setup):
    _, _, fit = setup
    users = np.flatnonzero(fit.profile_weight["negative"] > 0)
    cos = (fit.profiles["all"][users] * fit.profiles["negative"][users]).sum(axis=1)
    assert 0.0 < np.median(cos) < 0.999


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
        layout.train_weeks(), catalog, DEFAULT_POSITIVE_FLAGS, SETTINGS, progress=False, chunk_rows=997
    )
    np.testing.assert_array_equal(chunked.user_views, fit.user_views)
    np.testing.assert_array_equal(chunked.item_positives, fit.item_positives)
    for name in fit.profiles:
        np.testing.assert_allclose(chunked.profiles[name], fit.profiles[name], atol=1e-6)


def test_view_weights_follow_each_kinds_definition():
    """profiles/kinds.view_weights against the kinds' definitions written out in numpy."""
    settings = ProfileSettings()
    flags_used = packed_flags(DEFAULT_POSITIVE_FLAGS, settings)
    tables = flag_tables(flags_used, DEFAULT_POSITIVE_FLAGS, settings)
    rng = np.random.default_rng(0)
    n = 5000
    bits = {f: rng.random(n) < 0.2 for f in flags_used}
    packed = sum(bits[f].astype(np.uint8) << np.uint8(k) for k, f in enumerate(flags_used)).astype(np.uint8)
    timespent = rng.integers(0, 256, n).astype(np.uint8)
    duration = rng.integers(1, 120, n).astype(np.float32)
    positive = np.any([bits[f] for f in DEFAULT_POSITIVE_FLAGS], axis=0)
    expected = {
        "all": np.ones(n, dtype=np.float32),
        "positive": sum(np.float32(w) * bits[f] for f, w in settings.flag_weights.items()),
        "negative": ((bits["dislike"] | (timespent < settings.skip_share * duration)) & ~positive),
        "timespent": np.minimum(timespent.astype(np.float32) / duration, np.float32(settings.watch_cap)),
    }
    assert set(expected) == set(WEEKLY_KINDS)
    for kind, want in expected.items():
        got = view_weights(
            KIND[kind].code,
            packed,
            timespent,
            duration,
            tables,
            np.float32(settings.skip_share),
            np.float32(settings.watch_cap),
        )
        np.testing.assert_allclose(got, np.asarray(want, dtype=np.float32), rtol=1e-6, err_msg=kind)
