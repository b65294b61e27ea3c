"""Features of (clip, user) candidate pairs for the reranker, all from the fit weeks (never the label week).

Per source: its score and rank (NaN when the source did not propose the pair), and over the sources the
pair's best rank and how many propose it. Per user: activity (all fit weeks and recency-weighted, and
their ratio: is the user fading or growing), engagement rate, demographics, how many distinct authors they
watch, the share of the target clips whose pool holds them, and holds them near the top (cap pressure, as
shares so that a label week of a few thousand clips and a test week of tens of thousands read alike). Per
clip: duration, its author's size, audience (distinct viewers and engaged users), recent share of views
(growing or fading) and engagement rate, the share of the target clips that share its author, whether it
has an embedding. Per pair:
cosine between the clip and each embedding profile kind, the user's affinity to the clip's GMM clusters
(their soft-cluster profile dotted with the clip's posterior, when a gmm: source built one), and the user's
recency-weighted views / positives with the clip's author and with the authors most like it
(rank/similar_authors.py), each also as a share of all their recent views / positives. Per pair within its
clip's pool (`within_clip_features`): its rank and its value against the clip's best for the strongest of
these signals, so that label weeks and the test week, whose pools differ in size and scale, read alike.

Everything is a numpy gather over the pool or a numba pass over it (no Python loop over pairs); cosines
are computed in blocks of pairs so memory stays at about block x dim x 8 bytes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse

from audience.arrays import sparse_values_at
from audience.candidates.base import ClipQueries
from audience.config import SimilarAuthorsSettings
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData
from audience.rank.similar_authors import author_neighbours, neighbour_affinity

COSINE_BLOCK = 1 << 20


def candidate_pool(
    frames: Mapping[str, pl.DataFrame], depth: int, depths: Mapping[str, int] | None = None
) -> pl.DataFrame:
    """Union of every source's top-`depth` pairs (`depths[name]` where given): one row per (clip, user) with
    each source's score/rank."""
    parts = []
    for name, frame in frames.items():
        top = frame.filter(pl.col("rank") <= (depths or {}).get(name, depth)).select(
            "clip", "user", pl.col("score").alias(f"score__{name}"), pl.col("rank").alias(f"rank__{name}")
        )
        parts.append(top)
    pool = parts[0]
    for part in parts[1:]:
        pool = pool.join(part, on=["clip", "user"], how="full", coalesce=True)
    return pool.sort("clip", "user")


TOP_RANK = 100  # a pool pair "near the top" has this rank or better in some source


def _rank_columns(pool: pl.DataFrame) -> list[str]:
    return [c for c in pool.columns if c.startswith("rank__")]


def best_rank(pool: pl.DataFrame) -> np.ndarray:
    """(rows,) each pair's best (lowest) rank over the sources that propose it."""
    return pool.select(pl.min_horizontal(_rank_columns(pool))).to_series().to_numpy()


def _blocked_dot(clip_vectors: np.ndarray, user_vectors: np.ndarray, clip: np.ndarray, user: np.ndarray):
    out = np.empty(clip.shape[0], dtype=np.float32)
    for start in range(0, clip.shape[0], COSINE_BLOCK):  # blocks of pairs, each one vectorized product
        end = start + COSINE_BLOCK
        out[start:end] = np.einsum("ij,ij->i", clip_vectors[clip[start:end]], user_vectors[user[start:end]])
    return out


@dataclass
class UserTables:
    """Per user of a fit data (a shard's local users for a shard's), what the pair features gather: activity,
    demographics, distinct authors and the recency-weighted totals of the user x author histories."""

    cols: dict[str, np.ndarray]  # float32 per user
    recent_total: dict[str, np.ndarray]  # float32 per user: recency-weighted views / positives, all authors


