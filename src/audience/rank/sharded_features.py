"""The reranker's pair features with user shards (profiles/user_shards.py): every table that reads a user's
fit data is computed on that user's shard, the client holds only the pool, clip-side and author-side tables.

* Per user (activity, demographics, history totals): each shard's `UserTables`, made once per pool and kept
  where the shard lives.
* Per author: the sums over users (recent views, distinct viewers and engaged users) added over the shards
  (`add_parts`); the clip-side counts come from any fit data, where they are whole.
* The target authors' neighbours (rank/similar_authors.py): the per-user cut from the shards' added
  histograms of authors seen, the audience columns' norms added over shards, then for each block of target
  authors the shards' dense cosine blocks added up before the top-k. The client holds one block (at most
  2**25 cosines), each shard its cut audience.
* Per pair: a block of the pool's clips is cut by user shard; each shard computes its pairs' columns from
  its own fit data (`pair_columns`), and the client puts the rows back in pool order and adds the
  within-clip columns, which need whole clips.

Equal to `pair_features` on one fit data, whatever the number of shards: every sum over users is an integer
or a float64 sum rounded to float32 once, after the shards' parts are added (the only difference: a float64
sum within its rounding error, ~1e-16, of a float32 tie, which no test or run has met).

The work reaches the shards through a `ShardMap` passed down by the caller (profiles/user_shards.py: the
Dask engine's, or `in_process` for tests and references)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl
from scipy import sparse

from audience.candidates.base import ClipQueries
from audience.config import SimilarAuthorsSettings
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData
from audience.profiles.user_shards import ShardMap, UserShard
from audience.rank.features import (
    PoolContext,
    UserTables,
    author_history_sums,
    author_tables,
    clip_tables,
    pair_columns,
    pool_shares,
    target_author_rows,
    user_tables,
    within_clip_features,
)
from audience.rank.similar_authors import (
    block_similarity,
    cut_audience,
    cut_per_user,
    neighbours_by_blocks,
    seen_histogram,
    squared_norms,
    unit_audience,
)


def add_parts(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Shards' additive parts summed along their first axis, padded to the longest: integers as int64, floats
    as float64 (the parts are float64 sums, rounded to float32 only once they are added)."""
    parts = [np.asarray(p) for p in parts]
    size = max(p.shape[0] for p in parts)
    dtype = np.int64 if np.issubdtype(parts[0].dtype, np.integer) else np.float64
    total = np.zeros((size, *parts[0].shape[1:]), dtype=dtype)
    for part in parts:
        total[: part.shape[0]] += part
    return total


@dataclass
class ShardedContext:
    """The pool-wide tables of a sharded pool: `common` is a PoolContext whose `users` is None (each shard
    brings its own), `users` the shards' UserTables (or their handles), `held` each shard's handle of the
    target clips' queries and `common`, sent to its worker once for every block of the pool; in shard
    order."""

    shards: list[UserShard]
    common: PoolContext
    users: list
    held: list


def _shard_user_tables(shard: UserShard, fit: FitData, catalog: Catalog) -> UserTables:
    return user_tables(fit, catalog.users_frame.slice(shard.start, len(shard)))


def _shard_history_sums(shard: UserShard, fit: FitData) -> dict[str, np.ndarray]:
    return author_history_sums(fit)


def _shard_seen_histogram(shard: UserShard, fit: FitData) -> np.ndarray:
    return seen_histogram(fit.histories["user_author_views"])


def _shard_cut(shard: UserShard, fit: FitData, per_user: int | None) -> sparse.csr_matrix:
    return cut_audience(fit.histories["user_author_views"], per_user)


def _shard_norms(shard: UserShard, fit: FitData, audience: sparse.csr_matrix) -> np.ndarray:
    return squared_norms(audience)


def _shard_unit(shard: UserShard, fit: FitData, audience: sparse.csr_matrix, norms: np.ndarray) -> tuple:
    return unit_audience(audience, norms)


def _shard_block(shard: UserShard, fit: FitData, operands: tuple, part: np.ndarray) -> np.ndarray:
    return block_similarity(operands, part)


