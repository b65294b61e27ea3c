"""Cap-aware assignment of users to clips: every clip gets exactly `list_size` distinct users and no user is
given to more than `user_cap` clips (the challenge rule is 100 and 100).

Algorithm (`assign_with_cap`)
-----------------------------
1. Order every candidate triple (clip, user, score) by descending score; ties keep the input order (a stable
   order, so the result is deterministic for a given input). A (clip, user) pair listed several times keeps
   only its first triple in that order, i.e. its best score.
2. Choose pairs under the cap (numba), by one of three strategies (`config.STRATEGIES`; the pipeline's
   default is `RunConfig.assignment`):
   * ``slots``: a draft by rank slot. For slot 1, every clip takes its best
     candidate that still has room, the clips whose best such candidate scores highest choosing first;
     then slot 2, and so on.
     Why: NDCG pays most at the top ranks. When many clips want the same scarce users (popularity puts
     the same users on top of every list), the draft gives those users to rank 1 of many clips, where
     ``global`` gives them to ranks 1..100 of the first few clips and leaves the rest with weak lists.
   * ``global`` (this function's default): one pass in global score order, accepting a pair when its
     clip still has fewer than `list_size` users and its user fewer than `user_cap` clips. Each user
     goes to the clips where it scores highest, whatever its rank there.
   * ``margin``: ``global`` on each pair's margin over its clip's replacement: score minus the clip's
     (`list_size` + 1)-th best candidate score (its lowest when it has fewer candidates). A user over
     the cap goes to the clips that lose most without it, not to those where it merely scores highest:
     a clip whose next candidate is nearly as good gives the user up first. Within a clip the margin
     keeps the score order, so lists stay ranked by score.
3. Clips that are still short are filled, in clip-index order, with the first users of `fallback_order`
   (e.g. most active first) that have capacity left and are not already in the clip. A "next user with
   capacity" pointer with path compression skips users that are full for good, so the fill costs
   O(shortfall + list_size) per short clip, not a rescan from the start.
4. Each list holds its candidate users by descending pair score, then its fallback users in fallback order.

Limits
------
* ``slots`` costs O(list_size x n_clips log n_clips) on top of the sort. All three are heuristics: ``global``
  is the greedy heuristic for a b-matching (clip degree `list_size`, user degree `user_cap`): taking
  edges by global score is a 1/2-approximation of the maximum-weight b-matching, not the optimum. It beats
  greedy in clip order because a user's scarce slots go to the clips where the user scores highest.
* Scores must be comparable across clips (same scale, e.g. calibrated probabilities); per-clip ranks or
  un-normalised per-clip scores make the global order meaningless.
* Complexity: ``global`` and ``margin`` sort within clips only (O(P log(P / n_clips)) for P triples, clips
  in parallel) and merge the clips' sorted candidates with a heap, reading each clip only until it fills
  (`_merge_greedy`: the same lists as one pass over the fully sorted triples); ``margin`` sorts by the
  score itself and shifts each clip's keys as the merge reads them. ``slots`` reads the same per-clip sorted
  candidates. `assign_pairs` runs ``global`` or ``margin`` on new scores of the distinct pairs of a
  `candidates_by_clip` CSR, skipping the de-duplication and the bucketing; `priority_order` and
  `greedy_in_order` let several greedies share one sort (the priced assignment runs three per step). Then
  O(n_users + n_clips * list_size) for the fill; memory about 40 bytes per triple.
* The fill is greedy too: when the instance is nearly tight (``n_clips * list_size`` close to
  ``n_users * user_cap``) or `fallback_order` holds few users, a short clip may find no user left that is
  both free and new to it even though a feasible assignment exists; a ValueError then names the clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from audience.arrays import key_buckets
from audience.cap import cap_infeasibility
from audience.config import STRATEGIES

__all__ = [
    "AssignmentResult",
    "PriorityOrder",
    "assign_pairs",
    "assign_pairs_by_slots",
    "assign_with_cap",
    "candidates_by_clip",
    "greedy_in_order",
    "margin_shift",
    "marked_first",
    "priority_order",
    "top_k_uncapped",
    "top_lists",
]


@dataclass(frozen=True)
class AssignmentResult:
    """users: (n_clips, list_size) int32 user indices, each row in final rank order.
    n_from_candidates / n_from_fallback: how many of the ``n_clips * list_size`` slots each source filled.
    n_displaced: candidate pairs that were in their clip's uncapped top-`list_size` but were refused because
    the user had reached `user_cap` (what the cap cost, in pairs).
    user_load: (n_users,) int64, how many lists each user is in (``np.bincount`` of `users`)."""

    users: np.ndarray
    n_from_candidates: int
    n_from_fallback: int
    n_displaced: int
    user_load: np.ndarray


def _check_triples(
    clip: np.ndarray, user: np.ndarray, score: np.ndarray, n_clips: int, n_users: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    clip = np.asarray(clip)
    user = np.asarray(user)
    score = np.asarray(score)
    if clip.ndim != 1 or user.ndim != 1 or score.ndim != 1:
        raise ValueError(
            f"clip, user, score must be 1-d (got shapes {clip.shape}, {user.shape}, {score.shape})"
        )
    if not (clip.size == user.size == score.size):
        raise ValueError(
            f"clip, user, score must have one length (got {clip.size}, {user.size}, {score.size})"
        )
    for name, arr in (("clip", clip), ("user", user)):
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must hold integer indices (got dtype {arr.dtype})")
    if score.size and not (np.issubdtype(score.dtype, np.floating) or np.issubdtype(score.dtype, np.integer)):
        raise ValueError(f"score must be real numbers (got dtype {score.dtype})")
    if n_clips < 0:
        raise ValueError(f"n_clips must be >= 0 (got {n_clips})")
    if clip.size:
        lo, hi = int(clip.min()), int(clip.max())
        if lo < 0 or hi >= n_clips:
            raise ValueError(f"clip indices must lie in [0, {n_clips}) (found {lo}..{hi})")
        lo, hi = int(user.min()), int(user.max())
        limit = n_users if n_users is not None else np.iinfo(np.int32).max
        if lo < 0 or hi >= limit:
            raise ValueError(f"user indices must lie in [0, {limit}) (found {lo}..{hi})")
        if np.isnan(score.astype(np.float64, copy=False)).any():
            raise ValueError("score has NaN values: the order is undefined")
    return clip.astype(np.int32, copy=False), user.astype(np.int32, copy=False), score


@nb.njit(cache=True, nogil=True)
def _best_pair_kernel(clip, user, score, n_clips, n_users):  # pragma: no cover - numba
    """keep[i]: triple i is the best occurrence of its (clip, user) pair (highest score; on a tie the first
    in input order), i.e. its first occurrence in the global order. Works clip by clip with a per-user
    stamp; when `clip` is already non-decreasing the triples are read in place, else bucketed by clip."""
    n = clip.size
    keep = np.ones(n, dtype=np.bool_)
    grouped = True
    for i in range(1, n):
        if clip[i] < clip[i - 1]:
            grouped = False
            break
    bucket = np.arange(n) if grouped else key_buckets(clip, n_clips)[1]
    stamp = np.full(n_users, -1, dtype=np.int32)
    best = np.zeros(n_users, dtype=np.int64)
    for j in range(n):
        i = bucket[j]
        c = clip[i]
        u = user[i]
        if stamp[u] != c:
            stamp[u] = c
            best[u] = i
        else:
            b = best[u]
            if score[i] > score[b]:  # buckets hold input order, so b < i and b wins a tie
                keep[b] = False
                best[u] = i
            else:
                keep[i] = False
    return keep


@nb.njit(cache=True, nogil=True)
def _slots_kernel(indptr, users, scores, n_users, list_size, user_cap, out):  # pragma: no cover - numba
    """Draft by rank slots: for slot 1, 2, ... every clip takes its best candidate that still has room,
    clips with the strongest such candidate choosing first. `users`/`scores` hold each clip's distinct
    candidates by descending score in `indptr` slices."""
    n_clips = out.shape[0]
    ptr = indptr[:-1].copy()
    count = np.zeros(n_clips, dtype=np.int64)
    load = np.zeros(n_users, dtype=np.int64)
    head = np.empty(n_clips, dtype=np.float64)
    displaced = 0
    for _ in range(list_size):
        for c in range(n_clips):
            while ptr[c] < indptr[c + 1] and load[users[ptr[c]]] >= user_cap:
                if ptr[c] - indptr[c] < list_size:
                    displaced += 1
                ptr[c] += 1
            head[c] = scores[ptr[c]] if ptr[c] < indptr[c + 1] else -np.inf
        for c in np.argsort(-head, kind="mergesort"):
            if head[c] == -np.inf:
                break
            while ptr[c] < indptr[c + 1] and load[users[ptr[c]]] >= user_cap:
                if ptr[c] - indptr[c] < list_size:
                    displaced += 1
                ptr[c] += 1
            if ptr[c] < indptr[c + 1]:
                u = users[ptr[c]]
                out[c, count[c]] = u
                count[c] += 1
                load[u] += 1
                ptr[c] += 1
    return count, load, displaced


@nb.njit(cache=True, nogil=True)
def _find(nxt, j):  # pragma: no cover - numba
    while nxt[j] != j:
        nxt[j] = nxt[nxt[j]]  # path halving
        j = nxt[j]
    return j


@nb.njit(cache=True, nogil=True)
def _fill_kernel(out, count, load, fallback, user_cap):  # pragma: no cover - numba
    """Fill short clips (in index order) with the first fallback users that have room and are new to the
    clip. Returns the number of filled slots, or -1 - c when clip c cannot be completed."""
    n_clips, list_size = out.shape
    m = fallback.size
    nxt = np.arange(m + 1)  # nxt[j] == j: position j may have room; m is the end sentinel
    for j in range(m):
        if load[fallback[j]] >= user_cap:
            nxt[j] = j + 1
    stamp = np.full(load.size, -1, dtype=np.int32)
    filled = 0
    for c in range(n_clips):
        if count[c] >= list_size:
            continue
        for t in range(count[c]):
            stamp[out[c, t]] = c
        j = _find(nxt, 0)
        while count[c] < list_size:
            if j >= m:
                return -1 - c
            u = fallback[j]
            if stamp[u] != c:
                out[c, count[c]] = u
                count[c] += 1
                load[u] += 1
                stamp[u] = c
                filled += 1
                if load[u] >= user_cap:
                    nxt[j] = j + 1
            j = _find(nxt, j + 1)
    return filled


def _distinct_by_clip(
    clip: np.ndarray, user: np.ndarray, score: np.ndarray, n_clips: int, n_users: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`candidates_by_clip` of checked triples: a counting sort by clip, then one sort per clip, clips in
    parallel."""
    score = np.ascontiguousarray(score, dtype=np.float64)
    keep = _best_pair_kernel(clip, user, score, n_clips, n_users)
    if not keep.all():  # a subset keeps the input order, so ties still break by it
        clip, user, score = clip[keep], user[keep], score[keep]
    offsets, perm = key_buckets(clip, n_clips)
    sorted_user, sorted_score = _sort_buckets(offsets, perm, user, score)
    return offsets, sorted_user, sorted_score


