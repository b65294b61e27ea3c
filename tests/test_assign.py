from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from audience.assign import (
    assign_pairs,
    assign_pairs_by_slots,
    assign_with_cap,
    candidates_by_clip,
    greedy_in_order,
    margin_shift,
    marked_first,
    priority_order,
    top_k_uncapped,
    top_lists,
)
from audience.cap import cap_infeasibility
from audience.evaluation.report import pool_ceiling_frame
from audience.matching import expected_ndcg_weights
from audience.stages.assign import ndcg_weighted


def _reference_top(clip, user, score, n_clips, k):
    order = sorted(range(len(score)), key=lambda i: (-score[i], i))
    top: list[list[int]] = [[] for _ in range(n_clips)]
    for i in order:
        c, u = int(clip[i]), int(user[i])
        if u not in top[c] and len(top[c]) < k:
            top[c].append(u)
    return top


def _reference_assign(clip, user, score, n_clips, n_users, list_size, user_cap, fallback):
    """The same greedy, written plainly: global descending score (ties in input order), first occurrence
    of a pair only, then a fill of short clips in clip order from the start of `fallback`."""
    order = sorted(range(len(score)), key=lambda i: (-score[i], i))
    lists: list[list[int]] = [[] for _ in range(n_clips)]
    load = [0] * n_users
    done = set()
    for i in order:
        c, u = int(clip[i]), int(user[i])
        if (c, u) in done:
            continue
        done.add((c, u))
        if len(lists[c]) < list_size and load[u] < user_cap:
            lists[c].append(u)
            load[u] += 1
    from_candidates = [list(row) for row in lists]
    top = _reference_top(clip, user, score, n_clips, list_size)
    displaced = sum(len(set(top[c]) - set(from_candidates[c])) for c in range(n_clips))
    for c in range(n_clips):
        for u in fallback:
            if len(lists[c]) == list_size:
                break
            if load[u] < user_cap and u not in lists[c]:
                lists[c].append(u)
                load[u] += 1
        if len(lists[c]) < list_size:
            raise ValueError("fill failed")
    n_cand = sum(len(row) for row in from_candidates)
    return np.array(lists, dtype=np.int32).reshape(n_clips, list_size), n_cand, displaced, np.array(load)


def _random_instance(rng):
    n_clips = int(rng.integers(1, 15))
    list_size = int(rng.integers(1, 7))
    n_users = int(rng.integers(list_size, 40))
    user_cap = int(rng.integers(1, 6))
    while n_clips * list_size > n_users * user_cap:
        user_cap += 1
    n = int(rng.integers(0, 200))
    clip = rng.integers(0, n_clips, n).astype(np.int32)
    user = rng.integers(0, n_users, n).astype(np.int32)
    if rng.random() < 0.5:
        score = rng.integers(0, 4, n).astype(np.float64)  # many ties
    else:
        score = rng.normal(size=n)
    if rng.random() < 0.5:
        order = np.argsort(clip, kind="stable")
        clip, user, score = clip[order], user[order], score[order]
    fallback = rng.permutation(n_users).astype(np.int32) if rng.random() < 0.5 else None
    return clip, user, score, n_clips, n_users, list_size, user_cap, fallback


def _check_invariants(result, n_clips, n_users, list_size, user_cap):
    users = result.users
    assert users.shape == (n_clips, list_size) and users.dtype == np.int32
    assert (users >= 0).all() and (users < n_users).all()
    assert all(len(set(row.tolist())) == list_size for row in users)
    load = np.bincount(users.ravel(), minlength=n_users)
    assert load.max(initial=0) <= user_cap
    np.testing.assert_array_equal(result.user_load, load)
    assert result.n_from_candidates + result.n_from_fallback == n_clips * list_size


def test_matches_reference_on_random_cases():
    rng = np.random.default_rng(11)
    compared = 0
    for _ in range(400):
        clip, user, score, n_clips, n_users, list_size, user_cap, fallback = _random_instance(rng)
        fb = fallback if fallback is not None else np.arange(n_users)
        try:
            ref = _reference_assign(clip, user, score, n_clips, n_users, list_size, user_cap, fb.tolist())
        except ValueError:
            with pytest.raises(ValueError, match="fill failed"):
                assign_with_cap(
                    clip, user, score, n_clips, n_users, list_size, user_cap, fallback, strategy="global"
                )
            continue
        got = assign_with_cap(
            clip, user, score, n_clips, n_users, list_size, user_cap, fallback, strategy="global"
        )
        np.testing.assert_array_equal(got.users, ref[0])
        assert (got.n_from_candidates, got.n_displaced) == (ref[1], ref[2])
        np.testing.assert_array_equal(got.user_load, ref[3])
        _check_invariants(got, n_clips, n_users, list_size, user_cap)
        compared += 1
    assert compared > 300


