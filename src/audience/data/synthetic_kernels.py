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
UNIT_STEPS = 9007199254740992.0  # 2^53
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
    """(next state, two independent standard normals) by Marsaglia's polar method."""
    while True:
        state, a = uniform(state)
        state, b = uniform(state)
        x, y = 2.0 * a - 1.0, 2.0 * b - 1.0
        q = x * x + y * y
        if 0.0 < q < 1.0:
            f = np.sqrt(-2.0 * np.log(q) / q)
            return state, x * f, y * f


@nb.njit(cache=True)
def build_alias(start, end, weight):
    """Walker/Vose alias tables of every group (elements sorted by group, group g in [start[g], end[g])):
    returns (prob, alias) so that a draw is O(1) whatever the group's size."""
    n = weight.shape[0]
    prob = np.ones(n, dtype=np.float64)
    alias = np.arange(n)
    small = np.empty(n, dtype=np.int64)
    large = np.empty(n, dtype=np.int64)
    for g in range(start.shape[0]):
        lo, hi = start[g], end[g]
        total = 0.0
        for k in range(lo, hi):
            total += weight[k]
        if hi == lo or total <= 0.0:
            continue
        n_small = n_large = 0
        for k in range(lo, hi):
            prob[k] = weight[k] * (hi - lo) / total
            if prob[k] < 1.0:
                small[n_small] = k
                n_small += 1
            else:
                large[n_large] = k
                n_large += 1
        while n_small > 0 and n_large > 0:
            n_small -= 1
            k = small[n_small]
            big = large[n_large - 1]
            alias[k] = big
            prob[big] += prob[k] - 1.0
            if prob[big] < 1.0:
                n_large -= 1
                small[n_small] = big
                n_small += 1
        for i in range(n_small):  # left-overs are 1 up to rounding
            prob[small[i]] = 1.0
        for i in range(n_large):
            prob[large[i]] = 1.0
    return prob, alias


@nb.njit(cache=True)
def pack_alias(prob, alias, elements):
    """One 16-byte slot per alias-table entry (a draw touches one cache line): [acceptance threshold in
    units of 2^-53, element | alias's element << 32]."""
    n = prob.shape[0]
    table = np.empty((n, 2), dtype=np.int64)
    for k in range(n):
        table[k, 0] = np.int64(prob[k] * UNIT_STEPS)
        table[k, 1] = np.int64(elements[k]) | (np.int64(elements[alias[k]]) << 32)
    return table