def candidates_by_clip(
    clip: np.ndarray, user: np.ndarray, score: np.ndarray, n_clips: int, n_users: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each clip's distinct candidates by descending score (a repeated pair keeps its best score, ties in
    input order, as `assign_with_cap` reads them): CSR (indptr int64, users int32, scores float64)."""
    return _distinct_by_clip(*_check_triples(clip, user, score, n_clips, n_users), n_clips, n_users)


@nb.njit(parallel=True, cache=True, nogil=True)
def _kth_over_buckets(offsets, perm, score, k):  # pragma: no cover - numba
    """Each clip's k[c]-th largest score (its lowest when it has fewer; 0 when none) over its bucket
    perm[offsets[c]:offsets[c + 1]]: one selection per clip, clips in parallel."""
    n_clips = offsets.size - 1
    out = np.zeros(n_clips, dtype=np.float64)
    for c in nb.prange(n_clips):
        lo, hi = offsets[c], offsets[c + 1]
        if hi > lo:
            kth = min(hi - lo, k[c]) - 1
            out[c] = -np.partition(-score[perm[lo:hi]], kth)[kth]
    return out


def kth_scores(clip: np.ndarray, score: np.ndarray, n_clips: int, k: int | np.ndarray) -> np.ndarray:
    """(n_clips,) float64: each clip's k-th best score (`k` one count or one per clip), or its lowest score
    when it has fewer than k triples (0 for a clip with none). O(P) plus a selection per clip, no sort."""
    score = np.ascontiguousarray(score, dtype=np.float64)
    k = _per_clip_k(k, n_clips)
    offsets, perm = key_buckets(np.ascontiguousarray(clip, dtype=np.int64), n_clips)
    return _kth_over_buckets(offsets, perm, score, k)


def _per_clip_k(k: int | np.ndarray, n_clips: int) -> np.ndarray:
    k = np.ascontiguousarray(np.broadcast_to(np.asarray(k, dtype=np.int64), (n_clips,)))
    if k.size and k.min() < 1:
        raise ValueError(f"k must be >= 1 (got {k.min()})")
    return k


def replacement_scores(clip: np.ndarray, score: np.ndarray, n_clips: int, list_size: int) -> np.ndarray:
    """(n_clips,) float64: each clip's (list_size + 1)-th best score, or its lowest score when it has at most
    list_size triples (0 for a clip with none)."""
    return kth_scores(clip, score, n_clips, list_size + 1)


@nb.njit(parallel=True, cache=True, nogil=True)
def _sort_buckets(offsets, perm, user, score):  # pragma: no cover - numba
    """Sorts each clip's bucket perm[offsets[c]:offsets[c + 1]] (triple indices ascending) in place by
    descending score, ties in index order (a stable sort); returns the triples' users and scores in the
    new order. One sort per clip, clips in parallel: O(P log(P / n_clips))."""
    sorted_user = np.empty(perm.size, dtype=user.dtype)
    sorted_score = np.empty(perm.size, dtype=np.float64)
    for c in nb.prange(offsets.size - 1):
        lo, hi = offsets[c], offsets[c + 1]
        segment = perm[lo:hi].copy()
        local = np.argsort(-score[segment], kind="mergesort")
        for i in range(hi - lo):
            t = segment[local[i]]
            perm[lo + i] = t
            sorted_user[lo + i] = user[t]
            sorted_score[lo + i] = score[t]
    return sorted_user, sorted_score


@nb.njit(cache=True, nogil=True, inline="always")
def _ahead(keys, a, b):  # pragma: no cover - numba
    """Heap slot a's triple comes before slot b's in the global order: higher score, or the same and
    earlier input."""
    return keys[a, 0] > keys[b, 0] or (keys[a, 0] == keys[b, 0] and keys[a, 1] < keys[b, 1])


@nb.njit(cache=True, nogil=True)
def _sift_down(keys, size, i):  # pragma: no cover - numba
    """Restores the heap below slot i. A slot is one row (score, input index, clip) of its clip's next
    triple, the first in the global order on top: a node's two children share a cache line or two, where
    three separate arrays cost three misses a level once the heap outgrows the cache."""
    while True:
        left, first = 2 * i + 1, i
        if left < size and _ahead(keys, left, first):
            first = left
        if left + 1 < size and _ahead(keys, left + 1, first):
            first = left + 1
        if first == i:
            return
        for k in range(3):
            keys[first, k], keys[i, k] = keys[i, k], keys[first, k]
        i = first


@nb.njit(cache=True, nogil=True)
def _merge_greedy_kernel(  # pragma: no cover - numba
    offsets, perm, sorted_user, sorted_score, shift, list_size, user_cap, out, ptr, count, load
):
    """The global greedy as a merge of the clips' sorted candidates: a heap of clips keyed by each one's next
    triple yields the triples in global order (descending score, ties in input order); a pair is accepted
    while its clip has fewer than `list_size` users and its user fewer than `user_cap`. The clip on top
    keeps reading while its next triple still comes before every other clip's (no heap operation), and
    skips the triples whose users are already full (refused whenever read: loads only grow). A clip leaves
    the heap once full or out of triples (a full clip refuses the rest), so each clip is read only until it
    fills. It starts from the state it is given, each clip's next triple `ptr`, its list's length `count`
    and the users' `load` (updated in place; a clip's list goes on at out[c, count[c]]), and returns
    displaced: the refused pairs within their clip's uncapped top `list_size`. O(R + H log n_clips) for the
    R triples read and H <= R heap updates. `perm` holds each clip's triples in order (`_sort_buckets`),
    `sorted_user` / `sorted_score` their users and scores, so a clip's next triple costs independent reads,
    not a chain through `perm`. Indices travel as float64 in the heap: exact below 2**53 triples. A
    triple's key is its sorted score less its clip's `shift` (the margin's replacement score; zeros for the
    plain order), computed as it is read."""
    n_clips = out.shape[0]
    # the spare last row holds the top clip's next triple while it is compared with the runner-up
    keys = np.empty((n_clips + 1, 3), dtype=np.float64)
    size = 0
    for c in range(n_clips):
        if ptr[c] < offsets[c + 1] and count[c] < list_size:
            keys[size, 0] = sorted_score[ptr[c]] - shift[c]
            keys[size, 1] = perm[ptr[c]]
            keys[size, 2] = c
            size += 1
    for i in range(size // 2 - 1, -1, -1):
        _sift_down(keys, size, i)
    displaced = 0
    spare = n_clips
    while size > 0:
        c = np.int64(keys[0, 2])
        # the runner-up: the better child of the root (none: this clip is the last one)
        runner = 1 if size > 2 and _ahead(keys, 1, 2) else 2
        if runner >= size:
            runner = 1 if size > 1 else -1
        while True:
            u = sorted_user[ptr[c]]
            if load[u] < user_cap:
                out[c, count[c]] = u
                count[c] += 1
                load[u] += 1
            elif ptr[c] - offsets[c] < list_size:
                displaced += 1
            ptr[c] += 1
            if count[c] >= list_size:
                break
            while ptr[c] < offsets[c + 1] and load[sorted_user[ptr[c]]] >= user_cap:
                if ptr[c] - offsets[c] < list_size:
                    displaced += 1
                ptr[c] += 1
            if ptr[c] >= offsets[c + 1]:
                break
            keys[spare, 0] = sorted_score[ptr[c]] - shift[c]
            keys[spare, 1] = perm[ptr[c]]
            if runner >= 0 and _ahead(keys, runner, spare):
                break
        if count[c] < list_size and ptr[c] < offsets[c + 1]:
            keys[0, 0] = keys[spare, 0]
            keys[0, 1] = keys[spare, 1]
        else:
            size -= 1
            for k in range(3):
                keys[0, k] = keys[size, k]
        _sift_down(keys, size, 0)
    return displaced


def _merge_greedy(
    clip: np.ndarray,
    user: np.ndarray,
    score: np.ndarray,
    n_clips: int,
    n_users: int,
    list_size: int,
    user_cap: int,
    out: np.ndarray,
    shift: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The global greedy over the distinct pairs (each at its best score) in global order of score less its
    clip's `shift` (none: the score itself), filling `out`: (count, load, displaced) as
    `_merge_greedy_kernel`. It sorts within clips only, never the whole pool, and reads each clip only until
    it fills."""
    score = np.ascontiguousarray(score, dtype=np.float64)
    keep = _best_pair_kernel(clip, user, score, n_clips, n_users)
    if not keep.all():  # a subset keeps the input order, so ties still break by it
        clip, user, score = clip[keep], user[keep], score[keep]
    offsets, perm = key_buckets(clip, n_clips)
    order = PriorityOrder(offsets, perm, *_sort_buckets(offsets, perm, user, score))
    state = _empty_state(order, n_users)
    displaced = _merge_in_order(order, user_cap, out, shift, state)
    return state[1], state[2], displaced