def test_top_k_uncapped_matches_reference():
    rng = np.random.default_rng(5)
    for _ in range(200):
        clip, user, score, n_clips, *_ = _random_instance(rng)
        k = int(rng.integers(1, 8))
        got = top_k_uncapped(clip, user, score, n_clips, k)
        ref = _reference_top(clip, user, score, n_clips, k)
        expected = np.full((n_clips, k), -1, dtype=np.int32)
        for c, row in enumerate(ref):
            expected[c, : len(row)] = row
        np.testing.assert_array_equal(got, expected)


def test_invariants_on_larger_random_data():
    rng = np.random.default_rng(2)
    n_clips, n_users, per = 400, 900, 60
    popularity = 1.0 / np.arange(1, n_users + 1)
    clip = np.repeat(np.arange(n_clips, dtype=np.int32), per)
    user = rng.choice(n_users, clip.size, p=popularity / popularity.sum()).astype(np.int32)
    score = rng.random(clip.size)
    result = assign_with_cap(
        clip, user, score, n_clips, n_users, list_size=50, user_cap=30, strategy="global"
    )
    _check_invariants(result, n_clips, n_users, 50, 30)
    assert result.n_displaced > 0 and result.n_from_fallback > 0


def test_cap_that_does_not_bind_keeps_the_uncapped_top_lists():
    rng = np.random.default_rng(4)
    n_clips, n_users, list_size = 30, 200, 10
    clip = np.repeat(np.arange(n_clips, dtype=np.int32), 40)
    user = rng.integers(0, n_users, clip.size).astype(np.int32)
    score = rng.random(clip.size)
    top = top_k_uncapped(clip, user, score, n_clips, list_size)
    assert (top >= 0).all()
    result = assign_with_cap(
        clip, user, score, n_clips, n_users, list_size=list_size, user_cap=n_clips, strategy="global"
    )
    np.testing.assert_array_equal(result.users, top)
    assert result.n_displaced == 0 and result.n_from_fallback == 0


def test_global_order_beats_clip_order_greedy():
    # clip 0 slightly prefers user 0; clip 1 strongly prefers user 0; each user may serve one clip
    clip = np.array([0, 0, 1, 1], dtype=np.int32)
    user = np.array([0, 1, 0, 1], dtype=np.int32)
    score = np.array([0.6, 0.5, 0.9, 0.1])
    pair_score = {(int(c), int(u)): float(s) for c, u, s in zip(clip, user, score, strict=True)}

    result = assign_with_cap(
        clip, user, score, n_clips=2, n_users=2, list_size=1, user_cap=1, strategy="global"
    )
    total_global = sum(pair_score[(c, int(result.users[c, 0]))] for c in range(2))

    taken: set[int] = set()
    total_clip_order = 0.0
    for c in range(2):  # greedy clip by clip
        best = max((u for u in range(2) if u not in taken), key=lambda u: pair_score[(c, u)])
        taken.add(best)
        total_clip_order += pair_score[(c, best)]
    assert result.users.tolist() == [[1], [0]]
    assert total_global == pytest.approx(1.4) and total_clip_order == pytest.approx(0.7)
    assert total_global > total_clip_order
    assert result.n_displaced == 1  # user 0 was in clip 0's uncapped top-1


def test_infeasible_instances_raise():
    empty = np.zeros(0, dtype=np.int32)
    with pytest.raises(ValueError, match="infeasible"):
        assign_with_cap(
            empty, empty, np.zeros(0), n_clips=11, n_users=10, list_size=10, user_cap=10, strategy="global"
        )
    with pytest.raises(ValueError, match="5 users < list_size 10"):
        assign_with_cap(
            empty, empty, np.zeros(0), n_clips=1, n_users=5, list_size=10, user_cap=10, strategy="global"
        )