@nb.njit(inline="always", cache=True)
def _draw(table, start, end, group, v):
    """The element of `group` drawn with the uniform v by its packed alias table (one slot, one compare)."""
    size = end[group] - start[group]
    x = v * size
    k = min(int(x), size - 1)
    slot = table[start[group] + k, 1]
    if np.int64((x - k) * UNIT_STEPS) < table[start[group] + k, 0]:
        return slot & 0xFFFFFFFF
    return slot >> 32


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

    pop/topic/author: (packed alias table, start, end) of the week's exposure channels (`pack_alias`,
    elements are clip indices). recent_indptr/items: typed lists, one CSR (users -> clips) per week.
    A part's marks are uint8 stamps (cleared every 255 users) so they stay in cache."""
    n = users.shape[0]
    step = (n + n_parts - 1) // n_parts
    for part in nb.prange(n_parts):
        mark = np.zeros(n_items, dtype=np.uint8)
        stamp = 0
        for i in range(part * step, min(n, (part + 1) * step)):
            u = users[i]
            stamp += 1
            if stamp == 256:
                mark[:] = 0
                stamp = 1
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
                    if topic[2][g] > topic[1][g]:
                        item = _draw(topic[0], topic[1], topic[2], g, v)
                elif channel == 2 and deg > 0:
                    s, w = uniform(s)
                    a = fan_authors[fan_indptr[u] + min(int(w * deg), deg - 1)]
                    if author[2][a] > author[1][a]:
                        item = _draw(author[0], author[1], author[2], a, v)
                if item < 0:
                    channel = 0
                    item = _draw(pop[0], pop[1], pop[2], 0, v)
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
    weights,
    flag_scale,
    flag_steps,
    slope_step,
    place_thresholds,
    place_base,
    user_taste,
    item_record,
    item_author,
    user_propensity,
    user_platform,
    user_agent,
    fan_indptr,
    fan_authors,
    n_platforms,
    n_agents,
    user_ids,
    item_ids,
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

    item_record: per clip its latent vector, then its quality term and its duration (float32, one row of
    cache lines per view). weights: (taste, fan, affinity noise). A flag fires with probability
    sigmoid(logit), logit = offset + slope x affinity + bonus x fan: flag_scale[fan, f] =
    exp(-offset - bonus x fan) and slope = flag_steps[f] x slope_step, so exp(-logit) costs one exp per
    view for all six flags. place: channel c's base + the number of place_thresholds[c] (padded with 2.0)
    the uniform passes (a power-law draw). out_flags rows: like, dislike, share, bookmark,
    click_on_author, open_comments; out_user / out_item get the external ids (user_ids[user],
    item_ids[clip])."""
    base = indptr[user_lo]
    n_blocks = (user_hi - user_lo + block_users - 1) // block_users
    taste_w, fan_w, noise = weights[0], weights[1], weights[2]
    n_flags = flag_steps.shape[0]
    max_steps = np.abs(flag_steps).max()
    n_latent = user_taste.shape[1]
    for b in nb.prange(n_blocks):
        tpow = np.empty(2 * max_steps + 1)
        u0 = user_lo + b * block_users
        u1 = min(user_hi, u0 + block_users)
        r0, r1 = indptr[u0], indptr[u1]
        n = r1 - r0
        perm = np.arange(n).astype(np.int32)
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
                a = item_author[item]  # (also in the record; this int array is exact for any count)
                fan = 0
                for f in range(f0, f1):
                    if fan_authors[f] == a:
                        fan = 1
                        break
                dot = np.float32(0.0)
                for d in range(n_latent):
                    dot += user_taste[u, d] * item_record[item, d]
                s, z0, z1 = normal_pair(s)
                aff = (
                    taste_w * dot
                    + fan_w * fan
                    + item_record[item, n_latent]
                    + user_propensity[u]
                    + noise * z0
                )
                out = r0 - base + perm[r - r0]
                t = np.exp(-slope_step * aff)
                t_inv = 1.0 / t
                tpow[max_steps] = 1.0
                for k in range(1, max_steps + 1):  # tpow[max_steps + k] = t^k, k in [-max_steps, max_steps]
                    tpow[max_steps + k] = tpow[max_steps + k - 1] * t
                    tpow[max_steps - k] = tpow[max_steps - k + 1] * t_inv
                for f in range(n_flags):
                    s, v = uniform(s)
                    out_flags[f, out] = v * (1.0 + flag_scale[fan, f] * tpow[max_steps + flag_steps[f]]) < 1.0
                watched = item_record[item, n_latent + 1] * np.exp(-0.7 + 0.35 * aff + 0.6 * z1)
                out_timespent[out] = np.uint8(min(max(watched, 0.0), 255.0))
                s, v = uniform(s)
                place = place_base[ch]
                for j in range(place_thresholds.shape[1]):
                    if v < place_thresholds[ch, j]:
                        break
                    place += 1
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
                out_user[out] = user_ids[u]
                out_item[out] = item_ids[item]


@nb.njit(inline="always", cache=True)
def _interp(table, fan, lo, inv_step, x):
    pos = (x - lo) * inv_step
    if pos <= 0.0:
        return table[fan, 0]
    last = table.shape[1] - 1
    if pos >= last:
        return table[fan, last]
    k = int(pos)
    frac = pos - k
    return table[fan, k] * (1.0 - frac) + table[fan, k + 1] * frac


@nb.njit(inline="always", cache=True)
def _heap_push(scores, users, size, score, user):
    """Keep the `len(scores)` best (score, user) pairs in a min-heap; returns the new size."""
    if size < scores.shape[0]:
        k = size
        size += 1
        while k > 0:
            parent = (k - 1) >> 1
            if scores[parent] <= score:
                break
            scores[k], users[k] = scores[parent], users[parent]
            k = parent
        scores[k], users[k] = score, user
        return size
    k = 0
    while True:  # replace the root and sift down
        child = 2 * k + 1
        if child >= size:
            break
        if child + 1 < size and scores[child + 1] < scores[child]:
            child += 1
        if scores[child] >= score:
            break
        scores[k], users[k] = scores[child], users[child]
        k = child
    scores[k], users[k] = score, user
    return size


@nb.njit(parallel=True, cache=True)
def oracle_top(
    clip_weight,
    clip_topic,
    clip_author,
    clip_latent,
    clip_quality_term,
    topic_total,
    author_total,
    live_total,
    channel_probs,
    theta_t,
    user_taste,
    expected_views,
    inv_fan_degree,
    propensity,
    fans_indptr,
    fans_users,
    any_positive,
    grid_lo,
    grid_inv_step,
    taste_weight,
    fan_weight,
    depth,
    out_users,
    out_scores,
):
    """Top `depth` users per clip by expected positives P(view) x P(any positive | view), exactly as
    `WeekOracle.scores` (P(any positive) read from `any_positive[fan]`, a fine grid over the affinity,
    linearly interpolated). Users whose upper bound (taste match at its maximum 1, 1 - e^-x <= x) cannot
    enter the current top are skipped without computing their match. Memory: a users-sized mark per clip
    thread; out_* are (n_clips, depth), best first."""
    p_pop, p_topic, p_fan = channel_probs[0], channel_probs[1], channel_probs[2]
    n_users = theta_t.shape[1]
    for c in nb.prange(clip_weight.shape[0]):
        w = clip_weight[c]
        topic, author = clip_topic[c], clip_author[c]
        pop_rate = p_pop * w / live_total
        topic_rate = p_topic * w / max(topic_total[topic], 1e-12)
        fan_rate = p_fan * w / max(author_total[author], 1e-12)
        base_aff = clip_quality_term[c]
        is_fan = np.zeros(n_users, dtype=np.uint8)
        for j in range(fans_indptr[author], fans_indptr[author + 1]):
            is_fan[fans_users[j]] = 1
        heap_scores = np.empty(depth, dtype=np.float64)
        heap_users = np.empty(depth, dtype=np.int64)
        size = 0
        for u in range(n_users):
            fan = is_fan[u]
            rate = pop_rate + topic_rate * theta_t[topic, u] + fan * inv_fan_degree[u] * fan_rate
            x = rate * expected_views[u]
            partial = base_aff + fan_weight * fan + propensity[u]
            if size == depth:
                bound = min(x, 1.0) * _interp(
                    any_positive, fan, grid_lo, grid_inv_step, partial + taste_weight * 1.001
                )
                if bound <= heap_scores[0]:
                    continue
            dot = 0.0
            for d in range(user_taste.shape[1]):
                dot += user_taste[u, d] * clip_latent[c, d]
            score = -np.expm1(-x) * _interp(
                any_positive, fan, grid_lo, grid_inv_step, partial + taste_weight * dot
            )
            if size < depth or score > heap_scores[0]:
                size = _heap_push(heap_scores, heap_users, size, score, u)
        order = np.argsort(-heap_scores[:size])
        for k in range(size):
            out_users[c, k] = heap_users[order[k]]
            out_scores[c, k] = heap_scores[order[k]]
