"""The cap-aware assignment as a b-matching: an upper bound on what any assignment can gain, and an
assignment guided by the bound's user prices.

The problem: every clip c gets at most `list_size` distinct users from its candidates (the fill tops lists
up with users the model scores 0), no user is in more than `user_cap` lists, and the gain of a list is
sum_k d_k s(c, u_k) with d_k = 1 / log2(k + 1): a pair's score (its probability) times its position's
discount, i.e. the list's expected DCG when scores are calibrated. The gain of an assignment is the sum over
clips.

The bound (`lagrangian_bound`). With one price lambda_u >= 0 per user on the cap,
    D(lambda) = user_cap x sum_u lambda_u + sum_c max_{list of c} sum_k (d_k s(c, u_k) - lambda_{u_k})
is at least the gain of every feasible assignment (weak duality: each cap term is non-negative there).
A clip's inner maximum is solved exactly by a dynamic programme over its candidates in descending score
order (`_dual_kernel`: a chosen set is best placed in score order, so choosing a subsequence is enough),
O(candidates x list_size) per clip, clips in parallel, with two exact cuts. A candidate x is skipped once
the programme has read `list_size` candidates priced no higher: a list of at most `list_size` users that
holds x leaves one of them out, and swapping x for it raises no price and lowers no position's score, so
some optimal list holds no such x (after the `list_size`-th unpriced candidate every later one is skipped:
the programme stops). x is tried only at positions whose discount keeps it above its price: dropping an x
that adds d_k s - lambda <= 0 moves the users below it up a position. Where the cap binds on few users, each
clip's programme reads little more than its top `list_size`; where it binds on many, a priced candidate
costs a heap test, and a pass over the positions where it still pays. The prices are lowered by projected
subgradient steps (Polyak's step towards the best assignment found): g_u = user_cap - (lists that want u).

The assignment (`assign_by_prices`). Every few steps, and on the lowest bound's prices at the end, the greedy
of `assign.assign_with_cap` runs on the priced scores s(c, u) - lambda_u with the clips' own best lists
under the prices taken first (a repair: a user the prices leave over the cap keeps its best-priced lists,
the freed slots go to the next priced candidates). Step 0 (no prices) also runs the plain "global" and
"margin" greedies, so the result never gains less than either; under prices they gained less than the
repair at every step of every pool measured, so they do not run again. Each list is then put back in
descending score order and scored; the best assignment seen is returned with the bound.

Limits: each dual step costs one pass of the programme, at most P x list_size operations for P candidate
pairs, in practice far less (the cuts above); each primal step sorts every clip's candidates by priced score
once (`assign.priority_order`) and runs its greedies over that one order (the margin greedy shifts a clip's
keys by a constant and the repair moves the clip's chosen pairs ahead, neither of which needs a sort of its
own); the repair takes the chosen pairs user by user and merges only the rest across clips. Memory: the CSR
of the pairs (16 bytes a pair) plus per-clip programme tables of candidates x list_size bytes. Subgradient
steps converge slowly near the optimum: the bound returned is the lowest seen, valid whatever the number of
steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba as nb
import numpy as np

from audience import progress
from audience.assign import (
    AssignmentResult,
    candidates_by_clip,
    greedy_in_order,
    margin_shift,
    marked_first,
    priority_order,
)

__all__ = [
    "BoundResult",
    "assign_by_prices",
    "assign_pairs_by_prices",
    "discounts",
    "expected_ndcg_weights",
    "gain_pairs",
    "lagrangian_bound",
    "list_gain",
    "pairs_bound",
]


def discounts(list_size: int) -> np.ndarray:
    """(list_size,) float64: the NDCG position discounts 1 / log2(k + 1), k = 1..list_size."""
    return 1.0 / np.log2(np.arange(2, list_size + 2, dtype=np.float64))


def expected_ndcg_weights(clip: np.ndarray, score: np.ndarray, n_clips: int, list_size: int) -> np.ndarray:
    """(n_clips,) float64: 1 / IDCG of each clip's expected positives, the sum of its candidates' scores
    (probabilities), clipped to [1, list_size] and interpolated between whole counts. NDCG divides a
    clip's DCG by its IDCG, so a probability on a clip with few expected positives is worth more than the
    same probability on a clip with many: scaling scores by this weight makes the cross-clip gain the
    expected NDCG's, not the DCG's. Limits: the sum covers the candidates only, so it undercounts a clip
    whose audience lies mostly outside them; scores inflated by negative sampling inflate it too."""
    expected = np.bincount(clip, weights=np.asarray(score, dtype=np.float64), minlength=n_clips)
    count = np.clip(expected, 1.0, float(list_size))
    cumulative = np.concatenate([[0.0], np.cumsum(discounts(list_size))])
    whole = np.floor(count).astype(np.int64)
    nxt = np.minimum(whole + 1, list_size)
    idcg = cumulative[whole] + (count - whole) * (cumulative[nxt] - cumulative[whole])
    return 1.0 / idcg


@nb.njit(cache=True, nogil=True, inline="always")
def _heap_push(heap, size, value):  # pragma: no cover - numba
    """Adds `value` to the max-heap heap[:size] (which then holds size + 1 values)."""
    i = size
    heap[i] = value
    while i > 0:
        parent = (i - 1) // 2
        if heap[parent] >= heap[i]:
            break
        heap[parent], heap[i] = heap[i], heap[parent]
        i = parent


@nb.njit(cache=True, nogil=True, inline="always")
def _heap_replace_top(heap, size, value):  # pragma: no cover - numba
    """Replaces the largest value of the max-heap heap[:size] by `value` (not larger) and restores it."""
    heap[0] = value
    i = 0
    while True:
        left, largest = 2 * i + 1, i
        if left < size and heap[left] > heap[largest]:
            largest = left
        if left + 1 < size and heap[left + 1] > heap[largest]:
            largest = left + 1
        if largest == i:
            break
        heap[largest], heap[i] = heap[i], heap[largest]
        i = largest


@nb.njit(parallel=True, cache=True, nogil=True)
def _dual_kernel(indptr, users, scores, prices, disc, chosen):  # pragma: no cover - numba
    """Per clip, the best list under `prices` (value of the inner maximum; `chosen` marks its pairs)."""
    n_clips = indptr.size - 1
    list_size = disc.size
    values = np.zeros(n_clips, dtype=np.float64)
    for c in nb.prange(n_clips):
        lo, hi = indptr[c], indptr[c + 1]
        n = hi - lo
        for j in range(n):
            chosen[lo + j] = False
        cap_k = min(n, list_size)
        if cap_k == 0:
            continue
        best = np.full(cap_k + 1, -np.inf)
        best[0] = 0.0
        read = np.empty(n, dtype=np.int64)  # the candidates the programme reads, in order
        tops = np.empty(n, dtype=np.int64)  # the last position each read candidate was tried at
        take = np.empty((n, cap_k + 1), dtype=np.bool_)  # rows by read order, valid up to their top
        n_read = 0
        reach = 0  # the most pairs any state holds so far
        gain = np.empty(cap_k)  # best[k] + d_(k+1) s - p: the value of the candidate at position k + 1
        cheapest = np.empty(cap_k)  # max-heap of the cap_k lowest prices read so far
        n_cheap = 0
        for j in range(n):
            s = scores[lo + j]
            p = prices[users[lo + j]]
            if s <= p:  # worth less than its price at every position: never in an optimal list
                continue
            if n_cheap == cap_k:
                if cheapest[0] == 0.0:  # cap_k unpriced candidates read: every later one is dominated
                    break
                if p >= cheapest[0]:  # cap_k candidates score as high at no higher price: dominated
                    continue
                _heap_replace_top(cheapest, cap_k, p)
            else:
                _heap_push(cheapest, n_cheap, p)
                n_cheap += 1
            top = min(reach + 1, cap_k)
            if p > 0.0:  # x at a position whose discount leaves it at most its price: drop it instead
                while top > 0 and disc[top - 1] * s <= p:
                    top -= 1
            reach = max(reach, top)
            # best[k] = max(best[k], best[k - 1] + d_k s - p) for k = top..1 reads only old values: two flat
            # loops the compiler vectorises
            for k in range(top):
                gain[k] = best[k] + disc[k] * s - p
            row = take[n_read]
            for k in range(1, top + 1):
                better = gain[k - 1] > best[k]
                row[k] = better
                best[k] = gain[k - 1] if better else best[k]
            tops[n_read] = top
            read[n_read] = j
            n_read += 1
        k_best = 0
        for k in range(1, cap_k + 1):
            if best[k] > best[k_best]:
                k_best = k
        values[c] = best[k_best]
        k = k_best
        for r in range(n_read - 1, -1, -1):
            if k == 0:
                break
            if k <= tops[r] and take[r, k]:
                chosen[lo + read[r]] = True
                k -= 1
    return values


@nb.njit(cache=True, nogil=True)
def _slot_scores(indptr, users, scores, lists, n_users):  # pragma: no cover - numba
    """(n_clips, list_size) float64: each listed user's score for its clip (0 when not a candidate)."""
    n_clips, list_size = lists.shape
    out = np.zeros((n_clips, list_size), dtype=np.float64)
    where = np.full(n_users, -1, dtype=np.int64)
    for c in range(n_clips):
        for i in range(indptr[c], indptr[c + 1]):
            where[users[i]] = i
        for k in range(list_size):
            u = lists[c, k]
            if u >= 0:
                i = where[u]
                if i >= indptr[c] and i < indptr[c + 1] and users[i] == u:
                    out[c, k] = scores[i]
        for i in range(indptr[c], indptr[c + 1]):
            where[users[i]] = -1
    return out


