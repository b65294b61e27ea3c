"""Weekly aggregates: combined over weeks they equal one direct pass (every profile kind, history and
recency weight, pseudo-new rows subtracted, soft-cluster spaces); the cache rebuilds on a changed week file
or changed aggregating code and survives a run killed mid-build."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same_fit

from audience.config import DEFAULT_POSITIVE_FLAGS, GmmConfig, ProfileSettings
from audience.data.catalog import RunNeeds, load_catalog
from audience.data.embeddings import embedding_ids, read_embedding_rows
from audience.data.layout import DatasetLayout
from audience.data.weeks import distinct_ids
from audience.profiles import aggregates as agg
from audience.profiles.aggregates import AggregateStore, fit_from_aggregates
from audience.profiles.author_views import WeekPairs, combine_author_views, prune_author_views
from audience.profiles.dataset_mixture import dataset_mixture, sampled_rows
from audience.profiles.fit_data import FitData
from audience.profiles.gmm import fit_gmm
from audience.profiles.reference_pass import build_fit_data
from audience.profiles.user_shards import UserShard, user_shards
from audience.profiles.week_kernels import group_rows, user_histories

SETTINGS = ProfileSettings(recency_half_life=2.0)


@pytest.fixture(scope="module")
def weeks_and_catalog(tiny_dir):
    layout = DatasetLayout(tiny_dir)
    weeks = layout.train_weeks()
    users, items = distinct_ids(weeks)
    return weeks, load_catalog(layout, 16, RunNeeds(users, items)), layout


def _store(folder: Path, catalog, layout, chunk_rows: int = 20_000_000, mixture=None) -> AggregateStore:
    metadata = (layout.items_metadata, layout.item_embeddings)
    return AggregateStore(folder, catalog, DEFAULT_POSITIVE_FLAGS, SETTINGS, metadata, chunk_rows, mixture)


def _built(folder: Path) -> list[Path]:
    """The weekly aggregates a store holds (one folder each)."""
    return sorted(p for p in folder.iterdir() if p.is_dir())


def test_history_kernel_matches_a_slow_loop():
    rng = np.random.default_rng(0)
    n_users, n_items, n_authors, n = 7, 13, 5, 600
    users = rng.integers(0, n_users, n).astype(np.int32)
    items = rng.integers(0, n_items, n).astype(np.int32)
    flags = rng.integers(0, 4, n).astype(np.uint8)
    positive_of = np.array([False, True, False, True])
    item_author = rng.integers(0, n_authors, n_items).astype(np.int32)
    starts, order = group_rows(users, n_users)
    assert np.all(np.diff(users[order]) >= 0) and np.all(np.diff(order[users[order] == 3]) > 0)
    *pairs, user_positives = user_histories(
        starts, order, items, flags, positive_of, item_author, n_authors, 2
    )
    keys_of = {
        "views per author": lambda r: item_author[items[r]],
        "positives per author": lambda r: item_author[items[r]] if positive_of[flags[r]] else None,
        "positives per clip": lambda r: items[r] if positive_of[flags[r]] else None,
    }
    for (what, key_of), (indptr, indices, data) in zip(keys_of.items(), pairs, strict=True):
        for u in range(n_users):
            want: dict[int, float] = {}
            for r in range(n):
                if users[r] == u and key_of(r) is not None:
                    want[int(key_of(r))] = want.get(int(key_of(r)), 0.0) + 1.0
            seg = slice(indptr[u], indptr[u + 1])
            assert dict(zip(indices[seg].tolist(), data[seg].tolist(), strict=True)) == want, what
    assert user_positives.tolist() == [int(positive_of[flags[users == u]].sum()) for u in range(n_users)]


def test_combined_aggregates_equal_one_direct_pass(weeks_and_catalog, tmp_path):
    weeks, catalog, layout = weeks_and_catalog
    want = build_fit_data(weeks, catalog, DEFAULT_POSITIVE_FLAGS, SETTINGS, progress=False)
    # small chunks: a week's aggregate is merged over several chunks
    got = fit_from_aggregates(_store(tmp_path, catalog, layout, chunk_rows=7_000), weeks, progress=False)
    assert_same_fit(got, want)
    assert len(_built(tmp_path)) == len(weeks)


def test_a_holdout_split_from_the_same_aggregates_equals_a_fresh_pass(weeks_and_catalog, tmp_path):
    """The weeks before the last, with pseudo-new clips hidden and soft-cluster profiles: every week's
    aggregate (soft-cluster sums included) is reused from the full split's cache, the ages shift, the hidden
    rows are subtracted."""
    weeks, catalog, layout = weeks_and_catalog
    mixture = fit_gmm(catalog.embedding[catalog.has_embedding], GmmConfig(n_components=5, dim=8))
    store = _store(tmp_path, catalog, layout, mixture=mixture)
    posteriors = mixture.predict_proba(catalog.embedding) * catalog.has_embedding[:, None]
    full = fit_from_aggregates(store, weeks, progress=False)
    assert_same_fit(
        full, build_fit_data(weeks, catalog, DEFAULT_POSITIVE_FLAGS, SETTINGS, False, posteriors=posteriors)
    )
    assert {"gmm_all", "gmm_positive"} <= set(full.profiles)
    mtimes = [p.stat().st_mtime_ns for p in _built(tmp_path)]
    rng = np.random.default_rng(1)
    hidden = np.zeros(catalog.n_items, dtype=bool)
    hidden[rng.choice(catalog.n_items, catalog.n_items // 20, replace=False)] = True
    holdout = weeks[:-1]
    got = fit_from_aggregates(store, holdout, hidden_items=hidden, progress=False)
    want = build_fit_data(
        holdout, catalog, DEFAULT_POSITIVE_FLAGS, SETTINGS, False, posteriors=posteriors, hidden_items=hidden
    )
    assert_same_fit(got, want)
    assert want.item_views[hidden].sum() == 0 and got.histories["item_user_positives"][hidden].nnz == 0
    assert [p.stat().st_mtime_ns for p in _built(tmp_path)] == mtimes  # nothing rebuilt
    # another mixture shapes other aggregates: the weeks are rebuilt, and the stale ones swept
    other = fit_gmm(catalog.embedding[catalog.has_embedding], GmmConfig(n_components=3, dim=8))
    fit_from_aggregates(_store(tmp_path, catalog, layout, mixture=other), weeks, progress=False)
    assert len(_built(tmp_path)) == len(weeks) and not set(_built(tmp_path)) & set(
        store.path(w) for w in weeks
    )


def _shard_of(fit: FitData, shard: UserShard) -> FitData:
    """The reference: the unsharded FitData's rows of `shard` (and item_user_positives' columns)."""
    rows = slice(shard.start, shard.stop)
    histories = {name: m[rows] for name, m in fit.histories.items() if name != "item_user_positives"}
    histories["item_user_positives"] = fit.histories["item_user_positives"][:, rows].tocsr()
    return FitData(
        fit.user_views[rows],
        fit.user_positives[rows],
        fit.item_views,
        fit.item_positives,
        {name: p[rows] for name, p in fit.profiles.items()},
        {name: w[rows] for name, w in fit.profile_weight.items()},
        histories,
    )


@pytest.mark.parametrize("n_shards", [1, 2, 3])
def test_user_shards_combine_to_the_unsharded_splits_rows(weeks_and_catalog, tmp_path, n_shards):
    """Each shard combined alone (its rows of every memory-mapped aggregate) equals the unsharded split's
    rows bit for bit: every profile kind, the soft-cluster profiles, every history, with pseudo-new clips
    subtracted; pruned author views included (a low cap, so the pruning binds). The shards stacked
    (FitData.stacked) are the unsharded fit data again."""
    weeks, catalog, layout = weeks_and_catalog
    mixture = fit_gmm(catalog.embedding[catalog.has_embedding], GmmConfig(n_components=5, dim=8))
    settings = replace(SETTINGS, max_user_authors=3)
    metadata = (layout.items_metadata, layout.item_embeddings)
    store = AggregateStore(tmp_path, catalog, DEFAULT_POSITIVE_FLAGS, settings, metadata, 20_000_000, mixture)
    hidden = np.zeros(catalog.n_items, dtype=bool)
    hidden[np.random.default_rng(2).choice(catalog.n_items, catalog.n_items // 20, replace=False)] = True
    uncapped = AggregateStore(
        tmp_path / "uncapped", catalog, DEFAULT_POSITIVE_FLAGS, SETTINGS, metadata, 20_000_000, mixture
    )
    for split, hide in ((weeks, None), (weeks[:-1], hidden)):
        whole = fit_from_aggregates(store, split, hidden_items=hide, progress=False)
        every_author = fit_from_aggregates(uncapped, split, hidden_items=hide, progress=False)
        assert whole.histories["user_author_views"].nnz < every_author.histories["user_author_views"].nnz
        shards = user_shards(catalog.n_users, n_shards)
        assert sum(len(s) for s in shards) == catalog.n_users
        parts = []
        for shard in shards:
            got = fit_from_aggregates(store, split, hidden_items=hide, progress=False, shard=shard)
            assert_same_fit(got, _shard_of(whole, shard), exact=True)
            parts.append(got)
        assert_same_fit(FitData.stacked(parts), whole, exact=True)


def test_user_shards_cover_the_users_in_order():
    assert user_shards(10, 3) == [UserShard(0, 3), UserShard(3, 6), UserShard(6, 10)]
    assert [len(s) for s in user_shards(2, 4)] == [0, 1, 0, 1]
    assert UserShard(3, 7).rows_of(np.array([0, 3, 5, 7, 9])) == slice(1, 3)
    with pytest.raises(ValueError, match="start <= stop"):
        UserShard(5, 2)


def test_the_dataset_mixture_is_fitted_on_its_clips_once(weeks_and_catalog, tmp_path):
    """Fitted on a seeded sample of the given clips' rows of the file (other rows never enter), cached by
    the file's stamp, the clips and the settings: a second call loads it, a changed setting fits another
    that replaces it."""
    _, _, layout = weeks_and_catalog
    file_ids = embedding_ids(layout.item_embeddings)
    clips = np.sort(file_ids[::2])
    held = np.flatnonzero(np.isin(file_ids, clips))
    cfg = GmmConfig(n_components=4, dim=8, sample_size=held.size // 3, validation_size=50)
    rows = sampled_rows(held.size, cfg)
    assert rows.size == held.size // 3 + 50 and np.all(np.diff(rows) > 0)
    assert sampled_rows(held.size, replace(cfg, sample_size=None)).size == held.size
    first = dataset_mixture(layout.item_embeddings, clips, cfg, 16, tmp_path)
    want = fit_gmm(read_embedding_rows(layout.item_embeddings, held[rows], 16), cfg)
    np.testing.assert_array_equal(first.means, want.means)
    cached = list(tmp_path.glob("mixture-*.npz"))
    assert len(cached) == 1
    again = dataset_mixture(layout.item_embeddings, clips, cfg, 16, tmp_path)
    assert again.digest() == first.digest() and list(tmp_path.glob("mixture-*.npz")) == cached
    other = dataset_mixture(layout.item_embeddings, clips, replace(cfg, seed=1), 16, tmp_path)
    assert other.digest() != first.digest()
    assert [p.name for p in tmp_path.glob("mixture-*.npz")] != [p.name for p in cached]
    assert len(list(tmp_path.glob("mixture-*.npz"))) == 1
    assert dataset_mixture(layout.item_embeddings, clips[1:], cfg, 16, tmp_path).digest() != first.digest()


def test_posteriors_of_a_clip_do_not_depend_on_the_other_clips(weeks_and_catalog):
    """The week pass's posteriors: the same bits whatever catalog (batch) a clip is in, near predict_proba."""
    _, catalog, _ = weeks_and_catalog
    mixture = fit_gmm(catalog.embedding[catalog.has_embedding], GmmConfig(n_components=6, dim=8))
    whole = mixture.row_posteriors(catalog.embedding)
    np.testing.assert_array_equal(mixture.row_posteriors(catalog.embedding[5:301]), whole[5:301])
    np.testing.assert_allclose(whole, mixture.predict_proba(catalog.embedding), atol=1e-5)


