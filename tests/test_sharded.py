"""Sources answered by user shards: each shard combined from the weekly aggregates alone, fitted and asked
alone, the answers merged, equal the unsharded source's lists, ties included."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pytest

from audience.arrays import TopK, merge_top_k, top_k
from audience.candidates import ClipQueries, make_source
from audience.candidates.ann import exact_search, recall_against_exact
from audience.candidates.cf_bridges import bpr_users
from audience.candidates.sharded import (
    fit_on_rows,
    fits_on_sampled_rows,
    sampled_rows,
    sharded_answers,
    user_separable,
    user_shardable,
)
from audience.config import BprBridgeSettings, SourceSettings, load_config
from audience.profiles.aggregates import fit_from_aggregates
from audience.profiles.user_shards import in_process, user_shards

SEPARABLE = ["exact:all", "exact:positive", "author_fans", "coengagement"]


@pytest.fixture(scope="module")
def split(tiny_aggregates):
    """The tiny train weeks' catalog, aggregate store and whole FitData, and 300 target queries."""
    catalog = tiny_aggregates[0]
    return (*tiny_aggregates, ClipQueries.from_catalog(catalog, catalog.items.ids[:300]))


def answers(build, shards, catalog, queries, k):
    """sharded_answers over (shard, FitData) pairs held in this process."""
    return sharded_answers(build, in_process(shards), [shard for shard, _ in shards], catalog, queries, k)


def test_merged_top_k_equals_the_top_k_of_the_union():
    """Random parts with many tied scores and short (padded) answers, against top_k over every id."""
    rng = np.random.default_rng(0)
    n_rows, k = 40, 7
    sizes = [5, 9, 3, 12]
    scores = rng.integers(0, 6, size=(n_rows, sum(sizes))).astype(np.float32)  # ties everywhere
    scores[rng.random(scores.shape) < 0.2] = -np.inf  # ids a part does not propose
    scores[:5, 4:] = -np.inf  # rows with fewer than k ids proposed in all
    want = top_k(scores, k)
    parts, offsets, start = [], [], 0
    for size in sizes:
        parts.append(top_k(scores[:, start : start + size], k))
        offsets.append(start)
        start += size
    got = merge_top_k(parts, offsets, k)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.scores, want.scores)
    assert (got.ids == -1).any(), "some rows are short: the padding is kept"
    with pytest.raises(ValueError, match="offsets"):
        merge_top_k(parts, offsets[:2], k)


@pytest.mark.parametrize("name", SEPARABLE)
@pytest.mark.parametrize("n_shards", [2, 3])
def test_sharded_sources_answer_as_the_whole_source(split, name, n_shards):
    catalog, store, weeks, whole, queries = split
    cfg = load_config(n_threads=1)
    want = make_source(name, cfg).fit(whole, catalog).recommend(queries, 40)
    shards = [
        (shard, fit_from_aggregates(store, weeks, progress=False, shard=shard))
        for shard in user_shards(catalog.n_users, n_shards)
    ]
    got = answers(lambda: make_source(name, cfg), shards, catalog, queries, 40)
    assert (want.ids >= 0).sum() > len(queries) * 5, "the source answers"
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.scores, want.scores)


@pytest.mark.parametrize("name", ["popular", "random", "bpr_bridge"])
def test_sources_that_do_not_split_by_user_are_refused(split, name):
    catalog, _, _, whole, queries = split
    cfg = load_config(n_threads=1)
    assert not user_separable(make_source(name, cfg))
    with pytest.raises(ValueError, match="does not split by user"):
        shard = user_shards(catalog.n_users, 1)[0]
        answers(lambda: make_source(name, cfg), [(shard, whole)], catalog, queries, 10)


