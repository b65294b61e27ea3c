"""The assign stage: every method's candidates assigned under the cap (and without it) -> lists/<method>.npy;
on synthetic data also the oracle and the pool's ceiling; the Lagrangian bound of the final method's
assignment under its own scores -> lists/bound.json."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import polars as pl

from audience import progress, timing
from audience.assign import (
    assign_pairs,
    assign_pairs_by_slots,
    assign_with_cap,
    candidates_by_clip,
    top_lists,
)
from audience.candidates.popular import fallback_order
from audience.config import RunConfig
from audience.data.ids import unique_sorted
from audience.data.target_history import seen_pairs
from audience.evaluation.oracle import oracle_on_users
from audience.evaluation.report import ORACLE, POOL_CEILING, pool_ceiling_frame
from audience.io import atomic_path, write_json
from audience.matching import (
    BoundResult,
    assign_pairs_by_prices,
    expected_ndcg_weights,
    gain_pairs,
    list_gain,
    pairs_bound,
)
from audience.stages.run import Run, file_key


def oracle_frame(run: Run, target_ids: np.ndarray) -> tuple[pl.DataFrame, np.ndarray] | None:
    """The synthetic oracle's candidates on user indices, and the external ids those indices name: the
    run's users, then the truth week's users the run never indexed (so the ceiling keeps every user)."""
    return oracle_on_users(run.layout, run.split().truth_week_number, target_ids, run.catalog.users)


def list_user_ids(run: Run, method: str) -> np.ndarray:
    """External ids of the user indices in `method`'s lists (the run's users, or the oracle's own)."""
    path = run.path("lists", f"{file_key(method)}.user_ids.npy")
    return np.load(path) if path.is_file() else run.catalog.users.ids


def fill_unseen(
    frame: pl.DataFrame, clips: np.ndarray, users: np.ndarray, fallback: np.ndarray, list_size: int
) -> pl.DataFrame:
    """`frame` (clip, user, score) plus, for every clip with seen users (`clips`, `users`: the seen pairs),
    the first users of `fallback` it has not seen, enough for a full list, scored below every candidate: the
    assignment's shortfall fill (one global order) would otherwise hand a warm clip its own audience."""
    if clips.size == 0:
        return frame
    warm, n_seen = np.unique(clips, return_counts=True)
    depth = int(min(list_size + n_seen.max(), fallback.size))
    n_users = np.int64(max(int(fallback.max()), int(users.max())) + 1)
    seen_keys = unique_sorted(clips.astype(np.int64) * n_users + users)
    grid_users = np.broadcast_to(fallback[:depth], (warm.size, depth))
    keys = warm.astype(np.int64)[:, None] * n_users + grid_users
    keep = ~np.isin(keys, seen_keys)
    lowest = float(frame["score"].min()) if frame.height else 0.0
    position = np.broadcast_to(np.arange(depth), (warm.size, depth))
    fill = pl.DataFrame(
        {
            "clip": np.broadcast_to(warm[:, None], (warm.size, depth))[keep],
            "user": grid_users[keep],
            "score": (lowest - 1.0 - position[keep] / depth).astype(np.float32),
        }
    ).cast({"clip": frame.schema["clip"], "user": frame.schema["user"], "score": frame.schema["score"]})
    return pl.concat([frame.select("clip", "user", "score"), fill])


def ndcg_weighted(frame: pl.DataFrame, n_clips: int, list_size: int) -> pl.DataFrame:
    """`frame` with each score times its clip's expected-NDCG weight (`matching.expected_ndcg_weights`), when
    the scores read as probabilities (all in [0, 1]); unchanged otherwise (a ranking score has no
    expected number of positives)."""
    score = frame["score"].to_numpy()
    if score.size == 0 or score.min() < 0 or score.max() > 1:
        return frame
    clip = frame["clip"].to_numpy()
    weighted = score * expected_ndcg_weights(clip, score, n_clips, list_size)[clip]
    return frame.with_columns(pl.Series("score", weighted, dtype=frame.schema["score"]))