@dataclass(frozen=True)
class PriorityOrder:
    """Each clip's pairs by descending priority, ties by pair index: clip c's pairs are perm[indptr[c]:
    indptr[c + 1]] (pair indices), with their users and priorities in `users` and `priority`. One order
    serves several greedies (`greedy_in_order`): the margin greedy shifts each clip's priorities by a
    constant, which keeps the order within the clip."""

    indptr: np.ndarray
    perm: np.ndarray
    users: np.ndarray
    priority: np.ndarray


def priority_order(pairs: tuple[np.ndarray, np.ndarray, np.ndarray], priority: np.ndarray) -> PriorityOrder:
    """The pairs of a `candidates_by_clip` CSR in each clip's descending `priority` (one per pair; ties by
    CSR position): one sort per clip, clips in parallel."""
    indptr, pair_users = pairs[0], pairs[1]
    priority = np.ascontiguousarray(priority, dtype=np.float64)
    perm = np.arange(priority.size, dtype=np.int32 if priority.size < 2**31 else np.int64)
    return PriorityOrder(indptr, perm, *_sort_buckets(indptr, perm, pair_users, priority))


@nb.njit(parallel=True, cache=True, nogil=True)
def _kth_in_order(indptr, sorted_score, k):  # pragma: no cover - numba
    """Each clip's k-th score of its sorted scores (its lowest when it has fewer; 0 when none)."""
    n_clips = indptr.size - 1
    out = np.zeros(n_clips, dtype=np.float64)
    for c in nb.prange(n_clips):
        lo, hi = indptr[c], indptr[c + 1]
        if hi > lo:
            out[c] = sorted_score[lo + min(hi - lo, k) - 1]
    return out