def list_gain(lists: np.ndarray, pairs: tuple[np.ndarray, np.ndarray, np.ndarray], n_users: int) -> float:
    """Total gain sum_c sum_k d_k s(c, lists[c, k]) of an assignment under the pair scores (`pairs`: the
    CSR of `assign.candidates_by_clip`); users not among a clip's candidates count 0."""
    indptr, users, scores = pairs
    slot = _slot_scores(indptr, users, scores, np.ascontiguousarray(lists, dtype=np.int32), n_users)
    return _discounted_total(slot)


def _discounted_total(slot: np.ndarray) -> float:
    """sum_c sum_k d_k slot[c, k]: the gain of lists whose pairs score `slot` (clips x positions)."""
    return float((slot * discounts(slot.shape[1])[None, :]).sum())


def _sorted_by_score(lists: np.ndarray, pairs: tuple, n_users: int) -> tuple[np.ndarray, float]:
    """Each row by descending pair score (a stable sort: fill users, scored 0, keep their order last), and
    the sorted lists' `list_gain`, from one pass over the pairs."""
    indptr, users, scores = pairs
    slot = _slot_scores(indptr, users, scores, lists, n_users)
    order = np.argsort(-slot, axis=1, kind="stable")
    sorted_slot = np.take_along_axis(slot, order, axis=1)
    return np.take_along_axis(lists, order, axis=1), _discounted_total(sorted_slot)