CANDIDATE_COLUMNS = ["clip", "user", "score"]  # what the assignment reads of a pool


def _assign(
    run: Run,
    method: str,
    load: Callable[[], pl.DataFrame],
    n_clips: int,
    fallback: np.ndarray,
    strategy: str,
    seen: tuple[np.ndarray, np.ndarray] | None,
    user_ids: np.ndarray | None = None,
) -> tuple[dict, BoundResult | None]:
    """Assign `method`'s candidates (`load()`: clip, user, score) with and without the cap and save both;
    returns the report and, for the "prices" strategy, the Lagrangian bound it computed on the way when it
    is the bound of the loaded pairs (None when the warm fill added pairs). `seen` (clip rows, users of the
    targets' fit-week audience, or None): a short warm list is filled with fallback users who have not seen
    the clip. `user_ids` (default the run's users) are the external ids of the frame's user indices, saved
    beside the lists when they differ. The frame is loaded here and dropped once the pairs are sorted by
    clip (`assign.candidates_by_clip`), which then serve both assignments."""
    cfg = run.cfg
    frame = load()
    n_pairs = frame.height
    if seen is not None:
        frame = fill_unseen(frame, *seen, fallback, cfg.list_size)
    filled = frame.height != n_pairs
    clip, user, score = (frame[c].to_numpy() for c in ("clip", "user", "score"))
    del frame
    n_users = run.catalog.n_users if user_ids is None else len(user_ids)

    bound = None
    if strategy == "prices":
        pairs = gain_pairs(clip, user, _non_negative(score), n_clips, n_users)
        del clip, user, score
        result, bound = assign_pairs_by_prices(
            pairs,
            n_users,
            cfg.list_size,
            cfg.user_cap,
            fallback_order=fallback,
            steps=cfg.bound_steps,
            primal_every=cfg.primal_every,
        )
    elif strategy == "slots":
        pairs = candidates_by_clip(clip, user, score, n_clips, n_users)
        del clip, user, score
        result = assign_pairs_by_slots(pairs, n_users, cfg.list_size, cfg.user_cap, fallback)
    else:
        pairs = candidates_by_clip(clip, user, score, n_clips, n_users)
        if pairs[1].size == clip.size and not np.any(clip[1:] < clip[:-1]):
            # grouped by clip with no repeated pair (as the stages write pools): the CSR breaks ties as the
            # triples' order does, so its one sort serves both assignments
            result = assign_pairs(pairs, pairs[2], n_users, cfg.list_size, cfg.user_cap, fallback, strategy)
        else:
            result = assign_with_cap(
                clip, user, score, n_clips, n_users, cfg.list_size, cfg.user_cap, fallback, strategy
            )
        del clip, user, score
    # the cap lifted (every strategy then gives each clip its top list), so cap_cost measures the cap alone
    uncapped = top_lists(pairs, n_users, cfg.list_size, fallback).users
    del pairs
    saved = {"capped": result.users, "uncapped": uncapped}
    if user_ids is not None and len(user_ids) != run.catalog.n_users:
        saved["user_ids"] = user_ids
    else:
        run.path("lists", f"{file_key(method)}.user_ids.npy").unlink(missing_ok=True)
    for name, array in saved.items():
        with atomic_path(run.path("lists", f"{file_key(method)}.{name}.npy")) as tmp, open(tmp, "wb") as fh:
            np.save(fh, array if name == "user_ids" else array.astype(np.int32))
    report = {
        "from_candidates": int(result.n_from_candidates),
        "from_fallback": int(result.n_from_fallback),
        "displaced_by_cap": int(result.n_displaced),
        "max_user_load": int(result.user_load.max()),
    }
    return report, None if filled else bound


def run_strategy(cfg: RunConfig, method: str) -> str:
    """The assignment of `method`'s lists: `final_assignment` for the final method, else `assignment`."""
    return cfg.final_assignment if method == cfg.final_method else cfg.assignment