def margin_shift(order: PriorityOrder, list_size: int) -> np.ndarray:
    """(n_clips,) float64: each clip's replacement priority, its (list_size + 1)-th (its lowest when it has
    at most list_size pairs; 0 when none): `greedy_in_order` with this shift is the margin greedy."""
    return _kth_in_order(order.indptr, order.priority, list_size + 1)


@nb.njit(parallel=True, cache=True, nogil=True)
def _marked_first_kernel(indptr, perm, users, priority, marked, boost):  # pragma: no cover - numba
    """Within each clip, the pairs marked in `marked` (by pair index) move ahead of the rest, each group
    keeping its order; the marked pairs' priorities rise by `boost`. In place, clips in parallel. Returns
    how many pairs of each clip were marked."""
    counts = np.zeros(indptr.size - 1, dtype=np.int64)
    for c in nb.prange(indptr.size - 1):
        lo, hi = indptr[c], indptr[c + 1]
        n_marked = 0
        for i in range(lo, hi):
            if marked[perm[i]]:
                n_marked += 1
        counts[c] = n_marked
        if n_marked == 0:
            continue
        old_perm, old_users, old_priority = perm[lo:hi].copy(), users[lo:hi].copy(), priority[lo:hi].copy()
        first, rest = lo, lo + n_marked
        for i in range(hi - lo):
            if marked[old_perm[i]]:
                perm[first], users[first] = old_perm[i], old_users[i]
                priority[first] = old_priority[i] + boost
                first += 1
            else:
                perm[rest], users[rest], priority[rest] = old_perm[i], old_users[i], old_priority[i]
                rest += 1
    return counts


