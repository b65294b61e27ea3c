"""Data shapes beyond "new clips every week" (issue 16): the training-protocol chain and its fallbacks,
pseudo-new clips hidden in the streamed pass, the stocked synthetic shape, and warm targets (seen-user
exclusion, the own-audience source, clip-history features, per-group NDCG)."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from conftest import tiny_config
from scipy import sparse

from audience.candidates.base import ClipQueries
from audience.candidates.exclude_seen import ExcludeSeen
from audience.candidates.own_audience import OwnAudienceSource
from audience.candidates.popular import PopularSource
from audience.config import OwnAudienceSettings, RerankerConfig
from audience.data.catalog import load_catalog
from audience.data.layout import DatasetLayout
from audience.data.targets import mixed_targets, mixed_targets_path
from audience.data.weeks import week_item_ids
from audience.evaluation.report import group_ndcg
from audience.io import read_json
from audience.pipeline import run_all
from audience.profiles.reference_pass import build_fit_data
from audience.rank.clip_history import history_features
from audience.rank.protocol import best_source_on_pools, holdout_samples, training_plans
from audience.split import make_split
from audience.submission import read_submission, validate_submission


def new_clips_per_week(layout: DatasetLayout) -> list[int]:
    seen: set[int] = set()
    counts = []
    for path in [*layout.train_weeks(), layout.validation_week(), layout.test_week()]:
        items = set(week_item_ids(path).tolist())
        counts.append(len(items - seen))
        seen |= items
    return counts


def test_stocked_shape_has_new_clips_only_in_validation_and_test(tiny_stocked_dir):
    layout = DatasetLayout(tiny_stocked_dir)
    counts = new_clips_per_week(layout)
    cfg = RerankerConfig()
    # the label weeks a run looks back on come after the burn-in: (almost) every clip was seen before
    assert max(counts[-2 - cfg.label_week_lookback : -2]) < cfg.min_new_clips, counts
    assert min(counts[-2:]) >= cfg.min_new_clips, counts
    weeks = [*layout.train_weeks(), layout.validation_week(), layout.test_week()]
    frames = pl.concat([pl.read_parquet(p, columns=["user_id", "item_id"]) for p in weeks])
    assert frames.select(pl.struct("user_id", "item_id").is_duplicated().sum()).item() == 0  # clips never die
    mixed = pl.read_parquet(mixed_targets_path(layout, "validation"))
    assert mixed["warm"].sum() == 60 and (~mixed["warm"]).sum() == counts[-2]


def test_training_plans_fall_back_from_new_to_pseudo(tiny_dir, tiny_stocked_dir):
    cfg = RerankerConfig()
    rolling = training_plans(DatasetLayout(tiny_dir).train_weeks(), cfg)
    assert [p.protocol for p in rolling] == ["new", "pseudo"]
    assert [w.holdout for w in rolling[0].weeks] == [1, 2]
    assert all(w.targets.new and w.targets.pseudo == 0 for w in rolling[0].weeks)
    stocked = training_plans(DatasetLayout(tiny_stocked_dir).train_weeks(), cfg)
    assert stocked[0].protocol == "new" and not stocked[0].weeks and "new clips" in stocked[0].note
    pseudo = stocked[1].weeks
    assert [w.holdout for w in pseudo] == [1, 2]
    assert all(not w.targets.new and w.targets.pseudo == round(0.1 * w.clips) for w in pseudo)
    submit = make_split(
        DatasetLayout(tiny_stocked_dir), "submit"
    ).fit_weeks  # the validation week has new clips
    assert [(w.week, w.targets.new) for w in training_plans(submit, cfg)[0].weeks] == [
        (submit[-1].name, True)
    ]
    both = training_plans(DatasetLayout(tiny_dir).train_weeks(), replace(cfg, label_clips="both"))
    assert both[0].protocol == "both" and all(w.targets.new and w.targets.pseudo for w in both[0].weeks)
    assert training_plans(DatasetLayout(tiny_dir).train_weeks()[:1], cfg) == []  # one fit week: nothing


def test_pseudo_new_clips_are_hidden_as_if_the_rows_were_not_there(tiny_dir, tmp_path):
    """Hiding in the streamed pass equals fitting on copies of the weeks without those clips' rows."""
    layout = DatasetLayout(tiny_dir)
    catalog = load_catalog(layout, 64)
    cfg = tiny_config(tiny_dir, tmp_path / "r", holdout=1)
    cfg = replace(cfg, holdout_targets=replace(cfg.holdout_targets, new=False, pseudo=80, warm=30))
    split = make_split(layout, "validate", None, 1)
    pseudo, warm = holdout_samples(split, cfg)
    assert pseudo.size == 80 and warm.size == 30 and np.intersect1d(pseudo, warm).size == 0
    fit_items = np.unique(np.concatenate([week_item_ids(p) for p in split.fit_weeks]))
    assert np.isin(pseudo, fit_items).all() and np.isin(pseudo, week_item_ids(split.truth_week)).all()
    assert np.array_equal(holdout_samples(split, cfg)[0], pseudo)  # seeded
    hidden = build_fit_data(
        split.fit_weeks,
        catalog,
        cfg.positive_flags,
        progress=False,
        hidden_items=np.isin(catalog.items.ids, pseudo),
    )
    copies = []
    for path in split.fit_weeks:
        copy = tmp_path / path.name
        pl.read_parquet(path).filter(~pl.col("item_id").is_in(pl.Series(pseudo).implode())).write_parquet(
            copy
        )
        copies.append(copy)
    reference = build_fit_data(copies, catalog, cfg.positive_flags, progress=False)
    assert (hidden.item_views[catalog.items.lookup(pseudo)] == 0).all()
    for name in ("user_views", "user_positives", "item_views", "item_positives"):
        np.testing.assert_array_equal(getattr(hidden, name), getattr(reference, name))
    for kind in hidden.profiles:
        np.testing.assert_allclose(hidden.profiles[kind], reference.profiles[kind], atol=1e-6)