@dataclass(frozen=True)
class BoundResult:
    """bound: the lowest D(lambda) seen (no assignment gains more); uncapped: the gain with the cap lifted
    (every clip its top list); prices: the user prices at the bound; best_gain: the best assignment's gain
    found by the priced greedy (0 when none was run); steps: dual steps taken."""

    bound: float
    uncapped: float
    prices: np.ndarray
    best_gain: float
    steps: int


def _subgradient(
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_users: int,
    list_size: int,
    user_cap: int,
    steps: int,
    primal,
    primal_every: int,
) -> tuple[BoundResult, object]:
    """Projected subgradient on the prices; `primal(prices, chosen) -> (gain, assignment)` (`chosen`: the
    pairs of the clips' best lists under the prices) is called on the first step, every `primal_every`
    steps after, and on the best bound's prices at the end. Returns the bound and the best primal's
    assignment."""
    indptr, users, scores = pairs
    disc = discounts(list_size)
    prices = np.zeros(n_users, dtype=np.float64)
    chosen = np.zeros(users.size, dtype=np.bool_)
    best_bound, best_prices, uncapped = np.inf, prices.copy(), 0.0
    best_gain, best_assignment = -np.inf, None
    theta, stall, best_step = 1.0, 0, 0
    with progress.bar(
        "priced assignment" if primal is not None else "assignment bound", steps, "step"
    ) as report:
        for step in range(steps):
            report.update(1)
            values = _dual_kernel(indptr, users, scores, prices, disc, chosen)
            dual = user_cap * prices.sum() + values.sum()
            if step == 0:
                uncapped = float(values.sum())
            if step == 0 or dual < best_bound - 1e-12 * max(abs(best_bound), 1.0):
                best_bound, best_prices, best_step, stall = dual, prices.copy(), step, 0
            else:
                stall += 1
                if stall >= 4:
                    theta, stall = theta / 2, 0
            if primal is not None and step % primal_every == 0:
                gain, assignment = primal(prices, chosen)
                if assignment is not None and gain > best_gain:
                    best_gain, best_assignment = gain, assignment
            load = np.bincount(users[chosen], minlength=n_users)
            grad = (user_cap - load).astype(np.float64)
            grad[(prices <= 0) & (grad > 0)] = 0.0  # projected: a free user's price stays at 0
            norm = float(grad @ grad)
            if norm == 0.0:  # the priced lists respect the cap: they are optimal
                break
            target = best_gain if np.isfinite(best_gain) else 0.0
            gap = max(best_bound - target, 1e-9 * max(best_bound, 1.0))
            prices = np.maximum(prices - theta * gap / norm * grad, 0.0)
    if primal is not None and steps and best_step % primal_every:
        # the best bound's prices, once more (with the clips' best lists under them)
        _dual_kernel(indptr, users, scores, best_prices, disc, chosen)
        gain, assignment = primal(best_prices, chosen)
        if assignment is not None and gain > best_gain:
            best_gain, best_assignment = gain, assignment
    result = BoundResult(
        float(best_bound), uncapped, best_prices, float(max(best_gain, 0.0)), step + 1 if steps else 0
    )
    return result, best_assignment