def marked_first(order: PriorityOrder, marked: np.ndarray) -> np.ndarray:
    """Reorders `order` in place so that, within each clip and across clips, the `marked` pairs (a bool per
    pair index) come before every other pair: their priorities rise by more than the priorities' range.
    Each group keeps its order, so this is the order of the raised priorities without a second sort (up
    to rounding: two marked priorities within a few ulps of each other may tie once raised). Returns the
    number of marked pairs of each clip (what `greedy_in_order` takes as `marked_ahead`)."""
    if not order.priority.size:
        return np.zeros(order.indptr.size - 1, dtype=np.int64)
    boost = order.priority.max() - order.priority.min() + 1.0
    return _marked_first_kernel(order.indptr, order.perm, order.users, order.priority, marked, boost)


@nb.njit(cache=True, nogil=True)
def _marked_pass_kernel(indptr, perm, users, priority, n_marked, user_cap, out, ptr, count, load):
    """The greedy over each clip's first n_marked[c] pairs, which come before every other pair in the global
    order and number at most `list_size` per clip: no clip can fill among them, so a user keeps its first
    `user_cap` marked pairs in the global order (descending priority, then pair index) and nothing else
    decides. Per user, not by a merge of the clips: a bucket of marked pairs per user, sorted only for the
    users over the cap. Fills `out`, `count`, `load` and sets `ptr` past the marked pairs; returns the
    refused (displaced) pairs."""
    n_clips = indptr.size - 1
    n_users = load.size
    per_user = np.zeros(n_users + 1, dtype=np.int64)
    for c in range(n_clips):
        for i in range(indptr[c], indptr[c] + n_marked[c]):
            per_user[users[i] + 1] += 1
    over = 0
    for u in range(n_users):
        if per_user[u + 1] > user_cap:
            over += per_user[u + 1]
        per_user[u + 1] += per_user[u]
    refused = np.zeros(users.size if over else 0, dtype=np.bool_)
    if over:
        fill = per_user[:-1].copy()
        bucket = np.empty(per_user[n_users], dtype=np.int64)
        for c in range(n_clips):
            for i in range(indptr[c], indptr[c] + n_marked[c]):
                u = users[i]
                bucket[fill[u]] = i
                fill[u] += 1
        for u in range(n_users):
            lo, hi = per_user[u], per_user[u + 1]
            if hi - lo > user_cap:
                mine = bucket[lo:hi]
                by_index = mine[np.argsort(perm[mine], kind="mergesort")]
                ranked = by_index[np.argsort(-priority[by_index], kind="mergesort")]
                for i in ranked[user_cap:]:
                    refused[i] = True
    displaced = 0
    for c in range(n_clips):
        lo = indptr[c]
        for i in range(lo, lo + n_marked[c]):
            if over and refused[i]:
                displaced += 1
            else:
                out[c, count[c]] = users[i]
                count[c] += 1
                load[users[i]] += 1
        ptr[c] = lo + n_marked[c]
    return displaced


