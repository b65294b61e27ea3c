"""A synthetic VK-LSVD: the real layout, file names and dtypes, with a hidden ground truth for an oracle.

The generative story (all vectorized with numpy, written week by week so memory stays bounded):

* Topics live in a small latent space. Authors have a topic, a personal style and a heavy-tailed popularity;
  clips inherit their author's topic/style plus noise, get a heavy-tailed quality, a release week and a
  duration. The 64-d float16 content embedding is a noisy linear image of the clip's latent vector, rotated
  onto its principal axes so that dimensions are ordered by variance (like the real truncated-SVD output).
* Users have demographics (age, gender, geo) that shift their topic preferences, a latent taste mixed from
  1-3 topics, a heavy-tailed activity level, an engagement propensity, a join week, and a few favourite
  authors (their fan bases).
* Each week a user's views come from three exposure channels: global popularity, their topics, their
  favourite authors. Clips are live for a few weeks after release and fade. No (user, clip) pair repeats.
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

import numpy as np
import polars as pl
from scipy import sparse
from scipy.special import expit

from audience import progress as progress_report
from audience.config import SyntheticConfig
from audience.data.layout import DatasetLayout
from audience.data.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, USERS_SCHEMA
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
    item_quality = rng.lognormal(0.0, 0.9, size=I) * author_popularity[item_author] ** 0.5
    item_release = rng.integers(1 - cfg.item_lifetime_weeks, cfg.n_weeks, size=I)  # some live at week 0
    if cfg.shape == "stocked":  # live from week 0, except the new ones of the validation and test weeks
        is_new = rng.random(I) < cfg.stocked_new_share
        item_release = np.where(is_new, cfg.n_train_weeks + rng.integers(0, 2, size=I), 0)
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


def _week_samplers(world: World, cfg: SyntheticConfig, week: int):
    """The live clips of `week` and samplers over them for the three exposure channels."""
    weight = _week_weight(world, cfg, week)
    live_idx = np.flatnonzero(weight > 0)
    w = weight[live_idx]
    samplers = (
        GroupedSampler(np.zeros(len(live_idx), dtype=np.int64), w, 1),
        GroupedSampler(world.item_topic[live_idx], w, cfg.n_topics),
        GroupedSampler(world.item_author[live_idx], w, cfg.n_authors),
    )
    return live_idx, samplers


def _simulate_week(world: World, cfg: SyntheticConfig, week: int, rng: np.random.Generator):
    """Sample this week's (user, item, channel) views before de-duplication."""
    live_idx, (by_pop, by_topic, by_author) = _week_samplers(world, cfg, week)
    U = cfg.n_users
    active = (rng.random(U) < world.user_active_prob) & (world.user_join_week <= week)
    n_views = np.where(active, rng.poisson(world.user_activity * rng.lognormal(0, 0.15)), 0)
    users = np.repeat(np.arange(U), n_views)
    channel = rng.choice(3, size=users.shape[0], p=np.asarray(cfg.channel_probs))
    local = np.empty(users.shape[0], dtype=np.int64)

    pop = channel == 0
    local[pop], _ = by_pop.sample(np.zeros(int(pop.sum()), dtype=np.int64), rng)

    top = channel == 1
    tu = users[top]
    slot = (rng.random(tu.shape[0])[:, None] > world.user_topic_cdf[tu][:, :2]).sum(axis=1)
    picked, ok = by_topic.sample(world.user_topics[tu, slot], rng)
    fill, _ = by_pop.sample(np.zeros(tu.shape[0], dtype=np.int64), rng)
    local[top] = np.where(ok, picked, fill)
    channel[np.flatnonzero(top)[~ok]] = 0

    fan = channel == 2
    fu = users[fan]
    deg = world.fan_indptr[fu + 1] - world.fan_indptr[fu]
    author = world.fan_authors[world.fan_indptr[fu] + (rng.random(fu.shape[0]) * deg).astype(np.int64)]
    picked, ok = by_author.sample(author, rng)
    fill, _ = by_pop.sample(np.zeros(fu.shape[0], dtype=np.int64), rng)
    local[fan] = np.where(ok, picked, fill)
    channel[np.flatnonzero(fan)[~ok]] = 0
    return users, live_idx[local], channel


def _dedupe(users, items, channel, n_items: int, recent_keys: np.ndarray, rng: np.random.Generator):
    """Drop pairs repeated within the week or seen in recent weeks; shuffle into a random time order."""
    keys, first = np.unique(users.astype(np.int64) * n_items + items, return_index=True)  # sorted keys
    fresh = ~_in_sorted(recent_keys, keys, queries_sorted=True)
    keys, first = keys[fresh], first[fresh]
    keep = first[rng.permutation(first.shape[0])]
    return users[keep], items[keep], channel[keep], keys


def _engagement(world, cfg, users, items, channel, offsets, rng) -> dict[str, np.ndarray]:
    """Flags, timespent and context columns for de-duplicated views (internal indices)."""
    n = users.shape[0]
    fan = _is_fan(world, users, world.item_author[items], cfg.n_authors).astype(np.float64)
    affinity = _affinity(world, cfg, users, items, fan) + rng.normal(0.0, cfg.affinity_noise, size=n)
    cols: dict[str, np.ndarray] = {}
    for flag in ("like", "dislike", "share", "bookmark", "click_on_author", "open_comments"):
        if flag == "dislike":
            logit = offsets[flag] - affinity
        else:
            logit = offsets[flag] + FLAG_SLOPE[flag] * affinity + FLAG_FAN_BONUS[flag] * fan
        cols[flag] = rng.random(n) < _sigmoid(logit)
    watch_share = np.exp(rng.normal(-0.7 + 0.35 * affinity, 0.6))
    cols["timespent"] = np.clip(world.item_duration[items] * watch_share, 0, 255).astype(np.uint8)
    # place: the surface a view came from; popularity feed, topical feed and author pages use different ones
    place_base = np.array([0, 6, 16])[channel]
    place_span = np.array([6, 10, 8])[channel]
    cols["place"] = (place_base + (rng.power(0.35, n) * place_span).astype(np.int64)).astype(np.uint8)
    switch = rng.random(n) < 0.1
    cols["platform"] = np.where(switch, rng.integers(0, N_PLATFORMS, n), world.user_platform[users]).astype(
        np.uint8
    )
    cols["agent"] = np.where(switch, rng.integers(0, N_AGENTS, n), world.user_agent[users]).astype(np.uint8)
    return cols


