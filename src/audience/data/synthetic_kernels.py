"""numba kernels of the synthetic generator: per-user view sampling with de-duplication, and engagement.

Every random number comes from a counter-based stream (splitmix64) keyed by (seed, week, user) or
(seed, week, block), never from a shared generator state, so the output does not depend on how users are
split into chunks or threads: chunked writing equals unchunked, and a parallel run equals a serial one.

Limits: streams are splitmix64 (statistically fine for simulation, not cryptographic); one stream draws
fewer than 2^32 numbers. Users are processed in `n_parts` contiguous parts, each with its own
n_items-sized int32 mark array for the de-duplication (4 bytes x n_items per part).
"""

from __future__ import annotations

import numba as nb
import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
TO_UNIT = 1.0 / 9007199254740992.0  # 2^-53
# stream purposes: one independent stream per (purpose, week, index)
SAMPLE, ENGAGE, SHUFFLE = 1, 2, 3


@nb.njit(inline="always", cache=True)
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


@nb.njit(inline="always", cache=True)
def stream(seed, purpose, week, index):
    """The starting state of the stream keyed by (seed, purpose, week, index)."""
    z = _mix(np.uint64(seed) * GOLDEN + np.uint64(purpose))
    z = _mix(z ^ (np.uint64(week) * MIX1 + GOLDEN))
    return _mix(z ^ (np.uint64(index) * MIX2 + np.uint64(1)))


@nb.njit(inline="always", cache=True)
def uniform(state):
    """(next state, a float64 uniform on [0, 1))."""
    state = state + GOLDEN
    return state, (_mix(state) >> np.uint64(11)) * TO_UNIT


@nb.njit(inline="always", cache=True)
def normal_pair(state):
    """(next state, two independent standard normals) by Box-Muller."""
    state, a = uniform(state)
    state, b = uniform(state)
    r = np.sqrt(-2.0 * np.log(1.0 - a))
    return state, r * np.cos(2.0 * np.pi * b), r * np.sin(2.0 * np.pi * b)


@nb.njit(inline="always", cache=True)
def _draw(cumsum, elements, low, total, start, end, group, v):
    """The element of `group` whose cumulative-weight interval holds low + v * total (binary search)."""
    r = low[group] + v * total[group]
    lo, hi = start[group], end[group]
    while lo < hi:
        mid = (lo + hi) >> 1
        if cumsum[mid] > r:
            hi = mid
        else:
            lo = mid + 1
    return elements[min(lo, end[group] - 1)]


@nb.njit(parallel=True, cache=True)
def sample_views(
    users,
    offsets,
    n_views,
    seed,
    week,
    channel_cdf,
    user_topics,
    user_topic_cdf,
    fan_indptr,
    fan_authors,
    pop,
    topic,
    author,
    recent_indptr,
    recent_items,
    n_items,
    n_parts,
    out_items,
    out_channel,
    kept,
):
    """Draw n_views[i] views for users[i] into out_*[offsets[i]:], keeping the first draw of each clip that
    the user did not view in the recent weeks; kept[i] = how many were kept (a prefix of the slice).

    pop/topic/author: (cumsum, elements, low, total, start, end) of the week's grouped samplers, elements
    already mapped to clip indices. recent_indptr/items: typed lists, one CSR (users -> clips) per week."""
    n = users.shape[0]
    step = (n + n_parts - 1) // n_parts
    for part in nb.prange(n_parts):
        mark = np.zeros(n_items, dtype=np.int32)
        for i in range(part * step, min(n, (part + 1) * step)):
            u = users[i]
            stamp = np.int32(u + 1)
            for k in range(len(recent_indptr)):
                indptr, items = recent_indptr[k], recent_items[k]
                for j in range(indptr[u], indptr[u + 1]):
                    mark[items[j]] = stamp
            s = stream(seed, SAMPLE, week, u)
            pos = offsets[i]
            deg = fan_indptr[u + 1] - fan_indptr[u]
            for _ in range(n_views[i]):
                s, c = uniform(s)
                s, v = uniform(s)
                channel = 0 if c < channel_cdf[0] else (1 if c < channel_cdf[1] else 2)
                item = -1
                if channel == 1:
                    s, w = uniform(s)
                    slot = (w > user_topic_cdf[u, 0]) + (w > user_topic_cdf[u, 1])
                    g = user_topics[u, slot]
                    if topic[3][g] > 0:
                        item = _draw(topic[0], topic[1], topic[2], topic[3], topic[4], topic[5], g, v)
                elif channel == 2 and deg > 0:
                    s, w = uniform(s)
                    a = fan_authors[fan_indptr[u] + min(int(w * deg), deg - 1)]
                    if author[3][a] > 0:
                        item = _draw(author[0], author[1], author[2], author[3], author[4], author[5], a, v)
                if item < 0:
                    channel = 0
                    item = _draw(pop[0], pop[1], pop[2], pop[3], pop[4], pop[5], 0, v)
                if mark[item] != stamp:
                    mark[item] = stamp
                    out_items[pos] = item
                    out_channel[pos] = channel
                    pos += 1
            kept[i] = pos - offsets[i]


