"""Every generator passes one shared contract; ANN search is checked against brute force."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest
from conftest import tiny_world

from audience.arrays import TopK
from audience.candidates import ClipQueries, make_source
from audience.candidates.ann import HnswIndex, exact_search, recall_against_exact
from audience.config import GmmConfig, load_config
from audience.data.catalog import load_catalog
from audience.data.layout import DatasetLayout
from audience.data.schema import DEFAULT_POSITIVE_FLAGS
from audience.profiles.gmm import fit_gmm
from audience.profiles.reference_pass import build_fit_data

SOURCES = [
    "bpr_bridge",
    "ease_bridge",
    "slim_bridge",
    "popular",
    "random",
    "hnsw:all",
    "exact:all",
    "hnsw:positive",
    "exact:positive",
    "reach:recency",
    "reach:all",
    "author_fans",
    "coengagement",
    "picks:positive",
    "picks:author",
]


@pytest.fixture(scope="module")
def world(tiny_dir):
    return tiny_world(tiny_dir, 200)


@pytest.mark.parametrize("name", SOURCES)
class TestGeneratorContract:
    def fitted(self, name, world):
        catalog, fit, _ = world
        return make_source(name, load_config(n_threads=1)).fit(fit, catalog)

    def test_shapes_order_and_distinct_users(self, name, world):
        catalog, fit, queries = world
        top = self.fitted(name, world).recommend(queries, 50)
        assert top.ids.shape == (len(queries), 50) and top.ids.dtype == np.int32
        valid = top.ids >= 0
        assert valid.any()
        assert np.all(top.ids[valid] < catalog.n_users)
        assert np.all(fit.user_views[top.ids[valid]] > 0), "only users with history are proposed"
        assert np.all(np.diff(np.where(valid, top.scores, -1e30), axis=1) <= 1e-6), "scores sorted desc"
        assert np.all(~np.isfinite(top.scores[~valid]))
        for row in top.ids:
            kept = row[row >= 0]
            assert len(np.unique(kept)) == len(kept)

    def test_batch_equals_single(self, name, world):
        _, _, queries = world
        source = self.fitted(name, world)
        batch = source.recommend(queries, 20)
        for row in (0, 7, 123):
            single = source.recommend(queries.subset(slice(row, row + 1)), 20)
            if name == "random":  # draws depend on the batch by design; only the shape must agree
                assert single.ids.shape == (1, 20) and (single.ids >= 0).all()
            elif getattr(
                source, "whole_batch", False
            ):  # users pick among the batch's clips: a lone clip is every user's pick
                assert single.ids.shape == (1, 20)
            else:
                np.testing.assert_array_equal(single.ids[0], batch.ids[row])

    def test_deterministic_and_k_beyond_users(self, name, world):
        catalog, _, queries = world
        a = self.fitted(name, world).recommend(queries, 30)
        b = self.fitted(name, world).recommend(queries, 30)
        np.testing.assert_array_equal(a.ids, b.ids)
        big = self.fitted(name, world).recommend(queries.subset(slice(0, 3)), catalog.n_users + 10)
        assert big.ids.shape[1] == catalog.n_users + 10
        assert np.all(big.ids[:, -10:] == -1)


def test_clips_without_embedding_get_nothing_from_content_sources(world):
    catalog, fit, shared = world
    queries = shared.subset(np.arange(len(shared)))  # fancy indexing copies: the fixture stays intact
    queries.has_embedding[:5] = False
    top = make_source("hnsw:all", load_config()).fit(fit, catalog).recommend(queries, 10)
    assert np.all(top.ids[:5] == -1) and np.all(top.ids[5:] >= 0)


def brute_force(vectors, ids, queries, k):
    sims = queries @ vectors.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return ids[order], np.take_along_axis(sims, order, axis=1)


def test_exact_search_equals_full_sort():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    ids = rng.permutation(1000)[:500].astype(np.int32)
    queries = rng.normal(size=(40, 16)).astype(np.float32)
    top = exact_search(vectors, ids, queries, 25, block_bytes=4 * 500 * 7)  # several blocks
    ref_ids, ref_sims = brute_force(vectors, ids, queries, 25)
    np.testing.assert_array_equal(top.ids, ref_ids)
    np.testing.assert_allclose(top.scores, ref_sims, rtol=1e-5, atol=1e-5)


def test_hnsw_recall_and_save_load(tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(3000, dtype=np.int32)
    queries = rng.normal(size=(100, 32)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = HnswIndex("cosine", m=16, ef_construction=200, ef=200).build(vectors, ids)
    approx = index.query(queries, 50)
    exact = exact_search(vectors, ids, queries, 50)
    recall = recall_against_exact(approx, exact)
    assert recall > 0.95
    np.testing.assert_allclose(approx.scores[:, 0], exact.scores[:, 0], atol=1e-4)
    index.save(tmp_path / "idx.bin")
    loaded = HnswIndex.load(tmp_path / "idx.bin")
    assert loaded.ef == 200
    assert recall_against_exact(loaded.query(queries, 50), exact) == pytest.approx(recall)


def test_recall_against_exact_counts_overlap():
    exact = TopK(np.array([[1, 2, 3], [4, 5, -1]], dtype=np.int32), np.zeros((2, 3), np.float32))
    approx = TopK(np.array([[3, 9, 1], [5, -1, -1]], dtype=np.int32), np.zeros((2, 3), np.float32))
    assert recall_against_exact(approx, exact) == pytest.approx(3 / 5)


def test_sparse_top_k_equals_dense_sort():
    from scipy import sparse

    from audience.arrays import sparse_top_k

    rng = np.random.default_rng(3)
    dense = np.where(rng.random((30, 50)) < 0.2, rng.integers(1, 6, (30, 50)).astype(np.float32), 0.0)
    top = sparse_top_k(sparse.csr_matrix(dense), 7)
    for row in range(30):
        nz = np.flatnonzero(dense[row])
        ref = nz[np.lexsort((nz, -dense[row, nz]))][:7]
        assert top.ids[row, : len(ref)].tolist() == ref.tolist()
        assert np.all(top.ids[row, len(ref) :] == -1)


def test_author_fans_matches_formula_by_brute_force(world):
    catalog, fit, queries = world
    source = make_source("author_fans", load_config()).fit(fit, catalog)
    views = fit.histories["user_author_views"].toarray().astype(np.float64)
    pos = fit.histories["user_author_positives"].toarray().astype(np.float64)
    rate = pos.sum() / views.sum()
    expected = np.where(views > 0, views * (pos + 5.0 * rate) / (views + 5.0), -np.inf)
    top = source.recommend(queries, 10)
    for row in (0, 5, 50):
        author = queries.author[row]
        column = expected[:, author]
        ranked = np.lexsort((np.arange(column.size), -column))[:10]
        ranked = ranked[np.isfinite(column[ranked])]
        assert top.ids[row, : len(ranked)].tolist() == ranked.tolist()


def test_reach_matches_brute_force_inner_product(world):
    """reach:<profile> ranks users by weight x cosine(profile, clip): an exact inner product over every
    user with a weight, which the lifted cosine search must reproduce."""
    catalog, fit, queries = world
    for profile in ("recency", "all"):
        top = (
            make_source(f"reach:{profile}", load_config(n_threads=1)).fit(fit, catalog).recommend(queries, 20)
        )
        weight = fit.profile_weight[profile]
        p = fit.profiles[profile] / np.maximum(
            np.linalg.norm(fit.profiles[profile], axis=1, keepdims=True), 1e-12
        )
        for row in (2, 30, 120):
            q = queries.embedding[row, : p.shape[1]].astype(np.float64)
            scores = np.where(weight > 0, weight * (p @ (q / np.linalg.norm(q))), -np.inf)
            ranked = np.argsort(-scores)[:20]
            assert len(set(top.ids[row]) & set(ranked)) >= 18
            assert np.allclose(top.scores[row, :5], scores[top.ids[row, :5]], rtol=1e-3, atol=1e-4)
        # heavier viewers of the same taste come first: the weight matters, not only the cosine
        cos = (
            make_source(f"hnsw:{profile}", load_config(n_threads=1)).fit(fit, catalog).recommend(queries, 20)
        )
        assert weight[top.ids[:, :20]].mean() > weight[cos.ids[:, :20][cos.ids[:, :20] >= 0]].mean()


def test_coengagement_matches_brute_force(world):
    catalog, fit, queries = world
    source = make_source("coengagement", load_config(n_threads=1)).fit(fit, catalog)
    old = np.flatnonzero(catalog.has_embedding & (fit.item_positives > 0))
    emb = catalog.embedding[old] / np.linalg.norm(catalog.embedding[old], axis=1, keepdims=True)
    item_users = fit.histories["item_user_positives"].toarray()
    top = source.recommend(queries, 10)
    for row in (1, 9, 77):
        q = queries.embedding[row] / np.linalg.norm(queries.embedding[row])
        sims = emb @ q
        nearest = np.argsort(-sims)[:50]
        scores = (np.maximum(sims[nearest], 0) ** 2) @ item_users[old[nearest]]
        ranked = np.lexsort((np.arange(scores.size), -scores))[:10]
        assert len(set(top.ids[row]) & set(ranked)) >= 9


@pytest.fixture(scope="module")
def soft_world(tiny_dir):
    """The tiny catalog, its fit data with soft-cluster profiles of an 8-component mixture, the mixture's
    posteriors of every clip, and queries for 50 clips."""
    layout = DatasetLayout(tiny_dir)
    catalog = load_catalog(layout)
    gmm = fit_gmm(catalog.embedding[catalog.has_embedding], GmmConfig(n_components=8, covariance_type="diag"))
    posteriors = gmm.predict_proba(catalog.embedding)
    fit = build_fit_data(
        layout.train_weeks(), catalog, DEFAULT_POSITIVE_FLAGS, progress=False, posteriors=posteriors
    )
    fit.gmm = gmm
    return catalog, fit, posteriors, ClipQueries.from_catalog(catalog, catalog.items.ids[:50])


def test_gmm_source_scores_clip_posteriors_against_mean_posteriors(soft_world):
    catalog, fit, posteriors, queries = soft_world
    top = make_source("gmm:positive", load_config(n_threads=1)).fit(fit, catalog).recommend(queries, 20)
    profiles = fit.profiles["gmm_positive"]
    has = np.flatnonzero(fit.profile_weight["gmm_positive"] > 0)
    q = posteriors[catalog.items.lookup(queries.item_ids[:5])]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    exact = q @ profiles[has].T
    for row in range(5):
        best = has[np.argsort(-exact[row])[:20]]
        assert len(set(best) & set(top.ids[row])) >= 18


def test_reach_over_soft_clusters_is_the_users_volume_in_the_clips_clusters(soft_world):
    """reach:gmm_<kind> scores w_u <p_u, q_c>: the profile weight times the mean posterior (shares summing to
    1) dotted with the clip's posterior, exactly, through the lifted search."""
    catalog, fit, posteriors, queries = soft_world
    for kind in ("positive", "all"):
        source = make_source(f"reach:gmm_{kind}", load_config(n_threads=1))
        top = source.fit(fit, catalog).recommend(queries, 20)
        weight = fit.profile_weight[f"gmm_{kind}"]
        profiles = fit.profiles[f"gmm_{kind}"].astype(np.float64)
        shares = profiles / np.maximum(profiles.sum(axis=1, keepdims=True), 1e-12)
        q = posteriors[catalog.items.lookup(queries.item_ids)].astype(np.float64)
        scores = np.where(weight > 0, weight * (shares @ q.T).T, -np.inf)
        for row in (0, 7, 33):
            ranked = np.argsort(-scores[row])[:20]
            assert len(set(top.ids[row]) & set(ranked)) >= 18
            expected = scores[row, top.ids[row, :5]]
            np.testing.assert_allclose(top.scores[row, :5], expected, rtol=1e-3, atol=1e-5)
    without = replace(fit, gmm=None)
    with pytest.raises(ValueError, match="no mixture"):
        make_source("reach:gmm_positive", load_config(n_threads=1)).fit(without, catalog)


def test_every_source_setting_reaches_its_source(tmp_path):
    """Each `[source.NAME]` key is set on the source the registry builds, so no setting is dead."""
    names = {"picks": "picks:positive"}  # a table per family; the family's sources share it
    cfg = load_config()
    for family in fields(cfg.source):
        defaults = getattr(cfg.source, family.name)
        for setting in fields(defaults):
            value = getattr(defaults, setting.name) * 2
            toml = tmp_path / "run.toml"
            toml.write_text(f"[source.{family.name}]\n{setting.name} = {value!r}\n")
            source = make_source(names.get(family.name, family.name), load_config(toml)).source
            assert getattr(source, setting.name) == value, (family.name, setting.name)