def test_fallback_fills_shortfalls_in_fallback_order():
    # clip 0 has two candidates, clip 1 none; users 3, 1 and 4 come first in the fallback order but are full
    # (cap 1) by the time clip 1 is filled
    clip = np.array([0, 0], dtype=np.int32)
    user = np.array([3, 1], dtype=np.int32)
    score = np.array([0.2, 0.8])
    fallback = np.array([3, 1, 4, 0, 2, 5], dtype=np.int32)
    result = assign_with_cap(
        clip, user, score, 2, 6, list_size=3, user_cap=1, fallback_order=fallback, strategy="global"
    )
    assert result.users.tolist() == [[1, 3, 4], [0, 2, 5]]
    assert (result.n_from_candidates, result.n_from_fallback, result.n_displaced) == (2, 4, 0)


def test_fallback_skips_users_already_in_the_list_and_full_users():
    clip = np.array([0, 1, 1], dtype=np.int32)
    user = np.array([0, 0, 2], dtype=np.int32)
    score = np.array([1.0, 0.9, 0.8])
    # user 0 still has room (cap 3) but is already in both lists: the fill passes over it
    result = assign_with_cap(clip, user, score, 2, 4, list_size=3, user_cap=3, strategy="global")
    assert result.users.tolist() == [[0, 1, 2], [0, 2, 1]]
    assert (result.n_from_candidates, result.n_from_fallback) == (3, 3)
    # cap 1: clip 1 loses user 0 to clip 0, and users 1 and 3 are full when clip 1 is filled
    result = assign_with_cap(
        clip,
        user,
        score,
        2,
        6,
        list_size=3,
        user_cap=1,
        fallback_order=np.array([1, 3, 4, 5]),
        strategy="global",
    )
    assert result.users.tolist() == [[0, 1, 3], [2, 4, 5]]
    assert result.n_displaced == 1
    with pytest.raises(ValueError, match="fill failed: clip index 1"):
        assign_with_cap(
            clip,
            user,
            score,
            2,
            6,
            list_size=3,
            user_cap=1,
            fallback_order=np.array([1, 3, 4]),
            strategy="global",
        )


def test_duplicate_pairs_keep_their_best_score():
    clip = np.array([0, 0, 0, 0], dtype=np.int32)
    user = np.array([1, 2, 1, 3], dtype=np.int32)
    score = np.array([0.1, 0.5, 0.9, 0.2])
    result = assign_with_cap(clip, user, score, 1, 4, list_size=3, user_cap=1, strategy="global")
    assert result.users.tolist() == [[1, 2, 3]]
    assert result.n_from_candidates == 3


def test_clip_order_of_the_input_does_not_matter_with_distinct_scores():
    rng = np.random.default_rng(8)
    clip = rng.integers(0, 20, 600).astype(np.int32)
    user = rng.integers(0, 60, 600).astype(np.int32)
    score = rng.random(600)
    a = assign_with_cap(clip, user, score, 20, 60, list_size=8, user_cap=3, strategy="global")
    perm = np.argsort(clip, kind="stable")
    b = assign_with_cap(
        clip[perm], user[perm], score[perm], 20, 60, list_size=8, user_cap=3, strategy="global"
    )
    np.testing.assert_array_equal(a.users, b.users)


def test_bad_inputs_raise():
    one = np.zeros(1, dtype=np.int32)
    with pytest.raises(ValueError, match="clip indices"):
        assign_with_cap(one + 3, one, np.ones(1), 2, 5, list_size=2, user_cap=2, strategy="global")
    with pytest.raises(ValueError, match="user indices"):
        assign_with_cap(one, one + 9, np.ones(1), 2, 5, list_size=2, user_cap=2, strategy="global")
    with pytest.raises(ValueError, match="NaN"):
        assign_with_cap(one, one, np.array([np.nan]), 2, 5, list_size=2, user_cap=2, strategy="global")
    with pytest.raises(ValueError, match="one length"):
        assign_with_cap(
            one, np.zeros(2, dtype=np.int32), np.ones(1), 2, 5, list_size=2, user_cap=2, strategy="global"
        )
    with pytest.raises(ValueError, match="repeated"):
        assign_with_cap(
            one,
            one,
            np.ones(1),
            2,
            5,
            list_size=2,
            user_cap=2,
            fallback_order=np.array([1, 1]),
            strategy="global",
        )