def test_the_cache_rebuilds_a_changed_week_and_after_a_code_change(weeks_and_catalog, tmp_path, monkeypatch):
    weeks, catalog, layout = weeks_and_catalog
    data = tmp_path / "weeks"
    data.mkdir()
    copies = [Path(shutil.copy(w, data / w.name)) for w in weeks]
    store = _store(tmp_path / "cache", catalog, layout)
    first = fit_from_aggregates(store, copies, progress=False)
    # rewrite the last week with the first week's rows: its aggregate is rebuilt, the others are kept
    before = {p.name: p.stat().st_mtime_ns for p in _built(tmp_path / "cache")}
    shutil.copy(weeks[0], copies[-1])
    os.utime(copies[-1], ns=(1, 1))
    second = fit_from_aggregates(store, copies, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in _built(tmp_path / "cache")}
    assert len(after) == len(weeks)  # the stale aggregate of the rewritten week is gone
    assert len(set(after) - set(before)) == 1 and all(after[n] == before[n] for n in set(after) & set(before))
    assert not np.array_equal(first.user_views, second.user_views)
    want = build_fit_data(copies, catalog, DEFAULT_POSITIVE_FLAGS, SETTINGS, progress=False)
    assert_same_fit(second, want)
    monkeypatch.setattr(agg, "AGGREGATE_CODE", "edited")
    fit_from_aggregates(store, copies, progress=False)
    assert not set(p.name for p in (tmp_path / "cache").glob("*.npz")) & set(after)