def lagrangian_bound(
    clip: np.ndarray,
    user: np.ndarray,
    score: np.ndarray,
    n_clips: int,
    n_users: int,
    list_size: int = 100,
    user_cap: int = 100,
    steps: int = 40,
) -> BoundResult:
    """Upper bound on the gain of any cap-respecting assignment of these candidate triples (module
    docstring). Scores must be >= 0 (probabilities)."""
    pairs = gain_pairs(clip, user, score, n_clips, n_users)
    return pairs_bound(pairs, n_users, list_size, user_cap, steps)


def pairs_bound(
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_users: int,
    list_size: int = 100,
    user_cap: int = 100,
    steps: int = 40,
) -> BoundResult:
    """`lagrangian_bound` of the CSR that `gain_pairs` made (one sort serves the bound and `list_gain`)."""
    return _subgradient(pairs, n_users, list_size, user_cap, steps, None, 1)[0]


def gain_pairs(
    clip: np.ndarray, user: np.ndarray, score: np.ndarray, n_clips: int, n_users: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The triples as `assign.candidates_by_clip`'s CSR, scores checked >= 0 (the gain reads them as
    probabilities)."""
    score = np.asarray(score, dtype=np.float64)
    if score.size and score.min() < 0:
        raise ValueError(f"scores must be >= 0 (probabilities) for the gain bound; found {score.min()}")
    return candidates_by_clip(clip, user, score, n_clips, n_users)


def assign_by_prices(
    clip: np.ndarray,
    user: np.ndarray,
    score: np.ndarray,
    n_clips: int,
    n_users: int,
    list_size: int = 100,
    user_cap: int = 100,
    fallback_order: np.ndarray | None = None,
    steps: int = 40,
    primal_every: int = 10,
) -> tuple[AssignmentResult, BoundResult]:
    """The best priced-greedy assignment over the subgradient's prices, and the bound (module docstring).
    Inputs as `assign.assign_with_cap` (scores >= 0); lists hold candidates by descending score, then the
    fill."""
    pairs = gain_pairs(clip, user, score, n_clips, n_users)
    return assign_pairs_by_prices(pairs, n_users, list_size, user_cap, fallback_order, steps, primal_every)


def assign_pairs_by_prices(
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_users: int,
    list_size: int = 100,
    user_cap: int = 100,
    fallback_order: np.ndarray | None = None,
    steps: int = 40,
    primal_every: int = 10,
) -> tuple[AssignmentResult, BoundResult]:
    """`assign_by_prices` of the CSR that `gain_pairs` made: the caller keeps the CSR (for the uncapped
    lists, `assign.top_lists`) and may drop the triples first. Each primal step holds one sorted order of
    the pairs besides the CSR (16 bytes a pair; 24 while the priced scores are sorted)."""
    _, users, scores = pairs
    n_clips = pairs[0].size - 1

    def scored(greedy: Callable[[], AssignmentResult]) -> tuple[float, AssignmentResult] | None:
        try:
            result = greedy()
        except ValueError:  # the greedy fill ran out of users on a tight instance
            return None
        lists, gain = _sorted_by_score(result.users, pairs, n_users)
        result = AssignmentResult(
            lists, result.n_from_candidates, result.n_from_fallback, result.n_displaced, result.user_load
        )
        return gain, result

    def primal(prices: np.ndarray, chosen: np.ndarray):
        priced = prices[users]
        np.subtract(scores, priced, out=priced)
        order = priority_order(pairs, priced)  # one sort per clip serves every greedy of the step
        del priced

        def greedy(shift: np.ndarray | None = None, ahead: np.ndarray | None = None) -> AssignmentResult:
            return greedy_in_order(order, n_users, list_size, user_cap, fallback_order, shift, ahead)

        # the plain greedies once, with no prices: under prices the repair gained more at every step of
        # every pool measured (docs/experiments.md, nineteenth round)
        unpriced = not prices.any()
        tries = [scored(greedy), scored(lambda: greedy(margin_shift(order, list_size)))] if unpriced else []
        # the repair: the clips' own best lists under the prices first (a user over the cap keeps its
        # best-priced lists), then the rest by priced score
        ahead = marked_first(order, chosen)
        tries = [t for t in [*tries, scored(lambda: greedy(ahead=ahead))] if t is not None]
        return max(tries, key=lambda pair: pair[0]) if tries else (-np.inf, None)

    bound, best = _subgradient(pairs, n_users, list_size, user_cap, steps, primal, primal_every)
    if best is None:
        raise ValueError(
            f"no priced greedy could fill every list ({n_clips} clips x {list_size} users, cap {user_cap}, "
            f"{n_users} users): the instance is too tight for the greedy fill"
        )
    return best, bound
