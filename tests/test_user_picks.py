"""User picks (the user -> clips direction) against brute force: each user's picks, and their turn-around
into per-clip lists."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_world

from audience.arrays import TopK, unit_rows
from audience.candidates import make_source
from audience.candidates.user_picks import picks_per_user, turn_around
from audience.config import load_config


@pytest.fixture(scope="module")
def world(tiny_dir):
    return tiny_world(tiny_dir, 300)


def slow_turn_around(picks: TopK, users: np.ndarray, n_clips: int, k: int) -> TopK:
    """One clip at a time: the users who picked it, by score over their best pick, then user index."""
    out = TopK.empty(n_clips, k)
    chosen: dict[int, list[tuple[float, int]]] = {}
    for row, user in enumerate(users):
        best = float(picks.scores[row, 0])
        for clip, score in zip(picks.ids[row], picks.scores[row], strict=True):
            if clip >= 0:
                relative = float(np.float32(score / best)) if best > 0 else float(score)
                chosen.setdefault(int(clip), []).append((-relative, int(user)))
    for clip, entries in chosen.items():
        for pos, (neg, user) in enumerate(sorted(entries)[:k]):
            out.ids[clip, pos], out.scores[clip, pos] = user, -neg
    return out


def test_picks_per_user_is_a_share_of_the_fair_part():
    assert picks_per_user(47_765, 100_000, 100, 2.0, 10) == 96  # ceil(2 x 47.765)
    assert picks_per_user(1_000, 100_000, 100, 2.0, 10) == 10  # the minimum
    assert picks_per_user(50, 10, 100, 2.0, 10) == 50  # never more than every clip


def test_turn_around_matches_a_loop():
    rng = np.random.default_rng(0)
    n_users, n_clips, per_user = 40, 25, 6
    ids = np.stack([rng.choice(n_clips, per_user, replace=False) for _ in range(n_users)]).astype(np.int32)
    scores = -np.sort(-rng.random((n_users, per_user)).astype(np.float32), axis=1)
    scores[3] -= 2.0  # a user whose best score is negative keeps raw scores
    ids[5, 4:] = -1  # a user with fewer picks
    scores[5, 4:] = -np.inf
    users = rng.choice(100, n_users, replace=False).astype(np.int32)
    picks = TopK(ids, scores)
    fast = turn_around(picks, users, n_clips, 100, 7)
    slow = slow_turn_around(picks, users, n_clips, 7)
    np.testing.assert_array_equal(fast.ids, slow.ids)
    np.testing.assert_allclose(fast.scores, slow.scores, rtol=1e-6)


def brute_author_picks(fit, catalog, queries, per_user: int) -> dict[int, set[int]]:
    """Each user's `per_user` target clips by their author-fan score (dense), ties by clip index."""
    fans = make_source("author_fans", load_config(n_threads=1)).fit(fit, catalog).author_users.toarray().T
    out = {}
    for user in np.flatnonzero(fans.sum(axis=1) > 0):
        score = np.where(queries.author >= 0, fans[user, np.maximum(queries.author, 0)], 0.0)
        order = np.lexsort((np.arange(score.size), -score))
        out[int(user)] = {int(c) for c in order[:per_user] if score[c] > 0}
    return out


def fitted_picks(name: str, world) -> tuple:
    """The source `name` fitted on the world, and how many clips each of its users picks."""
    catalog, fit, queries = world
    cfg = load_config(n_threads=1)
    source = make_source(name, cfg).fit(fit, catalog)
    picks = cfg.source.picks
    return source, picks_per_user(len(queries), source.users.size, cfg.list_size, picks.share, picks.minimum)


def picked_pairs(top: TopK) -> set[tuple[int, int]]:
    clip, pos = np.nonzero(top.ids >= 0)
    return set(zip(clip.tolist(), top.ids[clip, pos].tolist(), strict=True))


def test_author_picks_equal_brute_force(world):
    catalog, fit, queries = world
    source, per_user = fitted_picks("picks:author", world)
    top = source.recommend(queries, 10_000)  # k above any clip's pickers: nothing cut
    expected = {
        (c, u) for u, clips in brute_author_picks(fit, catalog, queries, per_user).items() for c in clips
    }
    assert picked_pairs(top) == expected


def test_profile_picks_recall_exact_cosine(world):
    _, fit, queries = world
    source, per_user = fitted_picks("picks:positive", world)
    top = source.recommend(queries, 10_000)
    users = np.flatnonzero(fit.profile_weight["positive"] > 0)
    clips = np.flatnonzero(queries.has_embedding)
    cosine = fit.profiles["positive"][users] @ unit_rows(queries.embedding[clips]).T
    best = np.argsort(-cosine, axis=1, kind="stable")[:, :per_user]
    expected = {(int(clips[c]), int(u)) for u, row in zip(users, best, strict=True) for c in row}
    found = picked_pairs(top)
    assert len(found & expected) >= 0.99 * len(expected)
    assert all(queries.has_embedding[c] for c, _ in found)


def test_each_clip_keeps_its_first_choosers(world):
    """A clip picked by more than k users keeps those for whom it comes closest to their best pick."""
    catalog, fit, queries = world
    source = make_source("picks:author", load_config(n_threads=1)).fit(fit, catalog)
    full, cut = source.recommend(queries, 10_000), source.recommend(queries, 5)
    np.testing.assert_array_equal(cut.ids, full.ids[:, :5])
    valid = cut.ids >= 0
    assert np.all(cut.scores[valid] <= 1.0 + 1e-6) and np.all(
        np.diff(np.where(valid, cut.scores, -9), axis=1) <= 0
    )
