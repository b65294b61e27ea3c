"""The first stage (candidates/combined.py, rank/first_stage.py) against slow references: the block scores
against the pair terms, the exhaustive top-k against brute force, the weights against the logistic model
they come from, and a whole tiny run with the first stage in its pool."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import tiny_config

from audience.arrays import top_k
from audience.candidates import ClipQueries
from audience.candidates.combined import TERMS, CombinedSource, TermTables
from audience.config import FirstStageConfig, load_config
from audience.errors import TooLittleData
from audience.pipeline import run_all
from audience.rank.first_stage import fit_weights, label_sample
from audience.stages.holdout_runs import LABELLED_POOLS
from audience.stages.run import Run


@pytest.fixture(scope="module")
def world(tiny_run):
    """The tiny run's fit data (with its mixture) and 60 target-like clips, one of unknown author and one
    without an embedding."""
    fit, catalog = tiny_run.fit_data(), tiny_run.catalog
    queries = ClipQueries.from_catalog(catalog, catalog.items.ids[:60])
    queries.author[3] = -1
    queries.embedding[4] = 0.0
    queries.has_embedding[4] = False
    return fit, catalog, queries


WEIGHTS = {
    "log_views": -0.3,
    "log_positives": 0.8,
    "log_cluster_positives": 0.5,
    "cos_positive": 1.2,
    "log_author_positives": 0.4,
    "log_author_views": 1.1,
    "author_viewed": 0.7,
    "intercept": -4.0,
}


def test_block_scores_equal_the_weighted_pair_terms(world):
    fit, _, queries = world
    tables = TermTables(fit)
    assert tables.terms == TERMS  # the tiny run fits the mixture (reach:gmm_positive)
    side = tables.clip_side(queries)
    rows = np.arange(len(queries))
    block = tables.block_scores(side, rows, WEIGHTS)
    clip = np.repeat(rows, tables.n_users)
    user = np.tile(np.arange(tables.n_users), rows.size)
    terms = tables.pair_terms(side, clip, user)
    weights = np.array([WEIGHTS[t] for t in tables.terms], dtype=np.float64)
    reference = (terms.astype(np.float64) @ weights + WEIGHTS["intercept"]).reshape(rows.size, -1)
    np.testing.assert_allclose(block, reference, rtol=1e-4, atol=1e-4)
    # the terms that vary: an unknown author adds nothing, a clip without embedding has cosine 0
    names = list(tables.terms)
    by_clip = terms.reshape(rows.size, tables.n_users, -1)
    assert np.all(by_clip[3, :, names.index("log_author_views")] == 0)
    assert np.all(by_clip[4, :, names.index("cos_positive")] == 0)
    assert by_clip[:, :, names.index("author_viewed")].max() == 1


def test_recommend_is_the_exhaustive_top_k_in_any_block_size(world):
    fit, catalog, queries = world
    tables = TermTables(fit)
    full = tables.block_scores(tables.clip_side(queries), np.arange(len(queries)), WEIGHTS)
    reference = top_k(full, 25)
    for block in (7, 512):
        got = CombinedSource(WEIGHTS, block=block).fit(fit, catalog).recommend(queries, 25)
        np.testing.assert_array_equal(got.ids, reference.ids)
        # BLAS rounds blocks of different sizes apart
        np.testing.assert_allclose(got.scores, reference.scores, rtol=1e-5, atol=1e-5)


def test_unknown_weights_are_refused():
    with pytest.raises(ValueError, match="unknown terms \\['views'\\]"):
        CombinedSource({"views": 1.0})


def test_fit_weights_recovers_a_logistic_model_in_raw_units():
    rng = np.random.default_rng(1)
    terms = rng.normal(size=(60_000, 3)) * np.array([1.0, 5.0, 0.2]) + np.array([0.0, 10.0, -1.0])
    true = np.array([0.8, -0.3, 4.0])
    logit = terms @ true - 0.5
    labels = (rng.random(logit.size) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    weights = fit_weights(terms.astype(np.float32), labels, ("a", "b", "c"))
    np.testing.assert_allclose([weights[n] for n in "abc"], true, rtol=0.1)
    assert abs(weights["intercept"] - (-0.5)) < 0.3
    with pytest.raises(TooLittleData, match="0 positives"):
        fit_weights(terms.astype(np.float32), np.zeros(logit.size, np.int8), ("a", "b", "c"))


def test_label_sample_holds_the_positives_and_uniform_negatives(world):
    fit, _, queries = world
    rng = np.random.default_rng(0)
    terms, labels, names = label_sample(fit, queries, np.array([0, 1, 1]), np.array([5, 6, 7]), 4, rng)
    assert names == TERMS
    assert terms.shape == (3 + 4 * len(queries), len(TERMS))
    assert labels.tolist() == [1, 1, 1] + [0] * 4 * len(queries)


def test_a_run_with_the_first_stage_learns_it_and_pools_its_top_users(tiny_dir, tmp_path):
    """The weights are learned on the label weeks and recorded; the rank stage's pool holds the first
    stage's top users (its rank and score are features); a second rank stage reuses the weights."""
    cfg = replace(tiny_config(tiny_dir, tmp_path / "run"), first_stage=FirstStageConfig(depth=40))
    run = run_all(cfg, ("profiles", "candidates", "blend", "rank"))
    record = json.loads(run.path("training.json").read_text())
    weights = record["first_stage"]
    assert set(weights) == {*TERMS, "intercept"}
    assert weights["log_author_views"] > 0  # who watches the author engages: the tiny world's fandom
    ranker = json.loads((run.path("ranker") / "meta.json").read_text())["features"]
    assert {"rank__first_stage", "score__first_stage"} <= set(ranker)
    holdouts = list((tmp_path / f"{cfg.dataset_name}-holdout").glob(f"*/{LABELLED_POOLS}"))
    assert holdouts and all("rank__first_stage" in pl.read_parquet_schema(p) for p in holdouts)
    cached = run.path("first_stage.json").stat().st_mtime_ns
    run_all(cfg, ("rank",))
    assert run.path("first_stage.json").stat().st_mtime_ns == cached
    assert Run(cfg).candidates("reranked").height > 0


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").glob("*.toml")), ids=str)
def test_shipped_configs_load(path):
    """Every config file we ship parses into a RunConfig (unknown keys would be refused)."""
    cfg = load_config(path)
    if path.name == "first_stage.toml":
        assert cfg.first_stage.depth == 1000