def reference_candidates_by_clip(clip, user, score, n_clips):
    """A slow reference: triples by (clip, descending score, input index), each pair's first kept."""
    order = np.lexsort((np.arange(clip.size), -score.astype(np.float64), clip))
    seen, keep = set(), []
    for i in order:
        if (clip[i], user[i]) not in seen:
            seen.add((clip[i], user[i]))
            keep.append(i)
    keep = np.asarray(keep, dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(clip[keep], minlength=n_clips))])
    return indptr, user[keep], score[keep].astype(np.float64)


def test_candidates_by_clip_is_exact_and_stable():
    # ties, repeated pairs, signed zeros and infinities: each clip's pairs by descending score, ties and
    # repeated pairs decided by input order
    rng = np.random.default_rng(1)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, 1e-300, -1e-300, 5e-324, 1.0, -1.0, 1.0 + 2e-16])
    for trial in range(120):
        n, n_clips, n_users = int(rng.integers(0, 400)), int(rng.integers(1, 9)), int(rng.integers(1, 60))
        kind = trial % 4
        if kind == 0:
            s = rng.random(n)
        elif kind == 1:
            s = rng.integers(0, 5, n).astype(np.float64)
        elif kind == 2:
            s = 1.0 + rng.integers(0, 4, n) * 1e-15
        else:
            s = rng.choice(specials, n)
        if trial % 5 == 0:
            s = s.astype(np.float32)
        clip = rng.integers(0, n_clips, n).astype(np.int32)
        user = rng.integers(0, n_users, n).astype(np.int32)
        got = candidates_by_clip(clip, user, s, n_clips, n_users)
        want = reference_candidates_by_clip(clip, user, s, n_clips)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(
            top_k_uncapped(clip, user, s, n_clips, 3)[:, 0] if n else np.zeros(0),
            np.array([w_u[0] if len(w_u) else -1 for w_u in np.split(want[1], want[0][1:-1])]) if n else [],
        )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("strategy", ["global", "margin"])
def test_assign_pairs_equals_assign_with_cap_over_the_csr(seed, strategy):
    # new scores of a CSR's pairs (prices subtracted, with ties), caps that bind: the lists and counts of
    # assign_with_cap over the same triples in CSR order
    rng = np.random.default_rng(seed)
    n_clips, n_users, list_size, user_cap = 30, 120, 6, 2 + seed % 3
    n = 2500
    clip = rng.integers(0, n_clips, n).astype(np.int32)
    user = (rng.zipf(1.4, n) % n_users).astype(np.int32)
    pairs = candidates_by_clip(clip, user, np.round(rng.random(n), 2), n_clips, n_users)
    prices = np.round(rng.random(n_users) * 0.3, 2) * (rng.random(n_users) < 0.3)
    priority = pairs[2] - prices[pairs[1]]
    fallback = rng.permutation(n_users).astype(np.int32)
    got = assign_pairs(pairs, priority, n_users, list_size, user_cap, fallback, strategy)
    pair_clip = np.repeat(np.arange(n_clips, dtype=np.int32), np.diff(pairs[0]))
    want = assign_with_cap(
        pair_clip, pairs[1], priority, n_clips, n_users, list_size, user_cap, fallback, strategy
    )
    _assert_same_assignment(got, want)
    assert got.n_displaced > 0  # the cap binds


def _assert_same_assignment(got, want) -> None:
    np.testing.assert_array_equal(got.users, want.users)
    np.testing.assert_array_equal(got.user_load, want.user_load)
    assert (got.n_from_candidates, got.n_from_fallback, got.n_displaced) == (
        want.n_from_candidates,
        want.n_from_fallback,
        want.n_displaced,
    )