def _non_negative(score: np.ndarray) -> np.ndarray:
    """Scores as float64, shifted to start at 0 when some are negative (the gain model reads them as
    probabilities; the shift in float64 keeps their order)."""
    score = np.asarray(score, dtype=np.float64)
    low = float(score.min()) if score.size else 0.0
    return score - low if low < 0 else score


def assignment_bound(run: Run, method: str, frame: pl.DataFrame, n_clips: int) -> dict:
    """The Lagrangian bound (matching.py) on the gain of `method`'s capped assignment under its own scores
    (`frame`: its candidates), with the gain of its uncapped top lists and of the lists the assign stage
    chose."""
    cfg = run.cfg
    start = time.perf_counter()
    score = _non_negative(frame["score"].to_numpy())
    n_users = run.catalog.n_users
    pairs = gain_pairs(frame["clip"].to_numpy(), frame["user"].to_numpy(), score, n_clips, n_users)
    del score  # the pairs hold their own sorted copy
    bound = pairs_bound(pairs, n_users, cfg.list_size, cfg.user_cap, cfg.bound_steps)
    capped = np.load(run.path("lists", f"{file_key(method)}.capped.npy"))
    return bound_report(method, bound, list_gain(capped, pairs, n_users), time.perf_counter() - start)


def bound_report(method: str, bound: BoundResult, gain: float, seconds: float) -> dict:
    """lists/bound.json: the bound, the gains of the uncapped and the chosen capped lists, the gap."""
    return {
        "method": method,
        "bound": bound.bound,
        "uncapped_gain": bound.uncapped,
        "capped_gain": gain,
        "gap_to_bound": 1.0 - gain / bound.bound if bound.bound > 0 else 0.0,
        "steps": bound.steps,
        "seconds": round(seconds, 2),
    }


def stage_assign(run: Run) -> None:
    cfg = run.cfg
    targets = run.targets()
    n_clips = targets.height
    fallback = fallback_order(run.fit_counts(), run.catalog)
    item_ids = targets["item_id"].to_numpy()
    seen = seen_pairs(run.target_history(), item_ids, run.catalog) if cfg.exclude_seen else None

    def method_pool(method: str) -> Callable[[], pl.DataFrame]:
        def load() -> pl.DataFrame:
            frame = run.candidates(method, columns=CANDIDATE_COLUMNS)
            if method == cfg.final_method and cfg.ndcg_weights:
                frame = ndcg_weighted(frame, n_clips, cfg.list_size)
            return frame

        return load

    report = {}
    bound_json = None  # from the final method's priced assignment, when it returns one
    for m in progress.iterate(cfg.methods, "assign", "method"):
        strategy = run_strategy(cfg, m)
        start = time.perf_counter()
        with timing.substep(f"{m} ({strategy})"):
            report[m], bound = _assign(run, m, method_pool(m), n_clips, fallback, strategy, seen)
        if m == cfg.final_method and bound is not None:
            bound_json = bound_report(m, bound, bound.best_gain, time.perf_counter() - start)
    oracle = oracle_frame(run, item_ids)
    if oracle is not None:
        # the oracle's scores are all ties: it is always drafted by slots, so the ceiling the methods are
        # measured against does not move with the strategy under test
        with timing.substep("oracle and pool ceiling (slots)"):
            oracle_pool, user_ids = oracle
            del oracle

            def ceiling() -> pl.DataFrame:
                pool = run.candidates(cfg.final_method, columns=["clip", "user", "rank"])
                return pool_ceiling_frame(pool, oracle_pool)

            for name, load in ((ORACLE, lambda: oracle_pool), (POOL_CEILING, ceiling)):
                report[name] = _assign(run, name, load, n_clips, fallback, "slots", seen, user_ids)[0]
            del oracle_pool
    write_json(report, run.path("lists", "assignment.json"))
    if bound_json is None:  # another strategy, or warm targets (the fill's pairs are not the final frame's)
        with timing.substep("bound"):
            bound_json = assignment_bound(run, cfg.final_method, method_pool(cfg.final_method)(), n_clips)
    write_json(bound_json, run.path("lists", "bound.json"))