def test_stocked_default_run_trains_on_pseudo_new_clips_and_says_so(tiny_stocked_run):
    training = read_json(tiny_stocked_run.path("training.json"))
    assert training["tried"][0]["protocol"] == "new" and "50 new clips" in training["tried"][0]["error"]
    assert training["used"]["protocol"] == "pseudo"
    assert all(not w["targets"]["new"] and w["targets"]["pseudo"] > 0 for w in training["used"]["weeks"])
    split = read_json(tiny_stocked_run.path("split.json"))
    assert split["warm_targets"] == 0 and split["n_targets"] > 0
    sub = read_submission(tiny_stocked_run.path("submission.parquet"))
    validate_submission(sub, tiny_stocked_run.targets()["item_id"].to_numpy())
    rows = {
        r["method"]: r.get("ndcg_capped", 0.0)
        for r in read_json(tiny_stocked_run.path("results.json"))["methods"]
    }
    assert rows["reranked"] > rows["blend"] and rows["reranked"] > 2 * rows["random"]


def test_last_fallback_is_the_best_single_source(tiny_dir, tmp_path, caplog):
    """No protocol can train (one pseudo-new clip, one label week): "reranked" is the best source on
    the holdout pools, the run says so once, records it, and still writes a valid submission."""
    cfg = tiny_config(tiny_dir, tmp_path / "run")
    reranker = replace(cfg.reranker, min_new_clips=10**9, pseudo_clips=1, train_weeks=1)
    with caplog.at_level(logging.WARNING, logger="audience.stages"):
        run = run_all(replace(cfg, reranker=reranker))
    training = read_json(run.path("training.json"))
    assert [t["protocol"] for t in training["tried"]] == ["new", "pseudo"] and training["used"] is None
    best = training["fallback_source"]["source"]
    scores = training["fallback_source"]["holdout_pool_ndcg@100"]
    assert best == (max(scores, key=scores.get) if scores else cfg.sources[0])  # no positive: the first
    fallback = run.candidates("reranked").drop("source")
    assert fallback.equals(run.candidates(best).drop("source"))
    assert len([r for r in caplog.records if "best single source" in r.getMessage()]) == 1
    validate_submission(read_submission(run.path("submission.parquet")), run.targets()["item_id"].to_numpy())