@pytest.mark.parametrize("seed", range(6))
def test_one_csr_gives_the_slots_draft_and_the_uncapped_lists_of_assign_with_cap(seed):
    # repeated pairs, tied scores, clips without candidates, a cap that binds: the CSR's slots draft and its
    # top lists equal assign_with_cap over the triples ("slots"; "global" with the cap lifted)
    rng = np.random.default_rng(seed)
    n_clips, n_users, list_size, user_cap = 25, 90, 7, 2 + seed % 3
    n = int(rng.integers(0, 1500))
    clip = rng.integers(0, n_clips - 2, n).astype(np.int32)
    user = (rng.zipf(1.4, n) % n_users).astype(np.int32)
    score = np.round(rng.random(n), 2)
    fallback = rng.permutation(n_users).astype(np.int32)
    pairs = candidates_by_clip(clip, user, score, n_clips, n_users)
    for got, want in (
        (
            assign_pairs_by_slots(pairs, n_users, list_size, user_cap, fallback),
            assign_with_cap(clip, user, score, n_clips, n_users, list_size, user_cap, fallback, "slots"),
        ),
        (
            top_lists(pairs, n_users, list_size, fallback),
            assign_with_cap(clip, user, score, n_clips, n_users, list_size, n_clips, fallback, "global"),
        ),
    ):
        _assert_same_assignment(got, want)


