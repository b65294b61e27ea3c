"""Save, load and read an XGBoost booster beside its meta.json (shared by MixiGen and the reranker)."""

from __future__ import annotations

import json
from pathlib import Path

import xgboost as xgb

from audience.io import atomic_path, write_json


def train_early_stopped(
    params: dict, dtrain: xgb.DMatrix, dvalid: xgb.DMatrix, n_rounds: int, patience: int
) -> tuple[xgb.Booster, float]:
    """Boost up to `n_rounds`, stopping after `patience` rounds without gain on `dvalid`; returns the
    booster and its validation score (params["eval_metric"]) at the best iteration."""
    evals: dict = {}
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=n_rounds,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=patience,
        evals_result=evals,
        verbose_eval=False,
    )
    return booster, float(evals["valid"][params["eval_metric"]][booster.best_iteration])


def gain_shares(booster: xgb.Booster) -> dict[str, float]:
    """Each feature's share of the total split gain, largest first."""
    gain = booster.get_score(importance_type="total_gain")
    total = sum(gain.values()) or 1.0
    return dict(sorted(((k, v / total) for k, v in gain.items()), key=lambda kv: -kv[1]))


def save_booster(booster: xgb.Booster, folder: Path, meta: dict) -> None:
    """folder/model.json (atomically) and folder/meta.json = meta + the gain shares."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "model.json") as tmp:
        booster.save_model(str(tmp.with_suffix(".json")))  # xgboost picks the format from the suffix
        tmp.with_suffix(".json").rename(tmp)
    write_json({**meta, "importance": gain_shares(booster)}, folder / "meta.json")


def load_booster(folder: Path) -> tuple[xgb.Booster, dict]:
    booster = xgb.Booster()
    booster.load_model(str(folder / "model.json"))
    return booster, json.loads((folder / "meta.json").read_text())