@pytest.fixture(scope="module")
def warm_run(tiny_dir, tmp_path_factory):
    """Default pipeline plus the own-audience source on a mixed target list (new + 60 warm clips)."""
    folder = tmp_path_factory.mktemp("warm")
    layout = DatasetLayout(tiny_dir)
    targets = folder / "mixed.parquet"
    mixed_targets(layout.train_weeks(), layout.validation_week(), 60, 0).write_parquet(targets)
    cfg = tiny_config(tiny_dir, folder / "run", targets=targets)
    return run_all(replace(cfg, sources=(*cfg.sources, "own_audience")))


def test_warm_targets_never_get_their_earlier_audience(warm_run):
    targets = warm_run.targets()
    assert targets["warm"].sum() == 60
    history = pl.read_parquet(warm_run.path("target_history.parquet"))
    assert history["item_id"].n_unique() == 60
    row_of = targets.with_row_index("clip").select(pl.col("clip").cast(pl.Int32), "item_id")
    users = warm_run.catalog.users
    seen = history.join(row_of, on="item_id").select(
        "clip", pl.Series("user", users.lookup(history.join(row_of, on="item_id")["user_id"].to_numpy()))
    )
    for path in warm_run.path("candidates").glob("*.parquet"):
        frame = pl.read_parquet(path).select(pl.col("clip").cast(pl.Int32), pl.col("user").cast(pl.Int64))
        assert frame.join(seen.cast({"user": pl.Int64}), on=["clip", "user"]).height == 0, path.name
    for path in warm_run.path("lists").glob("*.capped.npy"):  # the assignment's fill never hands them back
        lists = np.load(path)
        frame = pl.DataFrame(
            {"clip": np.repeat(np.arange(lists.shape[0]), lists.shape[1]), "user": lists.ravel()}
        ).cast({"clip": pl.Int32, "user": pl.Int64})
        assert frame.join(seen.cast({"user": pl.Int64}), on=["clip", "user"]).height == 0, path.name
    training = read_json(warm_run.path("training.json"))
    assert all(w["targets"]["warm"] == 60 for w in training["used"]["weeks"])


def test_warm_results_report_each_group(warm_run):
    rows = {r["method"]: r for r in read_json(warm_run.path("results.json"))["methods"]}
    for method in ("reranked", "own_audience", "popular"):
        assert (
            0.0 <= rows[method]["ndcg_capped_warm"] <= 1.0 and 0.0 <= rows[method]["ndcg_capped_cold"] <= 1.0
        )
    assert "ndcg_capped_warm" in warm_run.path("results.md").read_text()
    features = read_json(warm_run.path("ranker", "meta.json"))["features"]
    assert {"clip_past_views", "clip_age_weeks", "score__own_audience"} <= set(features)