def greedy_in_order(
    order: PriorityOrder,
    n_users: int,
    list_size: int = 100,
    user_cap: int = 100,
    fallback_order: np.ndarray | None = None,
    shift: np.ndarray | None = None,
    marked_ahead: np.ndarray | None = None,
) -> AssignmentResult:
    """The global greedy (`assign_with_cap` "global") over pairs already in each clip's priority order, the
    global order being priority less each clip's `shift` (`margin_shift`: the margin greedy); short clips
    filled from `fallback_order`. Reads the order, never changes it. `marked_ahead` (what `marked_first`
    returned, at most `list_size` a clip; no shift): the same lists, the marked pairs taken per user
    (`_marked_pass_kernel`) and only the rest merged across clips, which saves most of the merge when the
    marked pairs fill most lists."""
    n_clips = order.indptr.size - 1
    fallback = _checked_fallback(n_clips, n_users, list_size, user_cap, fallback_order)
    users = np.full((n_clips, list_size), -1, dtype=np.int32)
    state = _empty_state(order, n_users)
    displaced = 0
    if marked_ahead is not None:
        if shift is not None or (marked_ahead.size and marked_ahead.max() > list_size):
            raise ValueError("marked_ahead: at most list_size marked pairs a clip, and no shift")
        displaced = _marked_pass_kernel(
            order.indptr, order.perm, order.users, order.priority, marked_ahead, user_cap, users, *state
        )
    displaced += _merge_in_order(order, user_cap, users, shift, state)
    _, count, load = state
    return _filled(users, count, load, displaced, fallback, user_cap)


