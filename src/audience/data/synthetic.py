"""A synthetic VK-LSVD: the real layout, file names and dtypes, with a hidden ground truth for an oracle.

The generative story (numpy and numba kernels in `synthetic_kernels`, written week by week so memory stays
bounded):

* Topics live in a small latent space. Authors have a topic, a personal style and a heavy-tailed popularity;
  clips inherit their author's topic/style plus noise, get a heavy-tailed quality, a release week and a
  duration. The 64-d float16 content embedding is a noisy linear image of the clip's latent vector, rotated
  onto its principal axes so that dimensions are ordered by variance (like the real truncated-SVD output).
* Users have demographics (age, gender, geo) that shift their topic preferences, a latent taste mixed from
  1-3 topics, a heavy-tailed activity level, an engagement propensity, a join week, and a few favourite
  authors (their fan bases).
* Each week a user's views come from three exposure channels: global popularity, their topics, their
  favourite authors. No (user, clip) pair repeats. Two shapes (`SyntheticConfig.shape`): "rolling", clips
  released every week, live for a few weeks and fading; "stocked", one catalogue live in every week and new
  clips (boosted, fading) only in the validation and test weeks.
* Engagement flags follow a logistic model of an affinity that mixes taste/content match, fandom, clip
  quality, user propensity and noise, calibrated so per-view rates match the real ones times
  `rate_multiplier` (a knob to get enough positives on small data).

So content embeddings explain only part of who engages: activity, authors, recency and noise explain the
rest, and ranking users by averaged embeddings alone lands far below the oracle (the ranking by true
expected positives, stored under `_synthetic_truth/`, which the pipeline never reads).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numba as nb
import numpy as np
import polars as pl
from polars.io.plugins import register_io_source
from scipy import sparse
from scipy.special import expit

from audience import progress as progress_report
from audience.data import synthetic_kernels as kernels
from audience.data.layout import DatasetLayout
from audience.data.metadata_padding import REAL_ITEMS, REAL_USERS, pad_metadata
from audience.data.presets import SyntheticConfig
from audience.data.schema import FLAG_COLUMNS, INTERACTIONS_SCHEMA, ITEMS_SCHEMA, USERS_SCHEMA
from audience.data.targets import write_mixed_targets
from audience.io import atomic_path, write_parquet

REAL_RATES: dict[str, float] = {
    "like": 0.029,
    "open_comments": 0.012,
    "share": 0.0064,
    "click_on_author": 0.0021,
    "bookmark": 0.0010,
    "dislike": 0.0003,
}
# How strongly each flag responds to affinity, and extra weight of fandom (click_on_author follows authors).
FLAG_SLOPE = {"like": 1.0, "open_comments": 0.8, "share": 1.2, "click_on_author": 0.8, "bookmark": 1.0}
FLAG_FAN_BONUS = {"like": 0.0, "open_comments": 0.0, "share": 0.0, "click_on_author": 1.5, "bookmark": 0.3}
N_PLACES, N_PLATFORMS, N_AGENTS, N_GEO = 24, 11, 29, 80
BLOCK_USERS = 32  # rows are shuffled (a random time order) within blocks of this many users
CHUNK_ROWS = 1 << 22  # rows per written row group (about; whole blocks of users)


class GroupedSampler:
    """Draw elements with probability proportional to weight, within a chosen group, fully vectorized.

    Elements are sorted by group and one cumulative weight array is kept; a draw for group g is a uniform
    number in g's slice of the cumulative sum, located with one searchsorted."""

    def __init__(self, group: np.ndarray, weight: np.ndarray, n_groups: int):
        order = np.argsort(group, kind="stable")
        self.elements = order
        w = weight[order].astype(np.float64)
        self.cumsum = np.cumsum(w)
        counts = np.bincount(group, minlength=n_groups)
        self.end = np.cumsum(counts)
        self.start = self.end - counts
        exclusive = self.cumsum - w
        has = counts > 0
        self.low = np.where(has, exclusive[np.minimum(self.start, len(w) - 1)] if len(w) else 0.0, 0.0)
        self.high = np.where(has, self.cumsum[np.maximum(self.end - 1, 0)] if len(w) else 0.0, 0.0)
        self.total = self.high - self.low

    def sample(self, groups: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One element per requested group; returns (element, ok) where ok is False for empty groups."""
        ok = self.total[groups] > 0
        r = self.low[groups] + rng.random(groups.shape[0]) * self.total[groups]
        idx = np.searchsorted(self.cumsum, r, side="right")
        idx = np.clip(idx, self.start[groups], np.maximum(self.end[groups] - 1, self.start[groups]))
        idx = np.minimum(idx, max(len(self.elements) - 1, 0))
        return (self.elements[idx] if len(self.elements) else np.zeros_like(groups)), ok


@dataclass
class World:
    """The hidden state behind a synthetic dataset (never written where the pipeline looks)."""

    topic_centers: np.ndarray
    item_author: np.ndarray
    item_topic: np.ndarray
    item_latent: np.ndarray
    item_quality: np.ndarray
    item_release: np.ndarray
    item_duration: np.ndarray
    item_embedding: np.ndarray
    user_theta: np.ndarray  # (U, K) topic mixture
    user_topics: np.ndarray  # (U, 3) topic ids, padded with the first
    user_topic_cdf: np.ndarray  # (U, 3) cumulative mixture weights over user_topics
    user_taste: np.ndarray
    user_activity: np.ndarray
    user_active_prob: np.ndarray
    user_join_week: np.ndarray
    user_propensity: np.ndarray
    user_platform: np.ndarray
    user_agent: np.ndarray
    user_age: np.ndarray
    user_gender: np.ndarray
    user_geo: np.ndarray
    fan_indptr: np.ndarray  # CSR users -> favourite authors
    fan_authors: np.ndarray
    fan_keys: np.ndarray  # sorted user * n_authors + author
    user_ids: np.ndarray  # external UInt32 ids
    item_ids: np.ndarray
    author_ids: np.ndarray


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _sparse_ids(rng: np.random.Generator, n: int, spread: int = 4) -> np.ndarray:
    """n distinct anonymised UInt32 ids scattered over [1, spread*n], in random order (not 0..n)."""
    return (rng.choice(spread * n, size=n, replace=False) + 1).astype(np.uint32)


def _principal_axes(x: np.ndarray) -> np.ndarray:
    """Rotate x onto its principal axes (uncentred, like truncated SVD), dimensions by decreasing variance."""
    gram = (x.T @ x) / x.shape[0]
    eigval, eigvec = np.linalg.eigh(gram)
    order = np.argsort(eigval)[::-1]
    return x @ eigvec[:, order]


def build_world(cfg: SyntheticConfig) -> World:
    """Sample every hidden quantity of the dataset (seeded)."""
    rng = np.random.default_rng(cfg.seed)
    U, I, A, K, L = cfg.n_users, cfg.n_items, cfg.n_authors, cfg.n_topics, cfg.latent_dim  # noqa: E741
    topic_centers = _normalize(rng.normal(size=(K, L)))
    topic_popularity = rng.dirichlet(np.full(K, 2.0))

    author_topic = rng.choice(K, size=A, p=topic_popularity)
    author_style = rng.normal(size=(A, L)) * 0.45
    author_popularity = rng.pareto(1.6, size=A) + 1.0
    productivity = author_popularity**0.6
    item_author = rng.choice(A, size=I, p=productivity / productivity.sum()).astype(np.int64)
    off_topic = rng.random(I) < 0.12
    item_topic = np.where(off_topic, rng.integers(0, K, size=I), author_topic[item_author])
    item_latent = _normalize(
        topic_centers[item_topic] + author_style[item_author] + 0.35 * rng.normal(size=(I, L))
    ).astype(np.float32)
    item_quality = rng.lognormal(0.0, cfg.quality_sigma, size=I) * author_popularity[item_author] ** 0.5
    item_release = _release_weeks(cfg, rng)
    item_duration = np.clip(rng.lognormal(np.log(25.0), 0.75, size=I), 3, 255).astype(np.uint8)

    projection = rng.normal(size=(L, cfg.embedding_dim)) / np.sqrt(L)
    projection *= np.geomspace(1.0, 0.15, cfg.embedding_dim)[None, :]  # uneven spread, like real SVD output
    raw = item_latent @ projection
    raw += cfg.embedding_noise * raw.std() * rng.normal(size=raw.shape)
    item_embedding = _principal_axes(raw).astype(np.float16)

    age = np.clip(rng.normal(35, 12, size=U), 18, 70).astype(np.uint8)
    gender = (1 + (rng.random(U) < 0.5)).astype(np.uint8)
    geo_weights = 1.0 / np.arange(1, N_GEO + 1) ** 1.1
    geo = rng.choice(N_GEO, size=U, p=geo_weights / geo_weights.sum()).astype(np.uint8)
    age_bucket = np.digitize(age, [25, 32, 40, 50])
    segment = (gender - 1) * 5 + age_bucket
    logits = (
        np.log(topic_popularity)[None, :]
        + (rng.normal(size=(10, K)) * 1.3)[segment]
        + (rng.normal(size=(N_GEO, K)) * 0.5)[geo]
    )
    gumbel = logits - np.log(-np.log(rng.random((U, K))))
    user_topics = np.argsort(-gumbel, axis=1)[:, :3]
    n_user_topics = 1 + rng.binomial(2, 0.4, size=U)
    mix = rng.dirichlet(np.ones(3), size=U) * (np.arange(3)[None, :] < n_user_topics[:, None])
    mix /= mix.sum(axis=1, keepdims=True)
    user_theta = np.zeros((U, K), dtype=np.float32)
    np.add.at(user_theta, (np.repeat(np.arange(U), 3), user_topics.ravel()), mix.ravel())
    user_taste = _normalize(user_theta @ topic_centers + 0.45 * rng.normal(size=(U, L))).astype(np.float32)
    user_activity = cfg.views_per_user_week * rng.lognormal(
        -(cfg.activity_sigma**2) / 2, cfg.activity_sigma, size=U
    )
    user_active_prob = rng.beta(3.0, 1.2, size=U)
    late = rng.random(U) < cfg.late_joiner_share
    user_join_week = np.where(late, rng.integers(0, cfg.n_weeks, size=U), 0)
    user_propensity = rng.normal(0.0, cfg.propensity_sigma, size=U)

    # Favourite authors: mostly from the user's own topics, weighted by author popularity.
    n_fav = 1 + rng.poisson(2.0, size=U)
    fav_user = np.repeat(np.arange(U), n_fav)
    topical = rng.random(fav_user.shape[0]) < 0.75
    pick = rng.integers(0, 3, size=fav_user.shape[0]) % n_user_topics[fav_user]
    by_topic = GroupedSampler(author_topic, author_popularity, K)
    fav_author, ok = by_topic.sample(user_topics[fav_user, pick], rng)
    by_all = GroupedSampler(np.zeros(A, dtype=np.int64), author_popularity, 1)
    fallback, _ = by_all.sample(np.zeros(fav_user.shape[0], dtype=np.int64), rng)
    fav_author = np.where(topical & ok, fav_author, fallback)
    fan_keys = np.unique(fav_user.astype(np.int64) * A + fav_author)
    fan_user, fan_authors = np.divmod(fan_keys, A)
    fan_indptr = np.concatenate([[0], np.cumsum(np.bincount(fan_user, minlength=U))])

    return World(
        topic_centers=topic_centers,
        item_author=item_author,
        item_topic=item_topic,
        item_latent=item_latent,
        item_quality=item_quality,
        item_release=item_release,
        item_duration=item_duration,
        item_embedding=item_embedding,
        user_theta=user_theta,
        user_topics=user_topics,
        user_topic_cdf=np.cumsum(mix, axis=1),
        user_taste=user_taste,
        user_activity=user_activity,
        user_active_prob=user_active_prob,
        user_join_week=user_join_week,
        user_propensity=user_propensity,
        user_platform=rng.choice(N_PLATFORMS, size=U, p=_zipf(N_PLATFORMS, 1.3)).astype(np.uint8),
        user_agent=rng.choice(N_AGENTS, size=U, p=_zipf(N_AGENTS, 1.2)).astype(np.uint8),
        user_age=age,
        user_gender=gender,
        user_geo=geo,
        fan_indptr=fan_indptr,
        fan_authors=fan_authors,
        fan_keys=fan_keys,
        user_ids=_sparse_ids(rng, U),
        item_ids=_sparse_ids(rng, I),
        author_ids=_sparse_ids(rng, A),
    )


def _release_weeks(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Every clip's release week. Rolling: uniform over the weeks (from `1 - item_lifetime_weeks`, so some
    clips are live at week 0); stocked: the catalogue at week 0 and a share `stocked_new_share` released in
    the validation or the test week. `test_new_items` > 0 then makes the test week's count exact. The
    shape and the exact count draw from their own streams, so `rng` (the world's) advances the same way."""
    release = rng.integers(1 - cfg.item_lifetime_weeks, cfg.n_weeks, size=cfg.n_items)
    if cfg.shape == "stocked":
        release = _stocked_release(cfg)
    if cfg.test_new_items:
        _exact_test_week(release, cfg)
    return release


def _stocked_release(cfg: SyntheticConfig) -> np.ndarray:
    """Stocked release weeks: 0, or (a share `stocked_new_share`) the validation or the test week."""
    rng = np.random.default_rng([cfg.seed, 4])
    is_new = rng.random(cfg.n_items) < cfg.stocked_new_share
    return np.where(is_new, cfg.n_train_weeks + rng.integers(0, 2, size=cfg.n_items), 0)


def _exact_test_week(release: np.ndarray, cfg: SyntheticConfig) -> None:
    """Release exactly `test_new_items` clips (a seeded sample) in the test week, in place; the clips the
    schedule put there move to an earlier week (rolling: uniform, stocked: the week-0 catalogue)."""
    extra = np.random.default_rng([cfg.seed, 3])
    test_week = cfg.n_weeks - 1
    at_test = release == test_week
    if cfg.shape == "stocked":
        release[at_test] = 0
    else:
        release[at_test] = extra.integers(1 - cfg.item_lifetime_weeks, test_week, size=int(at_test.sum()))
    release[extra.choice(cfg.n_items, size=min(cfg.test_new_items, cfg.n_items), replace=False)] = test_week


def _dedupe_window(cfg: SyntheticConfig) -> int:
    """How many earlier weeks a (user, clip) pair may not repeat from: a pair may repeat only after its clip
    died, and stocked clips never die, so that shape keeps every week (memory: 5 bytes a view of them)."""
    return cfg.n_weeks if cfg.shape == "stocked" else cfg.item_lifetime_weeks - 1


def _zipf(n: int, a: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** a
    return w / w.sum()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _in_sorted(sorted_keys: np.ndarray, queries: np.ndarray, queries_sorted: bool = False) -> np.ndarray:
    """Membership of `queries` in `sorted_keys`. Binary searches with sorted queries walk memory in order,
    which is 2x (small key sets) to 50x (keys beyond the caches) faster than random-order queries."""
    if sorted_keys.size == 0:
        return np.zeros(queries.shape[0], dtype=bool)
    order = None if queries_sorted else np.argsort(queries)
    ordered = queries if order is None else queries[order]
    pos = np.minimum(np.searchsorted(sorted_keys, ordered), sorted_keys.size - 1)
    found = sorted_keys[pos] == ordered
    if order is None:
        return found
    out = np.empty_like(found)
    out[order] = found
    return out


def _is_fan(world: World, users: np.ndarray, authors: np.ndarray, n_authors: int) -> np.ndarray:
    return _in_sorted(world.fan_keys, users.astype(np.int64) * n_authors + authors)


def _fan_matrix(world: World, cfg: SyntheticConfig) -> sparse.csc_matrix:
    users = np.repeat(np.arange(cfg.n_users), np.diff(world.fan_indptr))
    ones = np.ones(users.shape[0], dtype=np.float32)
    return sparse.csc_matrix((ones, (users, world.fan_authors)), shape=(cfg.n_users, cfg.n_authors))


def _affinity(world: World, cfg: SyntheticConfig, users: np.ndarray, items: np.ndarray, fan: np.ndarray):
    """Deterministic part of the affinity for (user, item) pairs."""
    taste = np.empty(users.shape[0], dtype=np.float32)
    for start in range(0, users.shape[0], 1 << 20):  # cache-sized blocks instead of two huge gathers
        end = start + (1 << 20)
        taste[start:end] = np.einsum(
            "ij,ij->i", world.user_taste[users[start:end]], world.item_latent[items[start:end]]
        )
    return (
        cfg.taste_weight * taste
        + cfg.fan_weight * fan
        + cfg.quality_weight * np.log(world.item_quality[items])
        + world.user_propensity[users]
    )


def _calibrate_offsets(affinity: np.ndarray, fan: np.ndarray, cfg: SyntheticConfig) -> dict[str, float]:
    """Per-flag logit offsets so that mean per-view rates equal the real rates x rate_multiplier."""
    offsets = {}
    for flag, rate in REAL_RATES.items():
        target = min(rate * cfg.rate_multiplier, 0.5)
        if flag == "dislike":
            signal = -affinity
        else:
            signal = FLAG_SLOPE[flag] * affinity + FLAG_FAN_BONUS[flag] * fan
        lo, hi = -30.0, 10.0
        for _ in range(50):
            mid = (lo + hi) / 2
            if _sigmoid(mid + signal).mean() < target:
                lo = mid
            else:
                hi = mid
        offsets[flag] = (lo + hi) / 2
    return offsets


def _week_weight(world: World, cfg: SyntheticConfig, week: int) -> np.ndarray:
    """Exposure weight of every clip in `week`: quality, fading with age; zero when not live."""
    age = week - world.item_release
    fading = cfg.freshness_decay ** np.clip(age, 0, None)
    if cfg.shape == "stocked":  # the catalogue never fades; new clips fade from a boosted start
        new = world.item_release >= cfg.n_train_weeks
        return np.where(age >= 0, world.item_quality * np.where(new, cfg.new_clip_boost * fading, 1.0), 0.0)
    live = (age >= 0) & (age < cfg.item_lifetime_weeks)
    return np.where(live, world.item_quality * fading, 0.0)


def _week_samplers(world: World, cfg: SyntheticConfig, week: int) -> tuple[tuple[np.ndarray, ...], ...]:
    """Alias tables over the live clips of `week` for the three exposure channels: popularity, topic,
    favourite author."""
    weight = _week_weight(world, cfg, week)
    live_idx = np.flatnonzero(weight > 0)
    if live_idx.shape[0] == 0:
        raise ValueError(f"synthetic {cfg.name}: no clip is live in week {week}")
    w = weight[live_idx]
    return (
        _alias_sampler(np.zeros(len(live_idx), dtype=np.int64), w, 1, live_idx),
        _alias_sampler(world.item_topic[live_idx], w, cfg.n_topics, live_idx),
        _alias_sampler(world.item_author[live_idx], w, cfg.n_authors, live_idx),
    )


def _alias_sampler(
    group: np.ndarray, weight: np.ndarray, n_groups: int, live_idx: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Alias tables drawing a live clip by weight within a group: (packed table, start, end)."""
    order = np.argsort(group, kind="stable")
    end = np.cumsum(np.bincount(group, minlength=n_groups)).astype(np.int64)
    start = np.concatenate([[0], end[:-1]]).astype(np.int64)
    prob, alias = kernels.build_alias(start, end, weight[order].astype(np.float64))
    return kernels.pack_alias(prob, alias, live_idx[order].astype(np.int64)), start, end


def _week_view_counts(world: World, cfg: SyntheticConfig, week: int) -> np.ndarray:
    """Views drawn (before de-duplication) by every user in `week`: 0 when inactive or not yet joined."""
    rng = np.random.default_rng([cfg.seed, 1, week])
    active = (rng.random(cfg.n_users) < world.user_active_prob) & (world.user_join_week <= week)
    return np.where(active, rng.poisson(world.user_activity * rng.lognormal(0, 0.15)), 0).astype(np.int64)


@dataclass
class WeekViews:
    """De-duplicated views of one week in CSR form (users -> clips, channel), users in index order."""

    indptr: np.ndarray  # (n_users + 1,) int64
    items: np.ndarray  # int32 clip indices
    channel: np.ndarray  # int8: 0 popularity, 1 topic, 2 favourite author


def _typed_list(arrays: list[np.ndarray], dtype) -> nb.typed.List:
    out = nb.typed.List.empty_list(nb.types.Array(nb.from_dtype(np.dtype(dtype)), 1, "C"))
    for array in arrays:
        out.append(np.ascontiguousarray(array, dtype=dtype))
    return out


def _sample_views(
    world: World,
    cfg: SyntheticConfig,
    week: int,
    users: np.ndarray,
    n_views: np.ndarray,
    samplers: tuple,
    recent: list[WeekViews],
) -> WeekViews:
    """Draw `n_views` views for each of `users` (sorted) through the three exposure channels and keep the
    first of each (user, clip) pair not seen in `recent` weeks (whose CSR covers every user)."""
    offsets = np.zeros(users.shape[0], dtype=np.int64)
    np.cumsum(n_views[:-1], out=offsets[1:])
    total = int(n_views.sum())
    items = np.empty(total, dtype=np.int32)
    channel = np.empty(total, dtype=np.int8)
    kept = np.empty(users.shape[0], dtype=np.int64)
    cdf = np.cumsum(np.asarray(cfg.channel_probs, dtype=np.float64))
    kernels.sample_views(
        users.astype(np.int64),
        offsets,
        n_views.astype(np.int64),
        cfg.seed,
        week,
        cdf,
        world.user_topics.astype(np.int64),
        world.user_topic_cdf,
        world.fan_indptr.astype(np.int64),
        world.fan_authors.astype(np.int64),
        *samplers,
        _typed_list([w.indptr for w in recent], np.int64),
        _typed_list([w.items for w in recent], np.int32),
        cfg.n_items,
        2 * nb.get_num_threads(),
        items,
        channel,
        kept,
    )
    indptr = kernels.compact(offsets, kept, items, channel)
    n = int(indptr[-1])
    return WeekViews(indptr, items[:n].copy(), channel[:n].copy())


SLOPE_STEP = 0.2  # every flag's slope is a multiple of this (one exp per view serves all flags)
PLACE_BASE, PLACE_SPAN, PLACE_POWER = (0, 6, 16), (6, 10, 8), 0.35  # per channel: pop, topic, author


def _engagement_params(cfg: SyntheticConfig, offsets: dict[str, float]) -> tuple[np.ndarray, ...]:
    """The flag and place models as the arrays `kernels.engagement` takes (flags in FLAG_COLUMNS order)."""
    slope = {**FLAG_SLOPE, "dislike": -1.0}
    bonus = {**FLAG_FAN_BONUS, "dislike": 0.0}
    steps = np.array([round(slope[f] / SLOPE_STEP) for f in FLAG_COLUMNS], dtype=np.int64)
    if not np.allclose(steps * SLOPE_STEP, [slope[f] for f in FLAG_COLUMNS]):
        raise ValueError(f"FLAG_SLOPE {slope}: every slope must be a multiple of {SLOPE_STEP}")
    scale = np.array(
        [[np.exp(-offsets[f] - bonus[f] * fan) for f in FLAG_COLUMNS] for fan in (0, 1)], dtype=np.float64
    )
    # place offset j (0..span-1) with P(offset >= j) = 1 - (j/span)^POWER: the count of thresholds passed
    thresholds = np.full((3, max(PLACE_SPAN) - 1), 2.0)
    for c, span in enumerate(PLACE_SPAN):
        thresholds[c, : span - 1] = (np.arange(1, span) / span) ** PLACE_POWER
    weights = np.array([cfg.taste_weight, cfg.fan_weight, cfg.affinity_noise], dtype=np.float64)
    return weights, scale, steps, SLOPE_STEP, thresholds, np.array(PLACE_BASE, dtype=np.uint8)


def _calibration_offsets(
    world: World, cfg: SyntheticConfig, n_views: np.ndarray, samplers: tuple
) -> dict[str, float]:
    """Flag offsets calibrated on up to 200,000 week-0 views of a random set of users (the very views
    those users get in week 0: their streams are keyed by user)."""
    rng = np.random.default_rng([cfg.seed, 2])
    n_users = min(cfg.n_users, int(np.ceil(400_000 / max(cfg.views_per_user_week, 1.0))))
    users = np.sort(rng.choice(cfg.n_users, size=n_users, replace=False))
    views = _sample_views(world, cfg, 0, users, n_views[users], samplers, [])
    row_users = np.repeat(users, np.diff(views.indptr))
    sample = rng.choice(row_users.shape[0], size=min(200_000, row_users.shape[0]), replace=False)
    su, si = row_users[sample], views.items[sample].astype(np.int64)
    fan = _is_fan(world, su, world.item_author[si], cfg.n_authors).astype(np.float64)
    noisy = _affinity(world, cfg, su, si, fan) + rng.normal(0.0, cfg.affinity_noise, size=sample.shape[0])
    return _calibrate_offsets(noisy, fan, cfg)


def _chunks(indptr: np.ndarray, chunk_rows: int) -> list[tuple[int, int]]:
    """User ranges [lo, hi) made of whole BLOCK_USERS blocks, each holding about `chunk_rows` rows."""
    n_users = indptr.shape[0] - 1
    bounds = np.arange(0, n_users + BLOCK_USERS, BLOCK_USERS).clip(max=n_users)
    rows = indptr[bounds]
    ranges, lo = [], 0
    while lo < n_users:
        start = int(np.searchsorted(bounds, lo))
        stop = int(np.searchsorted(rows, rows[start] + chunk_rows, side="left"))
        hi = int(bounds[min(max(stop, start + 1), bounds.shape[0] - 1)])
        ranges.append((lo, hi))
        lo = hi
    return ranges


def _engage_chunk(
    world: World,
    cfg: SyntheticConfig,
    week: int,
    views: WeekViews,
    lo: int,
    hi: int,
    params: tuple,
    item_record: np.ndarray,
) -> pl.DataFrame:
    """The interactions of users [lo, hi) in the VK-LSVD schema (rows shuffled within user blocks);
    `item_record` from `_item_record`."""
    n = int(views.indptr[hi] - views.indptr[lo])
    columns = {name: np.empty(n, dtype=np.uint32) for name in ("user_id", "item_id")}
    columns |= {name: np.empty(n, dtype=np.uint8) for name in ("place", "platform", "agent", "timespent")}
    flags = np.empty((len(FLAG_COLUMNS), n), dtype=np.bool_)
    kernels.engagement(
        views.indptr,
        views.items,
        views.channel,
        lo,
        hi,
        BLOCK_USERS,
        cfg.seed,
        week,
        *params,
        world.user_taste,
        item_record,
        world.item_author,
        world.user_propensity,
        world.user_platform,
        world.user_agent,
        world.fan_indptr.astype(np.int64),
        world.fan_authors.astype(np.int64),
        N_PLATFORMS,
        N_AGENTS,
        world.user_ids,
        world.item_ids,
        *(columns[name] for name in ("user_id", "item_id", "place", "platform", "agent", "timespent")),
        flags,
    )
    columns |= {flag: flags[i] for i, flag in enumerate(FLAG_COLUMNS)}
    return pl.DataFrame(
        {name: pl.Series(name, columns[name], dtype=dt) for name, dt in INTERACTIONS_SCHEMA.items()}
    )


def _item_record(world: World, cfg: SyntheticConfig) -> np.ndarray:
    """Per clip, what a view's engagement reads, packed in one float32 row: latent vector, quality term,
    duration."""
    quality = cfg.quality_weight * np.log(world.item_quality)
    return np.ascontiguousarray(
        np.column_stack([world.item_latent, quality, world.item_duration]), dtype=np.float32
    )


def _write_week(
    world: World,
    cfg: SyntheticConfig,
    week: int,
    views: WeekViews,
    params: tuple,
    path: Path,
    chunk_rows: int,
    stats: dict,
) -> None:
    """Engagement and parquet writing of one week, streamed chunk by chunk of users through polars'
    parquet sink (so the week never sits in memory as a frame); adds its rows and flags to `stats`."""

    record = _item_record(world, cfg)

    def chunks(with_columns, predicate, n_rows, batch_size):
        for lo, hi in _chunks(views.indptr, chunk_rows):
            frame = _engage_chunk(world, cfg, week, views, lo, hi, params, record)
            for flag in REAL_RATES:
                stats["flag_counts"][flag] += int(frame[flag].sum())
            yield frame

    with atomic_path(path) as tmp:
        register_io_source(chunks, schema=INTERACTIONS_SCHEMA).sink_parquet(
            tmp, compression="zstd", compression_level=1, statistics=False, row_group_size=1 << 20
        )
    stats["rows"] += int(views.indptr[-1])


def _ranks_by_count(counts: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """1 = highest count; ties by id."""
    order = np.lexsort((ids, -counts))
    rank = np.empty(counts.shape[0], dtype=np.uint32)
    rank[order] = np.arange(1, counts.shape[0] + 1, dtype=np.uint32)
    return rank


class WeekOracle:
    """Expected positives of every user for new clips of one week: P(view) x P(any positive | view).

    This is the generator's own model (exposure through the three channels, then the flag model with the
    affinity noise integrated by the probit approximation), so ranking by it is the best any method can do
    in expectation. Week-level quantities are computed once; `scores` is float32 and vectorized over users
    for a batch of clips (about 10 x batch x n_users x 4 bytes of temporaries)."""

    def __init__(self, world: World, cfg: SyntheticConfig, week: int, offsets: dict[str, float]):
        self.world, self.cfg, self.offsets = world, cfg, offsets
        weight = _week_weight(world, cfg, week)
        self.weight = weight
        self.live_total = max(weight.sum(), 1e-12)
        self.topic_total = np.bincount(world.item_topic, weights=weight, minlength=cfg.n_topics)
        self.author_total = np.bincount(world.item_author, weights=weight, minlength=cfg.n_authors)
        views = world.user_activity * world.user_active_prob * (world.user_join_week <= week)
        self.expected_views = views.astype(np.float32)
        self.inv_fan_degree = (1.0 / np.maximum(np.diff(world.fan_indptr), 1)).astype(np.float32)
        self.fans = _fan_matrix(world, cfg)
        self.theta_t = np.ascontiguousarray(world.user_theta.T)  # (K, U)
        self.taste_t = np.ascontiguousarray(world.user_taste.T)  # (L, U)
        self.propensity = world.user_propensity.astype(np.float32)

    def scores(self, items: np.ndarray) -> np.ndarray:
        world, cfg = self.world, self.cfg
        p_pop, p_topic, p_fan = cfg.channel_probs
        w_i = self.weight[items]
        topic_i, author_i = world.item_topic[items], world.item_author[items]
        fan = self.fans[:, author_i].toarray().T  # (B, U) float32
        topic_share = (p_topic * w_i / np.maximum(self.topic_total[topic_i], 1e-12)).astype(np.float32)
        rate = self.theta_t[topic_i] * topic_share[:, None]
        rate += (p_pop * w_i / self.live_total)[:, None].astype(np.float32)
        rate += (
            fan
            * self.inv_fan_degree[None, :]
            * (p_fan * w_i / np.maximum(self.author_total[author_i], 1e-12)).astype(np.float32)[:, None]
        )
        p_view = -np.expm1(-rate * self.expected_views[None, :])
        affinity = cfg.taste_weight * (world.item_latent[items] @ self.taste_t)
        affinity += cfg.fan_weight * fan
        affinity += (cfg.quality_weight * np.log(world.item_quality[items])).astype(np.float32)[:, None]
        affinity += self.propensity[None, :]
        p_none = np.ones_like(affinity)
        for flag, slope in FLAG_SLOPE.items():
            scale = 1.0 / np.sqrt(1.0 + np.pi * (slope * cfg.affinity_noise) ** 2 / 8.0)
            logit = (self.offsets[flag] + slope * affinity + FLAG_FAN_BONUS[flag] * fan) * np.float32(scale)
            p_none *= 1.0 - expit(logit)
        return p_view * (1.0 - p_none)


AFFINITY_GRID = (-40.0, 40.0, 1e-3)  # where the oracle tabulates P(any positive | affinity): lo, hi, step


def _any_positive_table(cfg: SyntheticConfig, offsets: dict[str, float]) -> np.ndarray:
    """P(any positive flag | view) on AFFINITY_GRID for fan = 0 and 1, the affinity noise integrated by the
    probit approximation (the model of `WeekOracle.scores`)."""
    lo, hi, step = AFFINITY_GRID
    affinity = np.arange(lo, hi + step / 2, step)
    table = np.empty((2, affinity.shape[0]))
    for fan in (0, 1):
        p_none = np.ones_like(affinity)
        for flag, slope in FLAG_SLOPE.items():
            scale = 1.0 / np.sqrt(1.0 + np.pi * (slope * cfg.affinity_noise) ** 2 / 8.0)
            p_none *= 1.0 - expit((offsets[flag] + slope * affinity + FLAG_FAN_BONUS[flag] * fan) * scale)
        table[fan] = 1.0 - p_none
    return table


def oracle_top(
    world: World, cfg: SyntheticConfig, week: int, items: np.ndarray, offsets: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Top `oracle_depth` users (indices, best first) and their expected positives for clips `items` of
    `week`: `WeekOracle.scores`' model in one numba pass per clip with bound pruning (memory: the output
    plus a users-sized mark per thread)."""
    depth = min(cfg.oracle_depth, cfg.n_users)
    if np.any(np.asarray(cfg.channel_probs) < 0) or cfg.taste_weight < 0:
        raise ValueError("oracle_top's bound needs non-negative channel probabilities and taste weight")
    weight = _week_weight(world, cfg, week)
    fan_user, fan_author = np.divmod(world.fan_keys, cfg.n_authors)
    by_author = np.argsort(fan_author, kind="stable")
    fans_indptr = np.concatenate([[0], np.cumsum(np.bincount(fan_author, minlength=cfg.n_authors))])
    views = world.user_activity * world.user_active_prob * (world.user_join_week <= week)
    lo, _, step = AFFINITY_GRID
    users = np.zeros((items.shape[0], depth), dtype=np.int64)
    scores = np.zeros((items.shape[0], depth), dtype=np.float64)
    kernels.oracle_top(
        weight[items],
        world.item_topic[items].astype(np.int64),
        world.item_author[items].astype(np.int64),
        np.ascontiguousarray(world.item_latent[items], dtype=np.float64),
        cfg.quality_weight * np.log(world.item_quality[items]),
        np.bincount(world.item_topic, weights=weight, minlength=cfg.n_topics),
        np.bincount(world.item_author, weights=weight, minlength=cfg.n_authors),
        max(weight.sum(), 1e-12),
        np.asarray(cfg.channel_probs, dtype=np.float64),
        np.ascontiguousarray(world.user_theta.T, dtype=np.float64),
        world.user_taste.astype(np.float64),
        views.astype(np.float64),
        1.0 / np.maximum(np.diff(world.fan_indptr), 1).astype(np.float64),
        world.user_propensity.astype(np.float64),
        fans_indptr.astype(np.int64),
        fan_user[by_author].astype(np.int64),
        _any_positive_table(cfg, offsets),
        lo,
        1.0 / step,
        cfg.taste_weight,
        cfg.fan_weight,
        depth,
        users,
        scores,
    )
    return users, scores


def _write_oracle(world, cfg, week, items, offsets, path: Path) -> None:
    """Top `oracle_depth` users per clip by expected positives (`oracle_top`)."""
    top, score = oracle_top(world, cfg, week, items, offsets)
    frame = pl.DataFrame(
        {
            "item_id": pl.Series(world.item_ids[items], dtype=pl.UInt32),
            "user_id": pl.Series(world.user_ids[top]).cast(pl.List(pl.UInt32)),
            "score": pl.Series(score.astype(np.float32)).cast(pl.List(pl.Float32)),
        }
    )
    write_parquet(frame, path, compression="zstd", statistics=True)


def generate(
    out_dir: Path,
    cfg: SyntheticConfig,
    subsample: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    weeks: int | None = None,
) -> DatasetLayout:
    """Write a synthetic dataset in the VK-LSVD layout under `out_dir` and its hidden truth beside it
    (metadata padded to the real global sizes when `cfg.global_metadata`).

    Streams week by week. Memory: the world state, the de-duplicated (clip, channel) of the current week
    and of the last `item_lifetime_weeks - 1` weeks (every earlier week on the stocked shape; 5 bytes a
    view; needed so no (user, clip) pair repeats), the current week's draws before de-duplication (5 bytes
    a draw), one chunk of `chunk_rows` rows being written (~30 bytes a row) and the oracle's output.
    `chunk_rows` changes row groups only, never the data. `weeks`: write only the first `weeks` weeks (the
    same files as the whole preset's; the metadata ranks then count only those weeks), to measure a large
    preset without making all of it.
    `cfg.warm_targets` > 0 also writes targets/mixed_<split>.parquet (`data/targets.py`) once the validation
    week is written."""
    layout = DatasetLayout(Path(out_dir), subsample)
    if layout.interactions_root.exists() or layout.metadata_dir.exists():
        if not overwrite:
            raise FileExistsError(f"{out_dir}: dataset already exists (pass overwrite=True / --overwrite)")
        for folder in (layout.interactions_root, layout.metadata_dir, layout.truth_dir):
            shutil.rmtree(folder, ignore_errors=True)
    world = build_world(cfg)
    user_train_counts = np.zeros(cfg.n_users, dtype=np.int64)
    item_train_counts = np.zeros(cfg.n_items, dtype=np.int64)
    seen_before = np.zeros(cfg.n_items, dtype=bool)
    recent: list[WeekViews] = []
    offsets: dict[str, float] | None = None
    stats = {"rows": 0, "flag_counts": dict.fromkeys(REAL_RATES, 0)}
    all_users = np.arange(cfg.n_users, dtype=np.int64)
    n_weeks = cfg.n_weeks if weeks is None else min(weeks, cfg.n_weeks)
    window = _dedupe_window(cfg)
    for week in progress_report.iterate(range(n_weeks), f"synthetic {cfg.name}", "weeks", progress):
        samplers = _week_samplers(world, cfg, week)
        n_views = _week_view_counts(world, cfg, week)
        if offsets is None:
            offsets = _calibration_offsets(world, cfg, n_views, samplers)
        views = _sample_views(world, cfg, week, all_users, n_views, samplers, recent)
        recent = [*recent, views][-window:] if window > 0 else []
        split = "train" if week < cfg.n_train_weeks else "validation" if week == cfg.n_train_weeks else "test"
        path = layout.split_dir(split) / f"week_{week:02d}.parquet"
        _write_week(world, cfg, week, views, _engagement_params(cfg, offsets), path, chunk_rows, stats)
        viewed = np.zeros(cfg.n_items, dtype=bool)
        viewed[views.items] = True
        if split == "train":
            user_train_counts += np.diff(views.indptr)
            item_train_counts += np.bincount(views.items, minlength=cfg.n_items)
        elif cfg.oracle:
            new_items = np.flatnonzero(viewed & ~seen_before)
            _write_oracle(
                world, cfg, week, new_items, offsets, layout.truth_dir / f"oracle_week_{week:02d}.parquet"
            )
        seen_before |= viewed
        del views

    users_meta = pl.DataFrame(
        {
            "user_id": world.user_ids,
            "age": world.user_age,
            "gender": world.user_gender,
            "geo": world.user_geo,
            "train_interactions_rank": _ranks_by_count(user_train_counts, world.user_ids),
        }
    ).cast(USERS_SCHEMA)
    items_meta = pl.DataFrame(
        {
            "item_id": world.item_ids,
            "author_id": world.author_ids[world.item_author],
            "duration": world.item_duration,
            "train_interactions_rank": _ranks_by_count(item_train_counts, world.item_ids),
        }
    ).cast(ITEMS_SCHEMA)
    write_parquet(users_meta, layout.users_metadata)
    write_parquet(items_meta, layout.items_metadata)
    with atomic_path(layout.item_embeddings) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, item_id=world.item_ids, embedding=world.item_embedding)
    rates = {flag: count / max(stats["rows"], 1) for flag, count in stats["flag_counts"].items()}
    summary = {
        "config": asdict(cfg),
        "weeks_written": n_weeks,
        "rows": stats["rows"],
        "rates": rates,
        "flag_offsets": offsets,
    }
    if cfg.warm_targets > 0 and n_weeks > cfg.n_train_weeks:  # needs the validation week
        write_mixed_targets(layout, cfg.warm_targets, cfg.seed)
    layout.truth_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(layout.truth_dir / "generator.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    if cfg.global_metadata:
        pad_metadata(layout, max(REAL_USERS, cfg.n_users), max(REAL_ITEMS, cfg.n_items), cfg.seed, progress)
    return layout