def test_exclude_seen_keeps_the_source_order_without_seen_users(tiny_run):
    fit, catalog = tiny_run.fit_data(), tiny_run.catalog
    popular = PopularSource().fit(fit, catalog).ranking()
    item_ids = catalog.items.ids[:3]
    history = pl.DataFrame(
        {
            "item_id": pl.Series([item_ids[0]] * 3 + [item_ids[2]], dtype=pl.UInt32),
            "user_id": pl.Series(catalog.users.ids[[popular[0], popular[2], popular[5], popular[1]]]),
            "positive": [True, False, True, False],
            "weeks_ago": pl.Series([0, 1, 2, 0], dtype=pl.Int32),
        }
    )
    queries = ClipQueries.from_catalog(catalog, item_ids)
    top = ExcludeSeen(PopularSource(), history).fit(fit, catalog).recommend(queries, 10)
    expected = [p for p in popular[:13] if p not in popular[[0, 2, 5]]][:10]
    np.testing.assert_array_equal(top.ids[0], expected)
    np.testing.assert_array_equal(top.ids[1], popular[:10])
    np.testing.assert_array_equal(top.ids[2], [p for p in popular[:11] if p != popular[1]][:10])
    features = history_features(
        pl.DataFrame({"clip": np.array([0, 1, 2], dtype=np.int32)}), item_ids, history
    )
    assert features["clip_past_views"].to_list() == [3.0, 0.0, 1.0]
    assert features["clip_age_weeks"].to_list()[0] == 3.0 and np.isnan(features["clip_age_weeks"][1])
    assert features["clip_past_positive_rate"].to_list()[0] == pytest.approx(2 / 3)
    per_clip = pl.DataFrame({"item_id": pl.Series(item_ids, dtype=pl.UInt32), "ndcg": [0.2, 0.4, 0.6]})
    groups = pl.DataFrame({"item_id": item_ids, "warm": [True, False, True]})
    assert group_ndcg(per_clip, groups, "capped") == pytest.approx(
        {"ndcg_capped_cold": 0.4, "ndcg_capped_warm": 0.4}
    )


def dense_neighbours(positives: np.ndarray, clip: int, n: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(neighbours, cosines to all clips, whether the n-th and (n+1)-th cosines tie) of `clip`."""
    norm = np.linalg.norm(positives, axis=1)
    cosine = positives @ positives[clip] / np.maximum(norm * norm[clip], 1e-12)
    cosine[clip] = 0.0
    order = np.argsort(-cosine, kind="stable")
    near = order[:n][cosine[order[:n]] > 0]
    tied = cosine[order[n - 1]] > 0 and np.isclose(cosine[order[n - 1]], cosine[order[n]], rtol=1e-5)
    return near, cosine, bool(tied)


def test_own_audience_matches_a_dense_reference(tiny_run):
    """Against a float64 dense reference, on warm clips whose 20th and 21st neighbours do not tie (the
    source's float32 cosines may break such a tie the other way; either choice is right)."""
    fit, catalog = tiny_run.fit_data(), tiny_run.catalog
    positives = fit.histories["item_user_positives"].toarray().astype(np.float64)
    candidates = np.flatnonzero(positives.sum(axis=1) > 0)[:50]
    warm = np.array([c for c in candidates if not dense_neighbours(positives, c, 20)[2]][:5])
    assert warm.size == 5
    cold = np.flatnonzero(fit.item_views == 0)[:2]
    source = OwnAudienceSource(OwnAudienceSettings(n_neighbours=20)).fit(fit, catalog)
    top = source.recommend(ClipQueries.from_catalog(catalog, catalog.items.ids[[*warm, *cold]]), 30)
    assert (top.ids[len(warm) :] == -1).all()  # cold clips: no audience of their own
    for row, clip in enumerate(warm):
        near, cosine, _ = dense_neighbours(positives, clip, 20)
        scores = cosine[near] @ positives[near]
        got = top.ids[row][top.ids[row] >= 0]
        np.testing.assert_allclose(top.scores[row][: got.size], scores[got], rtol=1e-4)
        assert top.scores[row][0] == pytest.approx(scores.max(), rel=1e-4)
    assert sparse.issparse(fit.histories["item_user_positives"])


def test_best_source_on_pools_ranks_sources_by_pool_ndcg():
    pools = pl.DataFrame(
        {
            "clip": [0, 0, 0, 1, 1],
            "user": [1, 2, 3, 1, 4],
            "label": [0, 1, 0, 1, 0],
            "rank__a": [1, 2, 3, 2, 1],
            "rank__b": [2, 1, None, 1, None],
        }
    )
    best, scores = best_source_on_pools(pools, ["a", "b"], 100)
    assert best == "b" and scores["b"] == pytest.approx(1.0) and scores["a"] < 1.0
    assert best_source_on_pools(None, ["a", "b"], 100) == ("a", {})
    assert best_source_on_pools(pools.with_columns(pl.lit(0).alias("label")), ["b", "a"], 100) == ("b", {})
