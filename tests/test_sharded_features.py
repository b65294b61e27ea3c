"""Pair features with user shards: each shard's fit data combined alone from the weekly aggregates, the
tables it owns computed there, equal to the pair features of the whole fit data, bit for bit."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import sparse

from audience.candidates import ClipQueries, make_source
from audience.config import SimilarAuthorsSettings, load_config
from audience.profiles.aggregates import fit_from_aggregates
from audience.profiles.user_shards import in_process, user_shards
from audience.rank.features import candidate_pool, pair_features, pool_context, pool_counts
from audience.rank.sharded_features import (
    add_parts,
    sharded_neighbours,
    sharded_pair_features,
    sharded_pool_context,
)
from audience.rank.similar_authors import author_neighbours

# neighbours by a budget small enough that the tiny users' audiences are cut (the per-user cut over shards)
CUT = SimilarAuthorsSettings(k=6, pair_budget=200_000)


@pytest.fixture(scope="module")
def world(tiny_aggregates):
    """The tiny train weeks' catalog, aggregate store, whole FitData, 200 target clips and a pool of three
    sources' top 60 users each."""
    catalog, store, weeks, whole = tiny_aggregates
    queries = ClipQueries.from_catalog(catalog, catalog.items.ids[-200:])
    cfg = load_config(None)
    frames = {}
    for name in ("author_fans", "exact:positive", "coengagement"):
        top = make_source(name, cfg).fit(whole, catalog).recommend(queries, 60)
        frames[name] = top.to_frame(name)
    pool = candidate_pool(frames, 60)
    return catalog, store, weeks, whole, queries, pool


def shard_map_of(world, n_shards: int):
    catalog, store, weeks, *_ = world
    shards = user_shards(catalog.n_users, n_shards)
    fits = [(s, fit_from_aggregates(store, weeks, progress=False, shard=s)) for s in shards]
    return shards, in_process(fits)


def test_add_parts_pads_and_adds_in_64_bits():
    np.testing.assert_array_equal(add_parts([np.array([1, 2]), np.array([3, 4, 5])]), [4, 6, 5])
    big = np.array([2**40])
    assert add_parts([big, big])[0] == 2**41
    assert add_parts([np.array([0.1], np.float32), np.array([0.2])]).dtype == np.float64


@pytest.mark.parametrize("n_shards", [1, 2, 3])
def test_sharded_neighbours_equal_the_whole_audience(world, n_shards):
    """The cut per user, the norms and every block's cosines added over shards: the same neighbours."""
    catalog, _, _, whole, queries, _ = world
    _, shard_map = shard_map_of(world, n_shards)
    authors = np.unique(queries.author[queries.author >= 0])
    want = author_neighbours(
        whole.histories["user_author_views"], authors, CUT.k, pair_budget=CUT.pair_budget
    )
    got = sharded_neighbours(shard_map, authors, len(catalog.authors), CUT)
    assert want.nnz > authors.size  # real neighbours, several per author
    assert (want != got).nnz == 0


@pytest.mark.parametrize("n_shards", [1, 2, 3])
def test_sharded_pair_features_equal_the_whole_fit(world, n_shards):
    """Every column of every pair, the pool cut into two blocks of whole clips as the rank stage scores it."""
    catalog, _, _, whole, queries, pool = world
    shards, shard_map = shard_map_of(world, n_shards)
    counts = pool_counts(pool, catalog.n_users)
    want = pair_features(pool, whole, catalog, queries, pool_context(counts, whole, catalog, queries, CUT))
    context = sharded_pool_context(counts, whole, catalog, queries, shards, shard_map, CUT)
    cut = int(np.searchsorted(pool["clip"].to_numpy(), 100))
    got = pl.concat(
        [
            sharded_pair_features(pool.slice(0, cut), context, shard_map),
            sharded_pair_features(pool.slice(cut), context, shard_map),
        ]
    )
    assert got.columns == want.columns and got.height == pool.height
    assert got.equals(want)


def test_a_block_with_no_pairs_has_every_column(world):
    catalog, _, _, whole, queries, pool = world
    shards, shard_map = shard_map_of(world, 2)
    counts = pool_counts(pool, catalog.n_users)
    context = sharded_pool_context(counts, whole, catalog, queries, shards, shard_map, CUT)
    empty = sharded_pair_features(pool.clear(), context, shard_map)
    assert empty.height == 0
    assert empty.columns == pair_features(pool, whole, catalog, queries).columns
    assert isinstance(context.common.neighbours, sparse.csr_matrix)