def user_tables(fit: FitData, users_meta: pl.DataFrame) -> UserTables:
    """The fit data's `UserTables`; `users_meta`: its users' rows of the catalog's users_frame."""
    views = fit.user_views.astype(np.float32)
    positives = fit.user_positives.astype(np.float32)
    cols = {
        "user_log_views": np.log1p(views),
        "user_log_positives": np.log1p(positives),
        "user_positive_rate": positives / np.maximum(views, 1.0),
        "user_age": users_meta["age"].to_numpy().astype(np.float32),
        "user_gender": users_meta["gender"].to_numpy().astype(np.float32),
        "user_geo": users_meta["geo"].to_numpy().astype(np.float32),
        "user_distinct_authors": np.diff(fit.histories["user_author_views"].indptr).astype(np.float32),
        "user_views": views,
    }
    recent_total = {
        name: np.asarray(fit.histories[name].sum(axis=1)).ravel().astype(np.float32)
        for name in ("user_author_views", "user_author_positives")
    }
    return UserTables(cols, recent_total)


def author_history_sums(fit: FitData) -> dict[str, np.ndarray]:
    """Per author, the sums over users the author columns need (recent views as float64, distinct viewers and
    distinct engaged users as int64): additive over user shards, the same sums to float64 rounding."""
    audience = fit.histories["user_author_views"]
    engaged = fit.histories["user_author_positives"]
    n_authors = audience.shape[1]
    return {
        "recent_views": np.bincount(audience.indices, weights=audience.data, minlength=n_authors),
        "audience": np.bincount(audience.indices, minlength=n_authors),
        "engaged_users": np.bincount(engaged.indices, minlength=n_authors),
    }