def _empty_state(order: PriorityOrder, n_users: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A greedy's state before it reads a pair: each clip's next pair, list length, each user's load."""
    n_clips = order.indptr.size - 1
    return order.indptr[:-1].copy(), np.zeros(n_clips, dtype=np.int64), np.zeros(n_users, dtype=np.int64)


def _merge_in_order(
    order: PriorityOrder,
    user_cap: int,
    out: np.ndarray,
    shift: np.ndarray | None,
    state: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> int:
    """`_merge_greedy_kernel` over an order from `state` (ptr, count, load; updated in place; `shift` none:
    zeros); returns the displaced pairs."""
    n_clips = order.indptr.size - 1
    shift = np.zeros(n_clips) if shift is None else np.ascontiguousarray(shift, dtype=np.float64)
    return _merge_greedy_kernel(
        order.indptr, order.perm, order.users, order.priority, shift, out.shape[1], user_cap, out, *state
    )


def assign_with_cap(
    clip: np.ndarray,
    user: np.ndarray,
    score: np.ndarray,
    n_clips: int,
    n_users: int,
    list_size: int = 100,
    user_cap: int = 100,
    fallback_order: np.ndarray | None = None,
    strategy: str = "margin",
) -> AssignmentResult:
    """Give every clip exactly `list_size` distinct users, no user more than `user_cap` clips, by global
    descending score over the candidate triples (see the module docstring for the algorithm and its limits).

    clip, user: (P,) integer indices in ``[0, n_clips)`` / ``[0, n_users)``; score: (P,) real, no NaN, larger
    is better, comparable across clips. Any number of triples per clip; a repeated (clip, user) pair keeps
    its best score. fallback_order: distinct user indices in preference order for the shortfall (default
    ``0..n_users-1``). Raises ValueError when the instance is infeasible (``n_clips * list_size >
    n_users * user_cap`` or ``n_users < list_size``) or the fill runs out of users for some clip.
    """
    fallback = _checked_fallback(n_clips, n_users, list_size, user_cap, fallback_order)
    clip, user, score = _check_triples(clip, user, score, n_clips, n_users)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    users = np.full((n_clips, list_size), -1, dtype=np.int32)
    if strategy in ("global", "margin"):
        shift = replacement_scores(clip, score, n_clips, list_size) if strategy == "margin" else None
        count, load, displaced = _merge_greedy(
            clip, user, score, n_clips, n_users, list_size, user_cap, users, shift
        )
    else:
        pairs = _distinct_by_clip(clip, user, score, n_clips, n_users)
        count, load, displaced = _slots_kernel(*pairs, n_users, list_size, user_cap, users)
    return _filled(users, count, load, displaced, fallback, user_cap)


def assign_pairs(
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    priority: np.ndarray,
    n_users: int,
    list_size: int = 100,
    user_cap: int = 100,
    fallback_order: np.ndarray | None = None,
    strategy: str = "margin",
) -> AssignmentResult:
    """`assign_with_cap` ("global" or "margin") of the pairs of a `candidates_by_clip` CSR under new scores
    (`priority`, one per pair, e.g. the pair scores less user prices): the same lists as `assign_with_cap`
    over the triples in CSR order, without its checks, de-duplication and bucketing (the CSR's pairs are
    distinct, grouped by clip)."""
    if strategy not in ("global", "margin"):
        raise ValueError(f"strategy must be 'global' or 'margin' over pairs, got {strategy!r}")
    order = priority_order(pairs, priority)
    shift = margin_shift(order, list_size) if strategy == "margin" else None
    return greedy_in_order(order, n_users, list_size, user_cap, fallback_order, shift)


def _checked_fallback(
    n_clips: int, n_users: int, list_size: int, user_cap: int, fallback_order: np.ndarray | None
) -> np.ndarray:
    """The fill's user order, checked (default 0..n_users-1), once the sizes are checked feasible."""
    if list_size < 1 or user_cap < 1:
        raise ValueError(f"list_size and user_cap must be >= 1 (got {list_size}, {user_cap})")
    problem = cap_infeasibility(n_clips, list_size, n_users, user_cap)
    if problem:
        raise ValueError(f"infeasible: {problem}")
    if fallback_order is None:
        return np.arange(n_users, dtype=np.int32)
    fallback = np.asarray(fallback_order)
    if fallback.ndim != 1 or (fallback.size and not np.issubdtype(fallback.dtype, np.integer)):
        raise ValueError(
            f"fallback_order must be a 1-d integer array (got {fallback.dtype}, {fallback.shape})"
        )
    if fallback.size and (int(fallback.min()) < 0 or int(fallback.max()) >= n_users):
        raise ValueError(f"fallback_order must hold user indices in [0, {n_users})")
    if np.unique(fallback).size != fallback.size:
        raise ValueError("fallback_order has repeated users")
    return fallback.astype(np.int32, copy=False)


def _filled(
    users: np.ndarray,
    count: np.ndarray,
    load: np.ndarray,
    displaced: int,
    fallback: np.ndarray,
    user_cap: int,
) -> AssignmentResult:
    """The greedy's lists with their short clips filled from `fallback` (step 3 of the module docstring)."""
    list_size = users.shape[1]
    n_from_candidates = int(count.sum())
    filled = _fill_kernel(users, count, load, fallback, user_cap)
    if filled < 0:
        c = -1 - filled
        raise ValueError(
            f"fill failed: clip index {c} has {int(count[c])} of {list_size} users and no user of "
            f"fallback_order ({fallback.size} users) is both under user_cap={user_cap} and new to it "
            "(fallback_order too short, or the instance is too tight for the greedy fill)"
        )
    return AssignmentResult(
        users=users,
        n_from_candidates=n_from_candidates,
        n_from_fallback=int(filled),
        n_displaced=int(displaced),
        user_load=load,
    )


def top_k_uncapped(clip: np.ndarray, user: np.ndarray, score: np.ndarray, n_clips: int, k: int) -> np.ndarray:
    """(n_clips, k) int32: each clip's top-k distinct users by descending score with no per-user cap (same
    order and tie-break as `assign_with_cap`), padded with -1 where a clip has fewer than k candidates."""
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    clip, user, score = _check_triples(clip, user, score, n_clips, None)
    n_users = int(user.max()) + 1 if user.size else 0
    indptr, users, _ = _distinct_by_clip(clip, user, score, n_clips, n_users)
    out = np.full((n_clips, k), -1, dtype=np.int32)
    _top_of_buckets(indptr, users, out)
    return out


@nb.njit(cache=True, nogil=True)
def _top_of_buckets(indptr, users, out):  # pragma: no cover - numba
    """Writes each clip's first out.shape[1] CSR users into its row of `out`; returns how many each got."""
    n_clips, list_size = out.shape
    count = np.zeros(n_clips, dtype=np.int64)
    for c in range(n_clips):
        k = min(indptr[c + 1] - indptr[c], list_size)
        for i in range(k):
            out[c, i] = users[indptr[c] + i]
        count[c] = k
    return count


def top_lists(
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_users: int,
    list_size: int = 100,
    fallback_order: np.ndarray | None = None,
) -> AssignmentResult:
    """The cap lifted: each clip's first `list_size` pairs of a `candidates_by_clip` CSR, short clips filled
    from `fallback_order`. The same lists as `assign_with_cap` with ``user_cap = n_clips`` (no user can then
    be refused) over the triples the CSR was made from, without a second sort."""
    indptr, users = pairs[0], pairs[1]
    n_clips = indptr.size - 1
    cap = max(n_clips, 1)
    fallback = _checked_fallback(n_clips, n_users, list_size, cap, fallback_order)
    out = np.full((n_clips, list_size), -1, dtype=np.int32)
    count = _top_of_buckets(indptr, users, out)
    load = np.bincount(out[out >= 0], minlength=n_users).astype(np.int64)
    return _filled(out, count, load, 0, fallback, cap)


def assign_pairs_by_slots(
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_users: int,
    list_size: int = 100,
    user_cap: int = 100,
    fallback_order: np.ndarray | None = None,
) -> AssignmentResult:
    """`assign_with_cap`'s "slots" draft over a `candidates_by_clip` CSR (the same lists as over the triples
    it was made from): one CSR then serves the capped and the uncapped lists (`top_lists`)."""
    indptr, users, scores = pairs
    n_clips = indptr.size - 1
    fallback = _checked_fallback(n_clips, n_users, list_size, user_cap, fallback_order)
    out = np.full((n_clips, list_size), -1, dtype=np.int32)
    count, load, displaced = _slots_kernel(indptr, users, scores, n_users, list_size, user_cap, out)
    return _filled(out, count, load, displaced, fallback, user_cap)
