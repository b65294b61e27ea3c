"""Time the metric and the assignment at challenge scale; prints one line each, writes nothing.

    .venv/bin/python benchmarks/bench_ndcg.py

* ndcg_per_clip: 50,000 clips x 100 users against a 10-million-row truth frame (about 3% of the predicted
  pairs are hits, the rest of the truth is other users of the same clips, plus about 1% duplicate rows).
* assign_with_cap: 50,000 clips x 300 candidates over 100,000 users whose popularity is skewed, so the cap
  of 100 lists per user binds.

Each is timed as the best of 3 runs after one warm-up run (the warm-up also loads or compiles numba code).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import numpy as np
import polars as pl

from audience.assign import assign_with_cap
from audience.config import STRATEGIES
from audience.metrics import ndcg_per_clip

SEED = 20250101
N_CLIPS = 50_000
LIST_SIZE = 100
N_TRUTH = 10_000_000
N_USERS_METRIC = 2_000_000
HIT_RATE = 0.03
N_CANDIDATES = 300
N_USERS_ASSIGN = 100_000


def best_of(fn: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    result = fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def metric_inputs(rng: np.random.Generator) -> tuple[pl.DataFrame, pl.DataFrame]:
    items = rng.choice(np.iinfo(np.uint32).max, N_CLIPS, replace=False).astype(np.uint32)
    # lists drawn with replacement: a repeated user inside a list is rare (~0.25% of lists) and allowed here
    users = rng.integers(0, N_USERS_METRIC, (N_CLIPS, LIST_SIZE), dtype=np.uint32)
    predictions = pl.DataFrame(
        {
            "item_id": pl.Series(items, dtype=pl.UInt32),
            "user_id": pl.Series(users.reshape(-1)).reshape((N_CLIPS, LIST_SIZE)).cast(pl.List(pl.UInt32)),
        }
    )
    hit = rng.random((N_CLIPS, LIST_SIZE)) < HIT_RATE
    n_hits = int(hit.sum())
    n_dup = N_TRUTH // 100
    n_rest = N_TRUTH - n_hits - n_dup
    weight = rng.lognormal(0.0, 1.0, N_CLIPS)  # some clips have many more positives than others
    rest_clip = rng.choice(N_CLIPS, n_rest, p=weight / weight.sum())
    truth_item = np.concatenate([np.repeat(items, LIST_SIZE)[hit.ravel()], items[rest_clip]])
    truth_user = np.concatenate(
        [users.ravel()[hit.ravel()], rng.integers(0, N_USERS_METRIC, n_rest, dtype=np.uint32)]
    )
    dup = rng.integers(0, truth_item.size, n_dup)
    truth_item = np.concatenate([truth_item, truth_item[dup]])
    truth_user = np.concatenate([truth_user, truth_user[dup]])
    order = rng.permutation(truth_item.size)
    truth = pl.DataFrame(
        {
            "item_id": pl.Series(truth_item[order], dtype=pl.UInt32),
            "user_id": pl.Series(truth_user[order], dtype=pl.UInt32),
        }
    )
    return predictions, truth


def assign_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    popularity = 1.0 / np.arange(1, N_USERS_ASSIGN + 1) ** 0.8
    clip = np.repeat(np.arange(N_CLIPS, dtype=np.int32), N_CANDIDATES)
    user = rng.choice(N_USERS_ASSIGN, clip.size, p=popularity / popularity.sum()).astype(np.int32)
    score = rng.random(clip.size)
    return clip, user, score


def main() -> None:
    rng = np.random.default_rng(SEED)
    machine = f"{os.cpu_count()} cpus, {platform.platform()}, {platform.processor() or platform.machine()}"
    versions = f"python {platform.python_version()}, polars {pl.__version__}, numpy {np.__version__}"

    predictions, truth = metric_inputs(rng)
    seconds, per_clip = best_of(lambda: ndcg_per_clip(predictions, truth, k=LIST_SIZE))
    mean = per_clip.get_column("ndcg").mean()
    print(
        f"ndcg_per_clip: {N_CLIPS:,} clips x {LIST_SIZE} users vs {truth.height:,} truth rows: "
        f"best of 3 = {seconds:.3f} s (mean ndcg {mean:.4f}, {per_clip.height:,} clips scored) "
        f"| {machine} | {versions}"
    )

    clip, user, score = assign_inputs(rng)
    for strategy in STRATEGIES:
        seconds, result = best_of(
            lambda s=strategy: assign_with_cap(clip, user, score, N_CLIPS, N_USERS_ASSIGN, strategy=s)
        )
        print(
            f"assign_with_cap[{strategy}]: {N_CLIPS:,} clips x {N_CANDIDATES} candidates ({clip.size:,} "
            f"triples), {N_USERS_ASSIGN:,} users, list 100, cap 100: best of 3 = {seconds:.3f} s "
            f"(from candidates {result.n_from_candidates:,}, fallback {result.n_from_fallback:,}, "
            f"displaced {result.n_displaced:,}) | {machine}"
        )


if __name__ == "__main__":
    main()