@nb.njit(cache=True)
def compact(offsets, kept, items, channel):
    """Move each user's kept prefix together (in place, in order); returns the new CSR indptr."""
    indptr = np.zeros(offsets.shape[0] + 1, dtype=np.int64)
    pos = 0
    for i in range(offsets.shape[0]):
        start = offsets[i]
        for j in range(kept[i]):
            items[pos + j] = items[start + j]
            channel[pos + j] = channel[start + j]
        pos += kept[i]
        indptr[i + 1] = pos
    return indptr


@nb.njit(parallel=True, cache=True)
def engagement(
    indptr,
    items,
    channel,
    user_lo,
    user_hi,
    block_users,
    seed,
    week,
    params,
    user_taste,
    item_latent,
    item_quality_term,
    item_author,
    item_duration,
    user_propensity,
    user_platform,
    user_agent,
    fan_indptr,
    fan_authors,
    n_platforms,
    n_agents,
    out_user,
    out_item,
    out_place,
    out_platform,
    out_agent,
    out_timespent,
    out_flags,
):
    """Flags, timespent and context for the views of users [user_lo, user_hi) (CSR `indptr` over all users,
    rows indptr[user_lo].. map to out position 0..); rows are shuffled within each block of `block_users`
    users (a random time order that chunking by whole blocks does not change).

    params: [taste weight, fan weight, affinity noise, then per flag its logit offset (6), its slope on the
    affinity (6), its fandom bonus (6)]; out_flags rows: like, dislike, share, bookmark, click_on_author,
    open_comments; out_user / out_item hold user and clip indices."""
    base = indptr[user_lo]
    n_blocks = (user_hi - user_lo + block_users - 1) // block_users
    taste_w, fan_w, noise = params[0], params[1], params[2]
    for b in nb.prange(n_blocks):
        u0 = user_lo + b * block_users
        u1 = min(user_hi, u0 + block_users)
        r0, r1 = indptr[u0], indptr[u1]
        n = r1 - r0
        perm = np.arange(n)
        s = stream(seed, SHUFFLE, week, u0)
        for k in range(n - 1, 0, -1):  # Fisher-Yates
            s, v = uniform(s)
            j = int(v * (k + 1))
            perm[k], perm[j] = perm[j], perm[k]
        for u in range(u0, u1):
            s = stream(seed, ENGAGE, week, u)
            f0, f1 = fan_indptr[u], fan_indptr[u + 1]
            for r in range(indptr[u], indptr[u + 1]):
                item = items[r]
                ch = channel[r]
                a = item_author[item]
                fan = 0.0
                for f in range(f0, f1):
                    if fan_authors[f] == a:
                        fan = 1.0
                        break
                dot = np.float32(0.0)
                for d in range(user_taste.shape[1]):
                    dot += user_taste[u, d] * item_latent[item, d]
                s, z0, z1 = normal_pair(s)
                aff = taste_w * dot + fan_w * fan + item_quality_term[item] + user_propensity[u] + noise * z0
                out = r0 - base + perm[r - r0]
                for f in range(6):  # like, dislike, share, bookmark, click_on_author, open_comments
                    logit = params[3 + f] + params[9 + f] * aff + params[15 + f] * fan
                    s, v = uniform(s)
                    out_flags[f, out] = v * (1.0 + np.exp(-logit)) < 1.0
                watched = item_duration[item] * np.exp(-0.7 + 0.35 * aff + 0.6 * z1)
                out_timespent[out] = np.uint8(min(max(watched, 0.0), 255.0))
                s, v = uniform(s)
                if ch == 0:
                    place = int(v ** (1.0 / 0.35) * 6)
                elif ch == 1:
                    place = 6 + int(v ** (1.0 / 0.35) * 10)
                else:
                    place = 16 + int(v ** (1.0 / 0.35) * 8)
                out_place[out] = place
                s, v = uniform(s)
                if v < 0.1:
                    s, v = uniform(s)
                    out_platform[out] = int(v * n_platforms)
                    s, v = uniform(s)
                    out_agent[out] = int(v * n_agents)
                else:
                    out_platform[out] = user_platform[u]
                    out_agent[out] = user_agent[u]
                out_user[out] = u
                out_item[out] = item