def sharded_neighbours(
    shard_map: ShardMap, target_authors: np.ndarray, n_authors: int, similar: SimilarAuthorsSettings
) -> sparse.csr_matrix:
    """similar_authors.author_neighbours of the shards' users together, block by block (see the module)."""
    per_user = cut_per_user(add_parts(shard_map(_shard_seen_histogram)), similar.pair_budget)
    cuts = shard_map(_shard_cut, per_user, keep=True)
    norms = np.sqrt(add_parts(shard_map(_shard_norms, per_shard=[(c,) for c in cuts])))
    operands = shard_map(_shard_unit, norms, per_shard=[(c,) for c in cuts], keep=True)

    def similarity(part: np.ndarray) -> np.ndarray:
        return add_parts(shard_map(_shard_block, part, per_shard=[(o,) for o in operands]))

    return neighbours_by_blocks(similarity, target_authors, n_authors, similar.k)


def sharded_pool_context(
    pool_counts: np.ndarray,
    counts: FitData,
    catalog: Catalog,
    queries: ClipQueries,
    shards: Sequence[UserShard],
    shard_map: ShardMap,
    similar: SimilarAuthorsSettings | None = None,
) -> ShardedContext:
    """features.pool_context over user shards (`pool_counts`: the pool's, features.pool_counts): `counts`
    needs only the fit data's clip-side counts and the mixture (any shard's fit data, or the light load of a
    run's), the users' state stays on the shards."""
    similar = similar or SimilarAuthorsSettings()
    sums = shard_map(_shard_history_sums)
    history_sums = {name: add_parts([s[name] for s in sums]) for name in sums[0]}
    target_authors, row_of_author = target_author_rows(queries, len(catalog.authors))
    common = PoolContext(
        None,  # type: ignore[arg-type]  # each shard's own, see ShardedContext.users
        pool_shares(pool_counts, len(queries)),
        author_tables(counts, catalog, queries, history_sums),
        sharded_neighbours(shard_map, target_authors, len(catalog.authors), similar),
        row_of_author,
        *clip_tables(queries, counts.gmm),
    )
    users = shard_map(_shard_user_tables, catalog, keep=True)
    held = shard_map(_shard_hold, queries, common, keep=True)
    return ShardedContext(list(shards), common, users, held)


def _shard_hold(shard: UserShard, fit: FitData, queries: ClipQueries, common: PoolContext) -> tuple:
    return queries, common


def _shard_pair_columns(
    shard: UserShard, fit: FitData, tables: UserTables, held: tuple, pairs: pl.DataFrame
) -> pl.DataFrame:
    """The columns of a shard's pairs (local user indices), its users' tables in the common context (`held`:
    the queries and the common context)."""
    queries, common = held
    shares = {name: values[shard.start : shard.stop] for name, values in common.shares.items()}
    return pair_columns(pairs, fit, queries, replace(common, users=tables, shares=shares))


def sharded_pair_features(block: pl.DataFrame, context: ShardedContext, shard_map: ShardMap) -> pl.DataFrame:
    """features.pair_features of a block of the pool (whole clips, sorted by clip, user), each user's
    columns computed on its shard; rows in the block's order."""
    user = block["user"].to_numpy()
    rows_of, per_shard = [], []
    for shard, tables, held in zip(context.shards, context.users, context.held, strict=True):
        rows = np.flatnonzero((user >= shard.start) & (user < shard.stop))
        rows_of.append(rows)
        local = block[rows].with_columns(pl.col("user") - shard.start)
        # a shard without pairs is skipped, but the first always answers: an empty block has every column
        per_shard.append((tables, held, local) if rows.size or not per_shard else None)
    parts = shard_map(_shard_pair_columns, per_shard=per_shard)
    merged = pl.concat(
        [
            part.with_columns(pl.col("user") + shard.start)
            for shard, part in zip(context.shards, parts, strict=True)
            if part is not None
        ]
    )
    order = np.argsort(np.concatenate(rows_of), kind="stable")
    return within_clip_features(merged[order])
