"""Reranker pair features against direct per-pair computations on a tiny run with a GMM source."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from conftest import tiny_config

from audience.config import GmmConfig, SimilarAuthorsSettings
from audience.pipeline import run_all
from audience.rank.features import (
    CLIP_GAP_COLUMNS,
    CLIP_RATIO_COLUMNS,
    candidate_pool,
    pair_features,
    within_clip_features,
)
from audience.rank.reranker import Reranker
from audience.rank.similar_authors import author_neighbours
from audience.stages.training_data import pool_features, scored_pool


def test_gmm_profiles_give_cluster_affinity_and_embeddings_give_cosines(tiny_dir, tmp_path):

    cfg = tiny_config(tiny_dir, tmp_path / "run", rerank=False, final_method="author_fans", baselines=())
    cfg = replace(
        cfg,
        sources=("author_fans", "gmm:positive"),
        gmm=GmmConfig(n_components=8, covariance_type="diag", dim=16, max_iter=20),
    )
    run = run_all(cfg, ("profiles", "candidates"))
    fit, queries = run.fit_data(), run.queries()
    pool = candidate_pool({s: run.candidates(s) for s in cfg.sources}, 50)
    frame = pair_features(pool, fit, run.catalog, queries)
    assert "cluster_affinity__gmm_positive" in frame.columns and "cos__positive" in frame.columns
    assert not any(c.startswith("cos__gmm") for c in frame.columns)
    rows = frame.sample(50, seed=0)
    posterior = fit.gmm.predict_proba(queries.embedding)
    for row in rows.iter_rows(named=True):
        clip, user = row["clip"], row["user"]
        if not queries.has_embedding[clip]:
            assert np.isnan(row["cluster_affinity__gmm_positive"])
            continue
        expected = float(posterior[clip] @ fit.profiles["gmm_positive"][user])
        assert np.isclose(row["cluster_affinity__gmm_positive"], expected, rtol=1e-4, atol=1e-6)
        unit = queries.embedding[clip] / np.linalg.norm(queries.embedding[clip])
        cosine = float(unit @ fit.profiles["positive"][user][: unit.shape[0]])
        assert np.isclose(row["cos__positive"], cosine, rtol=1e-4, atol=1e-6)
    assert frame.select(pl.col("cluster_affinity__gmm_positive").is_not_nan().sum()).item() > 0
    check_author_and_activity_features(frame, fit, queries)
    check_audience_and_similar_author_features(frame, fit, queries)


def check_author_and_activity_features(frame: pl.DataFrame, fit, queries) -> None:
    """The author-share and activity columns against dense per-user sums and a count over the targets."""
    views = fit.histories["user_author_views"].toarray()
    positives = fit.histories["user_author_positives"].toarray()
    for row in frame.sample(50, seed=1).iter_rows(named=True):
        clip, user = row["clip"], row["user"]
        author = queries.author[clip]
        assert np.isclose(row["user_recent_views"], views[user].sum(), rtol=1e-5)
        assert np.isclose(
            row["user_recent_share"], views[user].sum() / max(fit.user_views[user], 1), rtol=1e-5
        )
        if author < 0:
            assert np.isnan(row["author_target_share"]) and np.isnan(row["user_author_views_share"])
            continue
        n_same = int((queries.author == author).sum())
        assert np.isclose(row["author_target_share"], n_same / len(queries), rtol=1e-6)
        share = views[user, author] / max(views[user].sum(), 1e-3)
        assert np.isclose(row["user_author_views_share"], share, rtol=1e-5, atol=1e-7)
        share = positives[user, author] / max(positives[user].sum(), 1e-3)
        assert np.isclose(row["user_author_positives_share"], share, rtol=1e-5, atol=1e-7)


def check_audience_and_similar_author_features(frame: pl.DataFrame, fit, queries) -> None:
    """Author audience counts and the similar-author sums against dense matrices."""
    views = fit.histories["user_author_views"].toarray()
    positives = fit.histories["user_author_positives"].toarray()
    clip_authors = queries.author[frame["clip"].to_numpy()]
    targets = np.unique(clip_authors[clip_authors >= 0])
    similar = SimilarAuthorsSettings()  # what pair_features uses without a context
    history = fit.histories["user_author_views"]
    neighbours = author_neighbours(history, targets, similar.k, pair_budget=similar.pair_budget).toarray()
    assert frame.select(pl.col("similar_user_author_views").fill_nan(0).gt(0).sum()).item() > 0
    for row in frame.sample(50, seed=2).iter_rows(named=True):
        user, author = row["user"], queries.author[row["clip"]]
        assert row["user_distinct_authors"] == np.count_nonzero(views[user])
        if author < 0:
            assert np.isnan(row["author_audience"]) and np.isnan(row["similar_user_author_views"])
            continue
        assert np.isclose(row["author_audience"], np.log1p(np.count_nonzero(views[:, author])))
        assert np.isclose(row["author_engaged_users"], np.log1p(np.count_nonzero(positives[:, author])))
        similar = neighbours[np.searchsorted(targets, author)]
        assert similar[author] == 0.0
        for name, dense in (
            ("similar_user_author_views", views),
            ("similar_user_author_positives", positives),
        ):
            assert np.isclose(row[name], float(dense[user] @ similar), rtol=1e-4, atol=1e-5)


def test_pool_scored_by_blocks_of_clips_equals_the_whole_pool(tiny_run, monkeypatch):
    """The rank stage scores its pool block by block (only one block's features held): the same scores as
    the whole pool's features scored at once, the pool-wide cap-pressure features included."""
    model = Reranker.load(tiny_run.path("ranker"))
    whole = pool_features(tiny_run)
    expected = whole.select("clip", "user").with_columns(pl.Series("score", model.predict(whole)))
    monkeypatch.setattr(tiny_run.engine, "feature_block_clips", 7)
    blocked = scored_pool(tiny_run, model.predict)
    assert blocked.height == whole.height and blocked["clip"].n_unique() > 7
    joined = expected.join(blocked, on=["clip", "user"], suffix="_blocked")
    assert joined.height == whole.height
    np.testing.assert_allclose(joined["score_blocked"].to_numpy(), joined["score"].to_numpy(), rtol=1e-6)


def test_within_clip_features_match_a_loop_over_clips():
    rng = np.random.default_rng(0)
    n = 400
    clip = np.sort(rng.integers(0, 9, n))
    ratio, gap = CLIP_RATIO_COLUMNS[0], CLIP_GAP_COLUMNS[0]
    counts = rng.integers(0, 4, n).astype(np.float32)  # ties
    counts[rng.random(n) < 0.2] = np.nan  # unknown
    scores = rng.normal(size=n).astype(np.float32)
    frame = pl.DataFrame({"clip": clip, "user": np.arange(n), ratio: counts, gap: scores})
    out = within_clip_features(frame)
    assert f"clip_rank__{CLIP_RATIO_COLUMNS[1]}" not in out.columns  # only the columns the frame has
    for name, values in ((ratio, counts), (gap, scores)):
        rank, rel = out[f"clip_rank__{name}"].to_numpy(), out[f"clip_rel__{name}"].to_numpy()
        for c in np.unique(clip):
            rows = np.flatnonzero(clip == c)
            known = rows[~np.isnan(values[rows])]
            assert np.isnan(rank[rows[np.isnan(values[rows])]]).all()
            best = values[known].max()
            for i in known:
                above = (values[known] > values[i]).sum()
                ties = (values[known] == values[i]).sum()
                assert rank[i] == pytest.approx((above + (ties + 1) / 2) / known.size, rel=1e-6)
                expected = values[i] / best if name == ratio else values[i] - best
                assert rel[i] == pytest.approx(expected, rel=1e-5, nan_ok=True)
