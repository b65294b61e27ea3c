"""The reranker's boosting on a Dask cluster with xgboost.dask (the LocalBoosting twin, rank/_booster.py).

A training matrix is cut into partitions of whole clips (a query group never straddles two partitions, as
XGBoost's ranking metrics need) of about `partition_rows` rows, scattered to the workers; xgboost.dask
trains on the workers holding partitions (its collective reduces the gradient histograms across them).
A frame of at most `partition_rows` rows is one partition, trained by one worker: the same model as the
local engine's. With several partitions the histogram cuts come from merged per-worker sketches, so the
trees can differ slightly from a single machine's. Memory: each worker holds its partitions (rows x
features x 4 bytes) and XGBoost's quantised copy (rows x features bytes); the client holds the frame it
cut them from. A worker lost during boosting stops the training (XGBoost's collective does not resume);
the stage fails with the worker's error.
"""

from __future__ import annotations

import itertools

import numpy as np
import xgboost as xgb

from audience import progress


def group_partitions(qid: np.ndarray, partition_rows: int) -> list[tuple[int, int]]:
    """(start, end) row ranges of about `partition_rows` rows each, cut only where `qid` (sorted) changes."""
    n = qid.shape[0]
    if n == 0:
        return [(0, 0)]
    starts = np.flatnonzero(np.r_[True, qid[1:] != qid[:-1]])
    bounds = [0]
    while bounds[-1] < n:
        target = bounds[-1] + partition_rows
        if target >= n:
            bounds.append(n)
            break
        cut = starts[np.searchsorted(starts, target)] if target <= starts[-1] else n
        bounds.append(int(cut) if cut > bounds[-1] else n)
    return list(itertools.pairwise(bounds))


class DaskBoosting:
    def __init__(self, client, partition_rows: int):
        self.client, self.partition_rows = client, partition_rows

    def _array(self, values: np.ndarray, ranges: list[tuple[int, int]]):
        import dask
        import dask.array as da

        chunks = [values[lo:hi] for lo, hi in ranges]
        futures = self.client.scatter(chunks)
        return da.concatenate(
            [
                da.from_delayed(dask.delayed(f), shape=c.shape, dtype=c.dtype)
                for f, c in zip(futures, chunks, strict=True)
            ]
        )

    def matrix(self, data: np.ndarray, label: np.ndarray | None, qid: np.ndarray, features: list[str]):
        import xgboost.dask as dxgb

        if np.any(qid[1:] < qid[:-1]):
            raise ValueError("dask boosting: rows must be sorted by clip (qid)")
        ranges = group_partitions(qid, self.partition_rows)
        return dxgb.DaskDMatrix(
            self.client,
            self._array(data, ranges),
            label=None if label is None else self._array(label, ranges),
            qid=self._array(qid, ranges),
            feature_names=features,
            missing=np.nan,
        )

    def _train(self, params: dict, dtrain, n_rounds: int, desc: str, **options) -> dict:
        import xgboost.dask as dxgb

        progress.note(f"{desc}: up to {n_rounds} rounds on the Dask cluster (xgboost.dask)")
        quiet = {**params, "verbosity": 0}  # the workers' trackers log every rank and empty partition
        return dxgb.train(self.client, quiet, dtrain, n_rounds, verbose_eval=False, **options)

    def train_early_stopped(
        self, params: dict, dtrain, dvalid, n_rounds: int, patience: int, desc: str
    ) -> tuple[xgb.Booster, float]:
        out = self._train(
            params, dtrain, n_rounds, desc, evals=[(dvalid, "valid")], early_stopping_rounds=patience
        )
        booster = out["booster"]
        return booster, float(out["history"]["valid"][params["eval_metric"]][booster.best_iteration])

    def train_rounds(self, params: dict, dtrain, n_rounds: int, desc: str) -> xgb.Booster:
        return self._train(params, dtrain, n_rounds, desc)["booster"]
