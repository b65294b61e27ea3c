"""Features of (clip, user) candidate pairs for the reranker, all from the fit weeks (never the label week).

Per source: its score and rank (NaN when the source did not propose the pair). Per user: activity (all
fit weeks and recency-weighted, and their ratio: is the user fading or growing), engagement rate,
demographics, how many distinct authors they watch, how many target clips propose them (cap pressure). Per
clip: duration, its author's size, audience (distinct viewers and engaged users), recent share of views
(growing or fading) and engagement rate, how many of the target clips share its author, whether it has an
embedding. Per pair:
cosine between the clip and each embedding profile kind, the user's affinity to the clip's GMM clusters
(their soft-cluster profile dotted with the clip's posterior, when a gmm: source built one), and the user's
recency-weighted views / positives with the clip's author and with the authors most like it
(rank/similar_authors.py), each also as a share of all their recent views / positives.

Everything is a numpy gather over the pool or a numba pass over it (no Python loop over pairs); cosines
are computed in blocks of pairs so memory stays at about block x dim x 8 bytes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl
from scipy import sparse

from audience.arrays import sparse_values_at
from audience.candidates.base import ClipQueries
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData
from audience.rank.similar_authors import author_neighbours, neighbour_affinity

COSINE_BLOCK = 1 << 20


def candidate_pool(frames: Mapping[str, pl.DataFrame], depth: int) -> pl.DataFrame:
    """Union of every source's top-`depth` pairs: one row per (clip, user) with each source's score/rank."""
    parts = []
    for name, frame in frames.items():
        top = frame.filter(pl.col("rank") <= depth).select(
            "clip", "user", pl.col("score").alias(f"score__{name}"), pl.col("rank").alias(f"rank__{name}")
        )
        parts.append(top)
    pool = parts[0]
    for part in parts[1:]:
        pool = pool.join(part, on=["clip", "user"], how="full", coalesce=True)
    return pool.sort("clip", "user")


def _blocked_dot(clip_vectors: np.ndarray, user_vectors: np.ndarray, clip: np.ndarray, user: np.ndarray):
    out = np.empty(clip.shape[0], dtype=np.float32)
    for start in range(0, clip.shape[0], COSINE_BLOCK):  # blocks of pairs, each one vectorized product
        end = start + COSINE_BLOCK
        out[start:end] = np.einsum("ij,ij->i", clip_vectors[clip[start:end]], user_vectors[user[start:end]])
    return out


def pair_features(pool: pl.DataFrame, fit: FitData, catalog: Catalog, queries: ClipQueries) -> pl.DataFrame:
    """The pool with every feature column added (float32; NaN where unknown)."""
    clip = pool["clip"].to_numpy()
    user = pool["user"].to_numpy()
    author = queries.author[clip]
    known_author = author >= 0
    safe_author = np.maximum(author, 0)

    views = fit.user_views.astype(np.float32)
    positives = fit.user_positives.astype(np.float32)
    users_meta = catalog.users_frame
    cols: dict[str, np.ndarray] = {
        "user_log_views": np.log1p(views)[user],
        "user_log_positives": np.log1p(positives)[user],
        "user_positive_rate": (positives / np.maximum(views, 1.0))[user],
        "user_age": users_meta["age"].to_numpy().astype(np.float32)[user],
        "user_gender": users_meta["gender"].to_numpy().astype(np.float32)[user],
        "user_geo": users_meta["geo"].to_numpy().astype(np.float32)[user],
        "user_pool_clips": np.bincount(user, minlength=fit.n_users).astype(np.float32)[user],
        "clip_duration": queries.duration[clip].astype(np.float32),
        "clip_has_embedding": queries.has_embedding[clip].astype(np.float32),
    }
    n_authors = len(catalog.authors)
    author_views = np.bincount(catalog.item_author, weights=fit.item_views, minlength=n_authors)
    author_pos = np.bincount(catalog.item_author, weights=fit.item_positives, minlength=n_authors)
    author_clips = np.bincount(catalog.item_author[fit.item_views > 0], minlength=n_authors)
    nan = np.float32(np.nan)
    cols["author_log_views"] = np.where(known_author, np.log1p(author_views)[safe_author], nan)
    cols["author_positive_rate"] = np.where(
        known_author, (author_pos / np.maximum(author_views, 1.0))[safe_author], nan
    )
    cols["author_clips"] = np.where(known_author, author_clips[safe_author], nan)
    clip_author = queries.author[queries.author >= 0]
    cols["author_target_clips"] = np.where(
        known_author, np.bincount(clip_author, minlength=n_authors).astype(np.float32)[safe_author], nan
    )
    audience = sparse.csr_matrix(fit.histories["user_author_views"])
    recent_author_views = np.asarray(audience.sum(axis=0)).ravel()
    cols["author_recent_views"] = np.where(known_author, np.log1p(recent_author_views)[safe_author], nan)
    cols["author_recent_share"] = np.where(  # is the author's audience growing or fading
        known_author, (recent_author_views / np.maximum(author_views, 1.0))[safe_author], nan
    )
    engaged = sparse.csr_matrix(fit.histories["user_author_positives"])
    for name, history in (("author_audience", audience), ("author_engaged_users", engaged)):
        distinct_users = np.bincount(history.indices, minlength=n_authors)
        cols[name] = np.where(known_author, np.log1p(distinct_users)[safe_author], nan)
    cols["user_distinct_authors"] = np.diff(audience.indptr).astype(np.float32)[user]
    target_authors = np.unique(author[known_author])
    neighbours = author_neighbours(audience, target_authors)
    row_of_author = np.full(n_authors, -1, dtype=np.int64)
    row_of_author[target_authors] = np.arange(target_authors.size)
    pair_row = np.where(known_author, row_of_author[safe_author], -1)
    recent_total = {}  # recency-weighted views / positives of each user, over every author
    for name in ("user_author_views", "user_author_positives"):
        history = fit.histories[name]
        value = sparse_values_at(history, user, safe_author).astype(np.float32)
        cols[name] = np.where(known_author, value, nan)
        recent_total[name] = np.asarray(history.sum(axis=1)).ravel().astype(np.float32)
        cols[f"{name}_share"] = cols[name] / np.maximum(recent_total[name][user], 1e-3)
        similar = neighbour_affinity(history, neighbours, user, pair_row)
        cols[f"similar_{name}"] = similar
        cols[f"similar_{name}_share"] = similar / np.maximum(recent_total[name][user], 1e-3)
    cols["user_author_rate"] = cols["user_author_positives"] / np.maximum(cols["user_author_views"], 1e-3)
    cols["user_recent_views"] = recent_total["user_author_views"][user]
    cols["user_recent_share"] = cols["user_recent_views"] / np.maximum(views[user], 1.0)  # activity trend
    unit = np.linalg.norm(queries.embedding, axis=1, keepdims=True)
    clip_vectors = np.where(unit > 0, queries.embedding / np.maximum(unit, 1e-12), 0.0).astype(np.float32)
    posteriors = None
    if fit.gmm is not None:
        posteriors = fit.gmm.predict_proba(queries.embedding) * queries.has_embedding[:, None]
    for kind, profile in fit.profiles.items():
        if kind.startswith("gmm_"):  # soft-cluster profile: the user's affinity to the clip's clusters
            if posteriors is None:
                continue
            affinity = _blocked_dot(posteriors.astype(np.float32), profile, clip, user)
            cols[f"cluster_affinity__{kind}"] = np.where(queries.has_embedding[clip], affinity, nan)
            continue
        cosine = _blocked_dot(clip_vectors, profile[:, : clip_vectors.shape[1]], clip, user)
        cols[f"cos__{kind}"] = np.where(queries.has_embedding[clip], cosine, nan)
    extra = pl.DataFrame({name: np.asarray(v, dtype=np.float32) for name, v in cols.items()})
    return pl.concat([pool, extra], how="horizontal")


def feature_columns(frame: pl.DataFrame) -> list[str]:
    """Every column of a feature frame except the keys and the label."""
    return [c for c in frame.columns if c not in ("clip", "user", "label")]


def add_labels(pool: pl.DataFrame, truth_pairs: pl.DataFrame) -> pl.DataFrame:
    """label = 1 where (clip, user) is a positive of the label week (truth_pairs has clip, user indices)."""
    marked = truth_pairs.select("clip", "user").unique().with_columns(pl.lit(1, pl.Int8).alias("label"))
    return pool.join(marked, on=["clip", "user"], how="left").with_columns(pl.col("label").fill_null(0))