@pytest.mark.parametrize("name", ["hnsw:all", "hnsw:positive", "reach:recency"])
def test_hnsw_shards_answer_near_the_exact_search(split, name):
    """One HNSW index per shard (3 shards): every answered user carries its exact score (to float rounding)
    and the merged lists find the exact top-k as well as the one global index does, within 1 %."""
    catalog, store, weeks, whole, queries = split
    cfg = load_config(n_threads=1)
    k = 40
    source = make_source(name, cfg).fit(whole, catalog)
    assert user_shardable(source) and not user_separable(source)
    rows = np.flatnonzero(queries.has_embedding)
    lifted = source.query_vectors(queries, rows)
    if name.startswith("reach"):  # the inner product w_u <p_u, e_c>: the lifted vectors without the lift
        vectors, query = source.vectors[:, :-1], lifted[:, :-1]
    else:
        vectors, query = source.vectors, lifted
    exact = exact_search(vectors, source.ids, query, k)
    shards = [
        (shard, fit_from_aggregates(store, weeks, progress=False, shard=shard))
        for shard in user_shards(catalog.n_users, 3)
    ]
    got = answers(lambda: make_source(name, cfg), shards, catalog, queries, k)
    got_rows = TopK(got.ids[rows], got.scores[rows])
    found = got_rows.ids >= 0
    assert found.sum() > len(rows) * k * 0.9, "the shards answer"
    position = {int(u): i for i, u in enumerate(source.ids)}
    index = np.vectorize(position.__getitem__)(got_rows.ids[found])
    truth = np.einsum("ij,ij->i", vectors[index].astype(np.float64), query[np.nonzero(found)[0]])
    np.testing.assert_allclose(got_rows.scores[found], truth, rtol=1e-4, atol=1e-5)
    one_index = source.recommend(queries, k)
    one_index_recall = recall_against_exact(TopK(one_index.ids[rows], one_index.scores[rows]), exact)
    assert recall_against_exact(got_rows, exact) >= min(one_index_recall, 0.99) - 0.01


def test_bpr_users_are_the_most_engaged_within_the_budget():
    """`bpr_users` against a slow loop: users by positives (ties to the smaller index) while the sum fits."""
    rng = np.random.default_rng(3)
    positives = rng.integers(0, 6, size=200)  # many ties, some users without positives
    for budget in (1, 2, 37, 150, int(positives.sum()), 10**9):
        kept, total = [], 0
        for user in sorted(range(positives.size), key=lambda u: (-positives[u], u)):
            if positives[user] == 0 or (kept and total + positives[user] > budget):
                break
            kept.append(user)
            total += positives[user]
        got = bpr_users(positives, budget)
        np.testing.assert_array_equal(got, sorted(kept), err_msg=str(budget))
        assert got.dtype == np.int32


@pytest.mark.parametrize("n_shards", [1, 2, 3])
@pytest.mark.parametrize("budget_share", [None, 0.5])
def test_bpr_on_the_rows_the_shards_send_is_the_bpr_of_the_whole_fit(split, n_shards, budget_share):
    """'bpr_bridge' fitted on the rows of its sample that 1, 2 or 3 shards send answers as the source fitted
    on the whole fit data, bit for bit, with every user learned or a binding budget (whose lists then hold
    only the sample's users)."""
    catalog, store, weeks, whole, queries = split
    total = int(whole.user_positives.sum())
    max_positives = total if budget_share is None else int(total * budget_share)
    settings = replace(BprBridgeSettings(), epochs=3, max_positives=max_positives)
    cfg = load_config(n_threads=1, source=SourceSettings(bpr_bridge=settings))
    source = make_source("bpr_bridge", cfg)
    assert fits_on_sampled_rows(source) and not user_shardable(source)
    want = source.fit(whole, catalog).recommend(queries, 40)
    shards = [
        (shard, fit_from_aggregates(store, weeks, progress=False, shard=shard))
        for shard in user_shards(catalog.n_users, n_shards)
    ]
    build = partial(make_source, "bpr_bridge", cfg)
    parts, users = sampled_rows(build, in_process(shards), [s for s, _ in shards], whole.counts())
    got = fit_on_rows(build, parts, users, catalog).recommend(queries, 40)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.scores, want.scores)
    sample = bpr_users(whole.user_positives, max_positives)
    answered = np.unique(want.ids[want.ids >= 0])
    assert answered.size > 40 and np.isin(answered, sample).all()
    if budget_share is not None:
        assert sample.size < np.count_nonzero(whole.user_positives) / 2, "the budget binds"
