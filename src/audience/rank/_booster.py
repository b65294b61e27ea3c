"""Boost with progress reports; save, load and read an XGBoost booster beside its meta.json (shared by
MixiGen and the reranker)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xgboost as xgb

from audience import progress
from audience.io import atomic_path, write_json


class BoostProgress(xgb.callback.TrainingCallback):
    """Reports each boosting round (and the latest validation score, when there is one) to a
    `progress.bar`; it never changes the training."""

    def __init__(self, desc: str, n_rounds: int):
        super().__init__()
        self.desc, self.n_rounds = desc, n_rounds
        self.report = progress.bar(desc, n_rounds, "rounds")

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict) -> bool:
        scores = [(name, values[-1]) for data in evals_log.values() for name, values in data.items()]
        self.report.update(1, ", ".join(f"valid {name} {value:.4f}" for name, value in scores))
        return False

    def after_training(self, model: xgb.Booster) -> xgb.Booster:
        self.report.close()
        return model


def train_early_stopped(
    params: dict,
    dtrain: xgb.DMatrix,
    dvalid: xgb.DMatrix,
    n_rounds: int,
    patience: int,
    desc: str = "boosting",
) -> tuple[xgb.Booster, float]:
    """Boost up to `n_rounds`, stopping after `patience` rounds without gain on `dvalid`, with a progress
    report named `desc`; returns the booster and its validation score (params["eval_metric"]) at the best
    iteration."""
    evals: dict = {}
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=n_rounds,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=patience,
        evals_result=evals,
        verbose_eval=False,
        callbacks=[BoostProgress(desc, n_rounds)],
    )
    return booster, float(evals["valid"][params["eval_metric"]][booster.best_iteration])


def train_rounds(params: dict, dtrain: xgb.DMatrix, n_rounds: int, desc: str = "boosting") -> xgb.Booster:
    """Boost exactly `n_rounds` on `dtrain`, with a progress report named `desc`."""
    return xgb.train(params, dtrain, n_rounds, callbacks=[BoostProgress(desc, n_rounds)])


class LocalBoosting:
    """Boosting in this process: XGBoost matrices from numpy, `train_early_stopped` / `train_rounds`.
    The Dask engine's twin (engine/dask_boosting.py) has the same three methods over xgboost.dask."""

    def __init__(self, n_threads: int = 1):
        self.n_threads = n_threads

    def matrix(
        self, data: np.ndarray, label: np.ndarray | None, qid: np.ndarray, features: list[str]
    ) -> xgb.DMatrix:
        return xgb.DMatrix(data, label=label, qid=qid, feature_names=features, missing=np.nan)

    def train_early_stopped(
        self, params: dict, dtrain, dvalid, n_rounds: int, patience: int, desc: str
    ) -> tuple[xgb.Booster, float]:
        return train_early_stopped(
            {**params, "nthread": self.n_threads}, dtrain, dvalid, n_rounds, patience, desc
        )

    def train_rounds(self, params: dict, dtrain, n_rounds: int, desc: str) -> xgb.Booster:
        return train_rounds({**params, "nthread": self.n_threads}, dtrain, n_rounds, desc)


def gain_shares(*boosters: xgb.Booster) -> dict[str, float]:
    """Each feature's share of the total split gain (averaged over the boosters), largest first."""
    mean: dict[str, float] = {}
    for booster in boosters:
        gain = booster.get_score(importance_type="total_gain")
        total = sum(gain.values()) or 1.0
        for name, value in gain.items():
            mean[name] = mean.get(name, 0.0) + value / total / len(boosters)
    return dict(sorted(mean.items(), key=lambda kv: -kv[1]))


def _model_file(index: int) -> str:
    return "model.json" if index == 0 else f"model_{index}.json"


def save_boosters(boosters: list[xgb.Booster], folder: Path, meta: dict) -> None:
    """folder/model.json, model_1.json, ... (each atomically) and folder/meta.json = meta + the number of
    boosters + their mean gain shares."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, booster in enumerate(boosters):
        with atomic_path(folder / _model_file(index)) as tmp:
            booster.save_model(str(tmp.with_suffix(".json")))  # xgboost picks the format from the suffix
            tmp.with_suffix(".json").rename(tmp)
    meta = {**meta, "n_boosters": len(boosters), "importance": gain_shares(*boosters)}
    write_json(meta, folder / "meta.json")


def load_boosters(folder: Path) -> tuple[list[xgb.Booster], dict]:
    meta = json.loads((folder / "meta.json").read_text())
    boosters = []
    for index in range(meta.get("n_boosters", 1)):
        booster = xgb.Booster()
        booster.load_model(str(folder / _model_file(index)))
        boosters.append(booster)
    return boosters, meta


def save_booster(booster: xgb.Booster, folder: Path, meta: dict) -> None:
    save_boosters([booster], folder, meta)


def load_booster(folder: Path) -> tuple[xgb.Booster, dict]:
    boosters, meta = load_boosters(folder)
    return boosters[0], meta