@pytest.mark.parametrize("block_rows", [1, 7, 10_000])
def test_pool_ceiling_scores_pool_pairs_by_the_oracle_else_by_minus_rank(block_rows):
    rng = np.random.default_rng(block_rows)
    n = 400
    pool = pl.DataFrame(
        {
            "clip": rng.integers(0, 12, n).astype(np.int32),
            "user": rng.integers(0, 60, n).astype(np.int32),
            "rank": rng.integers(1, 50, n).astype(np.int32),
        }
    ).unique(["clip", "user"], maintain_order=True)
    keys = rng.choice(15 * 70, 300, replace=False)
    oracle = pl.DataFrame(
        {
            "clip": (keys // 70).astype(np.int32),
            "user": (keys % 70).astype(np.int64),
            "score": rng.random(300).astype(np.float32),
        }
    )
    got = pool_ceiling_frame(pool, oracle, block_rows)
    truth = dict(zip(zip(oracle["clip"], oracle["user"], strict=True), oracle["score"], strict=True))
    want = [
        float(truth[(c, u)]) if (c, u) in truth else -float(r)
        for c, u, r in pool.select("clip", "user", "rank").iter_rows()
    ]
    assert got.columns == ["clip", "user", "score"]
    assert got["clip"].to_list() == pool["clip"].to_list() and got["user"].to_list() == pool["user"].to_list()
    assert got["score"].to_list() == want
    assert 0 < sum(s >= 0 for s in want) < len(want)  # both kinds of pairs occur


def test_slots_draft_spreads_top_users_over_top_ranks():
    """Every clip ranks the same users identically (popularity): the global greedy gives whole blocks of
    top users to the first clips; the slot draft puts the best users at rank 1 of many clips."""
    n_clips, n_users, k, cap = 40, 200, 10, 10
    popularity = np.linspace(1.0, 0.01, n_users)
    clip = np.repeat(np.arange(n_clips, dtype=np.int32), n_users)
    user = np.tile(np.arange(n_users, dtype=np.int32), n_clips)
    score = popularity[user]
    blocks = assign_with_cap(clip, user, score, n_clips, n_users, k, cap, strategy="global").users
    draft = assign_with_cap(clip, user, score, n_clips, n_users, k, cap, strategy="slots").users
    np.testing.assert_array_equal(blocks[0], np.arange(k))  # global: clip 0 takes users 0..9
    np.testing.assert_array_equal(draft[:, 0], np.repeat(np.arange(4), 10))  # slots: users 0..3 lead 40 clips
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    assert (popularity[draft] * discount).sum() > (popularity[blocks] * discount).sum()
    assert np.all(np.diff(popularity[draft], axis=1) <= 0), "each list stays ordered by score"
    assert np.bincount(draft.ravel()).max() <= cap


def reference_slots(clip, user, score, n_clips, n_users, k, cap):
    """Slow reference of the slot draft (dicts and sorted lists, Python loops)."""
    best = {}
    for i, (c, u, s) in enumerate(zip(clip.tolist(), user.tolist(), score.tolist(), strict=True)):
        if (c, u) not in best or s > best[(c, u)][0]:
            best[(c, u)] = (s, i)
    lists = {c: [] for c in range(n_clips)}
    for (c, u), (s, i) in best.items():
        lists[c].append((-s, i, u))
    for c in lists:
        lists[c] = [(-neg, u) for neg, _, u in sorted(lists[c])]
    load = [0] * n_users
    out = [[] for _ in range(n_clips)]
    pos = [0] * n_clips

    def skip_full(c):
        while pos[c] < len(lists[c]) and load[lists[c][pos[c]][1]] >= cap:
            pos[c] += 1

    for _ in range(k):
        heads = []
        for c in range(n_clips):
            skip_full(c)
            if pos[c] < len(lists[c]):
                heads.append((-lists[c][pos[c]][0], c))
        for _, c in sorted(heads):
            skip_full(c)
            if pos[c] < len(lists[c]):
                u = lists[c][pos[c]][1]
                out[c].append(u)
                load[u] += 1
                pos[c] += 1
    return out


def test_slots_matches_reference_on_random_cases():
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(200):
        n_clips, n_users = int(rng.integers(1, 12)), int(rng.integers(5, 40))
        k, cap = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        if n_clips * k > n_users * cap or n_users < k:
            continue
        p = int(rng.integers(0, 120))
        clip = rng.integers(0, n_clips, p).astype(np.int32)
        user = rng.integers(0, n_users, p).astype(np.int32)
        score = rng.integers(0, 6, p).astype(np.float64)  # many ties
        try:
            got = assign_with_cap(clip, user, score, n_clips, n_users, k, cap, strategy="slots")
        except ValueError as exc:  # the greedy fill may fail on tight cases, as documented
            assert "fill failed" in str(exc)
            continue
        ref = reference_slots(clip, user, score, n_clips, n_users, k, cap)
        for c in range(n_clips):
            assert got.users[c, : len(ref[c])].tolist() == ref[c]
        assert got.n_from_candidates == sum(len(r) for r in ref)
        checked += 1
    assert checked > 50


def test_replacement_scores_match_a_slow_loop():
    from audience.assign import replacement_scores

    rng = np.random.default_rng(5)
    for _ in range(50):
        n_clips, k = int(rng.integers(1, 8)), int(rng.integers(1, 6))
        n = int(rng.integers(0, 60))
        clip = rng.integers(0, n_clips, n)
        score = rng.normal(size=n)
        got = replacement_scores(clip, score, n_clips, k)
        for c in range(n_clips):
            mine = sorted(score[clip == c], reverse=True)
            expected = 0.0 if not mine else mine[min(len(mine), k + 1) - 1]
            assert got[c] == pytest.approx(expected)


def test_margin_gives_a_scarce_user_to_the_clip_that_loses_most_without_it():
    """User 0 (cap 1) scores 0.9 in clip 0, whose next candidate scores 0.85, and 0.8 in clip 1, whose next
    scores 0.1: global gives it to clip 0 (sum 0.9 + 0.1); margin to clip 1 (sum 0.85 + 0.8)."""
    clip = np.array([0, 0, 1, 1])
    user = np.array([0, 1, 0, 2])
    score = np.array([0.9, 0.85, 0.8, 0.1])
    fallback = np.arange(3, dtype=np.int32)
    glob = assign_with_cap(clip, user, score, 2, 3, 1, 1, fallback, strategy="global").users
    margin = assign_with_cap(clip, user, score, 2, 3, 1, 1, fallback, strategy="margin").users
    np.testing.assert_array_equal(glob[:, 0], [0, 2])
    np.testing.assert_array_equal(margin[:, 0], [1, 0])


def test_margin_is_global_on_scores_less_each_clips_replacement():
    from audience.assign import replacement_scores

    rng = np.random.default_rng(21)
    for _ in range(200):
        clip, user, score, n_clips, n_users, list_size, user_cap, fallback = _random_instance(rng)
        score = score + rng.random(score.size) * 1e-3  # distinct scores: no tie-order difference
        shifted = score - replacement_scores(clip, score, n_clips, list_size)[clip]
        try:
            ref = assign_with_cap(
                clip, user, shifted, n_clips, n_users, list_size, user_cap, fallback, strategy="global"
            )
        except ValueError:
            continue
        got = assign_with_cap(clip, user, score, n_clips, n_users, list_size, user_cap, fallback, "margin")
        np.testing.assert_array_equal(got.users, ref.users)
        _check_invariants(got, n_clips, n_users, list_size, user_cap)
        for c in range(n_clips):  # each list's candidate users come first, by descending (best) score
            best: dict[int, float] = {}
            for cc, u, s in zip(clip, user, score, strict=True):
                if cc == c:
                    best[int(u)] = max(best.get(int(u), -np.inf), float(s))
            in_list = [best[int(u)] for u in got.users[c] if int(u) in best]
            assert in_list == sorted(in_list, reverse=True)


def test_cap_infeasibility_is_the_one_check():
    assert cap_infeasibility(10, 10, 10, 10) is None  # exactly as many slots as the cap allows
    assert "11 target clips need 110 slots, but 10 users x cap 10 allow only 100" in cap_infeasibility(
        11, 10, 10, 10
    )
    assert cap_infeasibility(0, 10, 5, 10) is None  # no clip: nothing to fill


def test_ndcg_weighted_scales_probabilities_per_clip_and_leaves_other_scores():
    frame = pl.DataFrame(
        {"clip": [0, 0, 1, 1], "user": [0, 1, 0, 2], "score": [0.9, 0.9, 0.2, 0.1]},
        schema={"clip": pl.Int32, "user": pl.Int32, "score": pl.Float32},
    )
    weighted = ndcg_weighted(frame, 2, 100)
    weight = expected_ndcg_weights(np.array([0, 0, 1, 1]), frame["score"].to_numpy(), 2, 100)
    assert weighted.schema == frame.schema
    assert np.allclose(weighted["score"].to_numpy(), frame["score"].to_numpy() * weight[[0, 0, 1, 1]])
    # each clip keeps its own order, the clip with fewer expected positives gains against the other
    assert weighted["score"][2] / weighted["score"][0] > frame["score"][2] / frame["score"][0]
    for shift, scale in ((0.0, 3.0), (-1.0, 1.0)):
        not_probabilities = frame.with_columns(pl.col("score") * scale + shift)
        assert ndcg_weighted(not_probabilities, 2, 100).equals(not_probabilities)


def reference_global_greedy(clip, user, score, n_clips, n_users, list_size, user_cap):
    """Slow reference of the global greedy: one Python pass over the distinct pairs (each at its best score)
    in descending score order, ties in input order."""
    order = np.lexsort((np.arange(clip.size), -score))
    lists = np.full((n_clips, list_size), -1, dtype=np.int32)
    count, load, seen, taken, displaced = np.zeros(n_clips, int), np.zeros(n_users, int), {}, set(), 0
    for i in order:
        c, u = int(clip[i]), int(user[i])
        if (c, u) in taken:
            continue
        taken.add((c, u))
        rank = seen.get(c, 0)
        seen[c] = rank + 1
        if count[c] < list_size:
            if load[u] < user_cap:
                lists[c, count[c]] = u
                count[c] += 1
                load[u] += 1
            elif rank < list_size:
                displaced += 1
    return lists, count, load, displaced


@pytest.mark.parametrize("seed", range(6))
def test_merge_greedy_equals_the_greedy_over_every_triple(seed):
    # caps too tight for every list (60 users x cap 2-3 < 40 x 5 slots), long candidate lists, ties and
    # repeated pairs with other scores, clips in any order
    from audience.assign import _merge_greedy

    rng = np.random.default_rng(seed)
    n_clips, n_users, list_size, user_cap = 40, 60, 5, 2 + seed % 2
    n = 3000
    clip = rng.integers(0, n_clips, n).astype(np.int32)
    user = (rng.zipf(1.5, n) % n_users).astype(np.int32)  # heavy users: the cap binds
    score = np.round(rng.random(n), 2)
    want = reference_global_greedy(clip, user, score, n_clips, n_users, list_size, user_cap)
    got_lists = np.full((n_clips, list_size), -1, dtype=np.int32)
    got = _merge_greedy(clip, user, score, n_clips, n_users, list_size, user_cap, got_lists)
    np.testing.assert_array_equal(got_lists, want[0])
    np.testing.assert_array_equal(got[0], want[1])
    np.testing.assert_array_equal(got[1], want[2])
    assert got[2] == want[3] > 0
    assert (want[1] < list_size).any()  # some clips go short: the cap binds


@pytest.mark.parametrize("seed", range(6))
def test_one_priority_order_serves_the_plain_margin_and_marked_first_greedies(seed):
    # one sort per clip (what the priced assignment does at each primal step), then three greedies read it:
    # the plain order, the margin's per-clip shift, and the marked pairs moved ahead. Each gives the slow
    # greedy over every pair under the priority it stands for; priorities are distinct (no tie-order
    # question), the caps bind, some clips have no pairs
    rng = np.random.default_rng(seed)
    n_clips, n_users, list_size, user_cap = 40, 150, 5, 2 + seed % 2
    n = 3000
    clip = rng.integers(0, n_clips - 3, n).astype(np.int32)
    user = (rng.zipf(1.5, n) % n_users).astype(np.int32)
    pairs = candidates_by_clip(clip, user, rng.random(n), n_clips, n_users)
    priority = pairs[2] - rng.random(n_users)[pairs[1]] * (rng.random(n_users) < 0.4)[pairs[1]]
    pair_clip = np.repeat(np.arange(n_clips, dtype=np.int32), np.diff(pairs[0]))
    by_clip = [sorted(priority[pair_clip == c], reverse=True) for c in range(n_clips)]
    replacement = np.array([p[min(len(p), list_size + 1) - 1] if p else 0.0 for p in by_clip])
    # marked pairs: at most list_size a clip (as the priced assignment's chosen lists are)
    marked = rng.random(priority.size) < 0.3
    for lo, hi in itertools.pairwise(pairs[0]):
        marked[lo:hi] &= np.cumsum(marked[lo:hi]) <= list_size
    assert np.bincount(pairs[1][marked]).max() > user_cap  # the per-user pass must refuse some
    boost = priority.max() - priority.min() + 1.0
    stands_for = {
        "plain": priority,
        "margin": priority - replacement[pair_clip],
        "marked first": np.where(marked, priority + boost, priority),
    }
    order = priority_order(pairs, priority)
    for name, wanted_priority in stands_for.items():
        ahead = marked_first(order, marked) if name == "marked first" else None
        shift = margin_shift(order, list_size) if name == "margin" else None
        if shift is not None:
            np.testing.assert_array_equal(shift, replacement)
        want = reference_global_greedy(
            pair_clip, pairs[1], wanted_priority, n_clips, n_users, list_size, user_cap
        )
        fallback = rng.permutation(n_users).astype(np.int32)
        # the marked pairs by the merge and by the per-user pass (at most list_size a clip: the cap alone
        # decides among them)
        for marked_ahead in (None, ahead) if ahead is not None else (None,):
            if marked_ahead is not None:
                np.testing.assert_array_equal(marked_ahead, np.bincount(pair_clip[marked], minlength=n_clips))
            got = greedy_in_order(order, n_users, list_size, user_cap, fallback, shift, marked_ahead)
            listed = [got.users[c, : want[1][c]] for c in range(n_clips)]
            np.testing.assert_array_equal(np.concatenate(listed), want[0][want[0] >= 0], err_msg=name)
            assert got.n_from_candidates == want[1].sum(), name
            assert got.n_displaced == want[3] > 0, name
            assert (got.user_load >= np.bincount(want[0][want[0] >= 0], minlength=n_users)).all()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("strategy", ["global", "margin"])
def test_triples_grouped_by_clip_give_the_csr_the_same_lists(seed, strategy):
    # what the assign stage relies on to sort a pool once: triples grouped by clip (any order within a
    # clip), no repeated pair, scores with ties within and across clips -> assign_pairs over their CSR
    # equals assign_with_cap over the triples
    rng = np.random.default_rng(seed)
    n_clips, n_users, list_size, user_cap = 30, 200, 6, 2 + seed % 2
    per_clip = rng.integers(0, 40, n_clips)
    clip = np.repeat(np.arange(n_clips, dtype=np.int32), per_clip)
    user = np.concatenate([rng.choice(n_users, k, replace=False, p=_zipf_weights(n_users)) for k in per_clip])
    score = np.round(rng.random(clip.size), 1)  # ties everywhere
    fallback = rng.permutation(n_users).astype(np.int32)
    pairs = candidates_by_clip(clip, user.astype(np.int32), score, n_clips, n_users)
    assert pairs[1].size == clip.size
    got = assign_pairs(pairs, pairs[2], n_users, list_size, user_cap, fallback, strategy)
    want = assign_with_cap(clip, user, score, n_clips, n_users, list_size, user_cap, fallback, strategy)
    _assert_same_assignment(got, want)
    assert got.n_displaced > 0


def _zipf_weights(n: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1)
    return weights / weights.sum()