def _interactions_frame(world: World, users, items, cols) -> pl.DataFrame:
    data = {"user_id": world.user_ids[users], "item_id": world.item_ids[items], **cols}
    return pl.DataFrame(
        {name: pl.Series(name, data[name], dtype=dt) for name, dt in INTERACTIONS_SCHEMA.items()}
    )


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


def _write_oracle(world, cfg, week, items, offsets, path: Path, batch: int = 64) -> None:
    """Top `oracle_depth` users per clip by expected positives, batched over clips."""
    depth = min(cfg.oracle_depth, cfg.n_users)
    oracle = WeekOracle(world, cfg, week, offsets)
    tops, scores = [], []
    for start in range(0, items.shape[0], batch):  # batches of clips, each vectorized over all users
        s = oracle.scores(items[start : start + batch])
        part = np.argpartition(-s, depth - 1, axis=1)[:, :depth]
        ps = np.take_along_axis(s, part, axis=1)
        order = np.argsort(-ps, axis=1, kind="stable")
        tops.append(np.take_along_axis(part, order, axis=1))
        scores.append(np.take_along_axis(ps, order, axis=1))
    top = np.concatenate(tops) if tops else np.zeros((0, depth), dtype=np.int64)
    score = np.concatenate(scores) if scores else np.zeros((0, depth))
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
) -> DatasetLayout:
    """Write a synthetic dataset in the VK-LSVD layout under `out_dir` and its hidden truth beside it.

    Streams week by week: memory is the world state plus one week of views plus the pair keys of the
    last `item_lifetime_weeks` weeks (needed so no (user, clip) pair repeats)."""
    layout = DatasetLayout(Path(out_dir), subsample)
    if layout.interactions_root.exists() or layout.metadata_dir.exists():
        if not overwrite:
            raise FileExistsError(f"{out_dir}: dataset already exists (pass overwrite=True / --overwrite)")
        for folder in (layout.interactions_root, layout.metadata_dir, layout.truth_dir):
            shutil.rmtree(folder, ignore_errors=True)
    world = build_world(cfg)
    rng = np.random.default_rng([cfg.seed, 1])
    user_train_counts = np.zeros(cfg.n_users, dtype=np.int64)
    item_train_counts = np.zeros(cfg.n_items, dtype=np.int64)
    seen_before = np.zeros(cfg.n_items, dtype=bool)
    recent: list[np.ndarray] = []
    offsets: dict[str, float] | None = None
    stats = {"rows": 0, "flag_counts": dict.fromkeys(REAL_RATES, 0)}
    for week in progress_report.iterate(range(cfg.n_weeks), f"synthetic {cfg.name}", "weeks", progress):
        users, items, channel = _simulate_week(world, cfg, week, rng)
        # weeks' keys are disjoint (each week drops pairs seen before), so a sort is their sorted union
        recent_keys = np.sort(np.concatenate(recent)) if recent else np.zeros(0, dtype=np.int64)
        users, items, channel, keys = _dedupe(users, items, channel, cfg.n_items, recent_keys, rng)
        # a pair may repeat only after its clip died: stocked clips never die, so keep every week's keys
        window = cfg.n_weeks if cfg.shape == "stocked" else cfg.item_lifetime_weeks - 1
        recent = [*recent, keys][-window:] if window > 0 else []
        if offsets is None:
            fan = _is_fan(world, users, world.item_author[items], cfg.n_authors).astype(np.float64)
            sample = rng.choice(users.shape[0], size=min(200_000, users.shape[0]), replace=False)
            noisy = _affinity(world, cfg, users[sample], items[sample], fan[sample]) + rng.normal(
                0.0, cfg.affinity_noise, size=sample.shape[0]
            )
            offsets = _calibrate_offsets(noisy, fan[sample], cfg)
        cols = _engagement(world, cfg, users, items, channel, offsets, rng)
        if week < cfg.n_train_weeks:
            split = "train"
            user_train_counts += np.bincount(users, minlength=cfg.n_users)
            item_train_counts += np.bincount(items, minlength=cfg.n_items)
        else:
            split = "validation" if week == cfg.n_train_weeks else "test"
            new_items = np.unique(items[~seen_before[items]])
            if cfg.oracle:
                _write_oracle(
                    world, cfg, week, new_items, offsets, layout.truth_dir / f"oracle_week_{week:02d}.parquet"
                )
        seen_before[items] = True
        write_parquet(
            _interactions_frame(world, users, items, cols),
            layout.split_dir(split) / f"week_{week:02d}.parquet",
        )
        stats["rows"] += int(users.shape[0])
        for flag in REAL_RATES:
            stats["flag_counts"][flag] += int(cols[flag].sum())

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
    summary = {"config": asdict(cfg), "rows": stats["rows"], "rates": rates, "flag_offsets": offsets}
    if cfg.warm_targets > 0:
        from audience.data.targets import write_mixed_targets

        write_mixed_targets(layout, cfg.warm_targets, cfg.seed)
    layout.truth_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(layout.truth_dir / "generator.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return layout