def author_tables(
    fit: FitData, catalog: Catalog, queries: ClipQueries, history_sums: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per author columns from the clip-side counts of `fit` (whole in every shard) and the users' summed
    `history_sums` (author_history_sums)."""
    n_authors = len(catalog.authors)
    n_targets = max(len(queries), 1)
    author_views = np.bincount(catalog.item_author, weights=fit.item_views, minlength=n_authors)
    author_pos = np.bincount(catalog.item_author, weights=fit.item_positives, minlength=n_authors)
    recent_author_views = history_sums["recent_views"]
    clip_author = queries.author[queries.author >= 0]
    return {
        "author_log_views": np.log1p(author_views),
        "author_positive_rate": author_pos / np.maximum(author_views, 1.0),
        "author_clips": np.bincount(catalog.item_author[fit.item_views > 0], minlength=n_authors),
        "author_target_share": np.bincount(clip_author, minlength=n_authors).astype(np.float32) / n_targets,
        "author_recent_views": np.log1p(recent_author_views),
        # is the author's audience growing or fading
        "author_recent_share": recent_author_views / np.maximum(author_views, 1.0),
        "author_audience": np.log1p(history_sums["audience"]),
        "author_engaged_users": np.log1p(history_sums["engaged_users"]),
    }


def pool_counts(pool: pl.DataFrame, n_users: int) -> np.ndarray:
    """(2, n_users) int64: per user, how many of the pool's clips it is a candidate of, and of how many near
    the top (`TOP_RANK`). Additive over blocks of clips, so a pool read block by block is counted whole."""
    user = pool["user"].to_numpy()
    near_top = best_rank(pool) <= TOP_RANK
    return np.stack([np.bincount(user, minlength=n_users), np.bincount(user[near_top], minlength=n_users)])


def pool_shares(counts: np.ndarray, n_targets: int) -> dict[str, np.ndarray]:
    """Cap pressure per user as shares of the targets (`counts`: pool_counts of the whole pool), comparable
    between a label week's few thousand new clips and a test week's tens of thousands: in how many pools,
    and in how many near the top."""
    n_targets = max(n_targets, 1)
    return {
        "user_pool_share": counts[0].astype(np.float32) / n_targets,
        "user_top_share": counts[1].astype(np.float32) / n_targets,
    }


def clip_tables(queries: ClipQueries, gmm) -> tuple[np.ndarray, np.ndarray | None]:
    """(unit clip embeddings, the clips' GMM posteriors or None without a mixture)."""
    unit = np.linalg.norm(queries.embedding, axis=1, keepdims=True)
    clip_vectors = np.where(unit > 0, queries.embedding / np.maximum(unit, 1e-12), 0.0).astype(np.float32)
    posteriors = None
    if gmm is not None:
        posteriors = gmm.predict_proba(queries.embedding) * queries.has_embedding[:, None]
        posteriors = posteriors.astype(np.float32)
    return clip_vectors, posteriors


def target_author_rows(queries: ClipQueries, n_authors: int) -> tuple[np.ndarray, np.ndarray]:
    """(the target clips' distinct authors, per author its row among them or -1)."""
    target_authors = np.unique(queries.author[queries.author >= 0])
    row_of_author = np.full(n_authors, -1, dtype=np.int64)
    row_of_author[target_authors] = np.arange(target_authors.size)
    return target_authors, row_of_author


@dataclass
class PoolContext:
    """What the pair features read besides the pairs themselves, computed once per pool: per-user,
    per-author and per-clip tables and the target authors' neighbours. A block of the pool's clips gets the
    same features with it as the whole pool does (the Dask engine scores blocks on workers); with user
    shards, a shard's context holds its own users' tables (rank/sharded_features.py)."""

    users: UserTables
    shares: dict[str, np.ndarray]  # float32 per user: pool_shares of the whole pool
    author_cols: dict[str, np.ndarray]  # float64/float32 per author (gathered with NaN for unknown authors)
    neighbours: sparse.csr_matrix  # (target authors x n_authors) similar_authors.author_neighbours
    row_of_author: np.ndarray  # int64 per author: its row in `neighbours`, -1 if not a target author
    clip_vectors: np.ndarray  # float32 (n_clips, dim) unit clip embeddings
    posteriors: np.ndarray | None  # float32 (n_clips, components) GMM posteriors of the clips


def pool_context(
    counts: np.ndarray,
    fit: FitData,
    catalog: Catalog,
    queries: ClipQueries,
    similar: SimilarAuthorsSettings | None = None,
) -> PoolContext:
    """The pool-wide part of `pair_features` (see PoolContext) from the pool's `pool_counts` (the only
    thing it reads of the pool, so the pool may be read block by block); `similar`: the similar-authors
    settings (the reranker's, config.RerankerConfig.similar_authors)."""
    similar = similar or SimilarAuthorsSettings()
    target_authors, row_of_author = target_author_rows(queries, len(catalog.authors))
    neighbours = author_neighbours(
        fit.histories["user_author_views"], target_authors, similar.k, pair_budget=similar.pair_budget
    )
    return PoolContext(
        user_tables(fit, catalog.users_frame),
        pool_shares(counts, len(queries)),
        author_tables(fit, catalog, queries, author_history_sums(fit)),
        neighbours,
        row_of_author,
        *clip_tables(queries, fit.gmm),
    )


def pair_features(
    pool: pl.DataFrame,
    fit: FitData,
    catalog: Catalog,
    queries: ClipQueries,
    context: PoolContext | None = None,
) -> pl.DataFrame:
    """The pool with every feature column added (float32; NaN where unknown). `context`: the pool-wide
    tables (`pool_context` of the whole pool; computed here with the default settings when None)."""
    if context is None:
        context = pool_context(pool_counts(pool, fit.n_users), fit, catalog, queries)
    return within_clip_features(pair_columns(pool, fit, queries, context))


def pair_columns(
    pool: pl.DataFrame, fit: FitData, queries: ClipQueries, context: PoolContext
) -> pl.DataFrame:
    """`pair_features` but the within-clip columns: each pair's columns from its own user's state and the
    pool-wide tables, so any subset of the pool's pairs (a user shard's) gets its rows' values."""
    clip = pool["clip"].to_numpy()
    user = pool["user"].to_numpy()
    author = queries.author[clip]
    known_author = author >= 0
    safe_author = np.maximum(author, 0)
    nan = np.float32(np.nan)
    u = {**context.users.cols, **context.shares}
    cols: dict[str, np.ndarray] = {
        name: u[name][user]
        for name in (
            "user_log_views",
            "user_log_positives",
            "user_positive_rate",
            "user_age",
            "user_gender",
            "user_geo",
            "user_pool_share",
            "user_top_share",
        )
    }
    # where the pair stands in its clip's pool: its best rank over the sources and how many propose it
    cols["pair_best_rank"] = best_rank(pool).astype(np.float32)
    cols["pair_sources"] = sum(pool[c].is_not_null().to_numpy() for c in _rank_columns(pool)).astype(
        np.float32
    )
    cols["clip_duration"] = queries.duration[clip].astype(np.float32)
    cols["clip_has_embedding"] = queries.has_embedding[clip].astype(np.float32)
    for name, values in context.author_cols.items():
        cols[name] = np.where(known_author, values[safe_author], nan)
    cols["user_distinct_authors"] = u["user_distinct_authors"][user]
    pair_row = np.where(known_author, context.row_of_author[safe_author], -1)
    for name in ("user_author_views", "user_author_positives"):
        history = fit.histories[name]
        total = context.users.recent_total[name][user]
        value = sparse_values_at(history, user, safe_author).astype(np.float32)
        cols[name] = np.where(known_author, value, nan)
        cols[f"{name}_share"] = cols[name] / np.maximum(total, 1e-3)
        similar = neighbour_affinity(history, context.neighbours, user, pair_row)
        cols[f"similar_{name}"] = similar
        cols[f"similar_{name}_share"] = similar / np.maximum(total, 1e-3)
    cols["user_author_rate"] = cols["user_author_positives"] / np.maximum(cols["user_author_views"], 1e-3)
    cols["user_recent_views"] = context.users.recent_total["user_author_views"][user]
    # activity trend
    cols["user_recent_share"] = cols["user_recent_views"] / np.maximum(u["user_views"][user], 1.0)
    for kind, profile in fit.profiles.items():
        if kind.startswith("gmm_"):  # soft-cluster profile: the user's affinity to the clip's clusters
            if context.posteriors is None:
                continue
            affinity = _blocked_dot(context.posteriors, profile, clip, user)
            cols[f"cluster_affinity__{kind}"] = np.where(queries.has_embedding[clip], affinity, nan)
            continue
        cosine = _blocked_dot(context.clip_vectors, profile[:, : context.clip_vectors.shape[1]], clip, user)
        cols[f"cos__{kind}"] = np.where(queries.has_embedding[clip], cosine, nan)
    extra = pl.DataFrame({name: np.asarray(v, dtype=np.float32) for name, v in cols.items()})
    return pl.concat([pool, extra], how="horizontal")


# Where a pair stands among its own clip's pool, for the strongest signals: its rank as a share of the
# clip's pool (descending), and its value against the clip's best, as a ratio for counts and as a
# difference for scores. A label week of a few thousand clips and a test week of tens of thousands
# differ in their features' scales (pool depth, the cut of each user's history, activity); these read
# alike in both.
CLIP_RATIO_COLUMNS = (
    "similar_user_author_positives",
    "similar_user_author_views",
    "user_author_views",
    "user_author_positives",
)
CLIP_GAP_COLUMNS = ("score__first_stage", "cos__positive", "cluster_affinity__gmm_positive")


def within_clip_features(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` plus clip_rank__X (the pair's descending rank among its clip's known values of X, ties
    averaged, over their count: in (0, 1], best near 0) and clip_rel__X (X over the clip's largest for
    CLIP_RATIO_COLUMNS, X minus it for CLIP_GAP_COLUMNS), for each such X the frame has; NaN where X is
    unknown. The frame must hold every pair of each of its clips (the pools are cut by whole clips)."""
    exprs = []
    for name in (*CLIP_RATIO_COLUMNS, *CLIP_GAP_COLUMNS):
        if name not in frame.columns:
            continue
        value = pl.col(name).cast(pl.Float64).fill_nan(None)
        best = value.max().over("clip")
        exprs.append(
            (value.rank("average", descending=True).over("clip") / value.count().over("clip")).alias(
                f"clip_rank__{name}"
            )
        )
        relative = value / best if name in CLIP_RATIO_COLUMNS else value - best
        exprs.append(relative.alias(f"clip_rel__{name}"))
    if not exprs:
        return frame
    added = frame.select(exprs).cast(pl.Float32).fill_null(np.nan)
    return pl.concat([frame, added], how="horizontal")


def feature_columns(columns: Iterable[str]) -> list[str]:
    """Every column of a feature frame (`columns`: its names) except the keys and the label."""
    return [c for c in columns if c not in ("clip", "user", "label")]


def add_labels(pool: pl.DataFrame, truth_pairs: pl.DataFrame) -> pl.DataFrame:
    """label = 1 where (clip, user) is a positive of the label week (truth_pairs has clip, user indices)."""
    marked = truth_pairs.select("clip", "user").unique().with_columns(pl.lit(1, pl.Int8).alias("label"))
    return pool.join(marked, on=["clip", "user"], how="left").with_columns(pl.col("label").fill_null(0))