def test_a_build_killed_midway_then_rerun_gives_the_same_result(weeks_and_catalog, tmp_path, monkeypatch):
    weeks, catalog, layout = weeks_and_catalog
    store = _store(tmp_path, catalog, layout)
    real = agg.aggregate_week
    calls = []

    def dies_on_the_third_week(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(agg, "aggregate_week", dies_on_the_third_week)
    with pytest.raises(KeyboardInterrupt):
        fit_from_aggregates(store, weeks, progress=False)
    assert len(_built(tmp_path)) == 2 and not list(tmp_path.glob("*tmp*"))
    monkeypatch.setattr(agg, "aggregate_week", real)
    got = fit_from_aggregates(store, weeks, progress=False)
    assert_same_fit(got, build_fit_data(weeks, catalog, DEFAULT_POSITIVE_FLAGS, SETTINGS, progress=False))


def test_author_views_by_blocks_keep_each_users_top_authors_and_engaged_ones(weeks_and_catalog, tmp_path):
    """Blocks of a few users, pruned to 3 authors per user: the kept pairs equal the row-by-row reference
    applied to the unpruned union, whose pairs equal the direct pass's."""
    weeks, catalog, layout = weeks_and_catalog
    store = _store(tmp_path, catalog, layout)
    store.build_missing(weeks, progress=False)
    n_weeks = len(weeks)

    def pairs() -> list[WeekPairs]:
        out = []
        for k, week in enumerate(weeks):
            aggregate = store.load(week)
            users = catalog.users.lookup(aggregate.users)
            factor = 0.5 ** ((n_weeks - 1 - k) / SETTINGS.recency_half_life)
            out.append(WeekPairs(users, *aggregate.histories["user_author_views"], factor))
        return out

    engaged = fit_from_aggregates(store, weeks, progress=False).histories["user_author_positives"]
    union = combine_author_views(pairs(), catalog.authors, catalog.n_users, engaged, None, block_cells=997)
    direct = build_fit_data(
        weeks, catalog, DEFAULT_POSITIVE_FLAGS, replace(SETTINGS, max_user_authors=None), False
    )
    want_union = direct.histories["user_author_views"]
    np.testing.assert_array_equal(union.indptr, want_union.indptr)
    np.testing.assert_array_equal(union.indices, want_union.indices)
    np.testing.assert_allclose(union.data, want_union.data, rtol=1e-5)
    pruned = combine_author_views(pairs(), catalog.authors, catalog.n_users, engaged, 3, block_cells=997)
    want = prune_author_views(union, engaged, 3)
    assert np.diff(union.indptr).max() > 3 and pruned.nnz < union.nnz
    np.testing.assert_array_equal(pruned.indptr, want.indptr)
    np.testing.assert_array_equal(pruned.indices, want.indices)
    np.testing.assert_array_equal(pruned.data, want.data)
    engaged_pairs = engaged.multiply(union) > 0
    assert (pruned.multiply(engaged_pairs) > 0).nnz == engaged_pairs.nnz  # every engaged author is kept
