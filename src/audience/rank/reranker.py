"""XGBoost reranker: learns which candidate (clip, user) pairs become positives, grouped by clip.

Trained on the holdout split (profiles and sources fitted on the weeks before the label week, labels from
the label week), applied to the real run's pool with the same features. Negatives are downsampled (each
kept with probability `negative_keep`, seeded); clips without a positive are dropped from training (they
carry no ranking signal); a share of the training clips is held out for early stopping. With `refit_scale`
> 0 a second booster is then boosted on every training clip for refit_scale x the early-stopped tree count,
and both are averaged. `bag_seeds` > 1 repeats that per seed (own stopping clips, own XGBoost row and column
samples; the negative sample is shared) and averages every booster, which lowers the variance that one
seed's stopping clips and samples bring.
Limits: memory ~ sampled rows x features x 4 bytes, held once (the sampled rows' float32 matrix, filled
`SAMPLE_BLOCK_ROWS` rows of a training frame at a time; each seed's train/stopping split reorders its rows in
place instead of copying them), plus XGBoost's matrices where the boosting runs in this process (the Dask
engine's workers hold theirs); time ~ bag_seeds x (1 + refit_scale) x one boosting."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import xgboost as xgb

from audience import timing
from audience.config import RerankerConfig, with_table
from audience.errors import TooLittleData
from audience.rank._booster import LocalBoosting, gain_shares, load_boosters, save_boosters
from audience.rank.features import feature_columns
from audience.rank.stacked import StackedFrames


def permute_rows(matrix: np.ndarray, order: np.ndarray, columns_at_once: int = 8) -> None:
    """``matrix[:] = matrix[order]`` in place, `columns_at_once` columns at a time: the temporary is rows x
    `columns_at_once`, not a second matrix. `order` must be a permutation of the rows."""
    for lo in range(0, matrix.shape[1], columns_at_once):
        matrix[:, lo : lo + columns_at_once] = matrix[order, lo : lo + columns_at_once]


# training-frame rows read at once while the sample is drawn (one block's float32 copy beside the sample)
SAMPLE_BLOCK_ROWS = 1_000_000


class Reranker:
    """`boosting`: where the boosters train (rank/_booster.LocalBoosting by default, or the Dask engine's
    xgboost.dask twin); prediction always runs here, on the saved boosters."""

    def __init__(self, cfg: RerankerConfig, n_threads: int = 1, seed: int = 0, boosting=None):
        self.cfg, self.n_threads, self.seed = cfg, n_threads, seed
        self.boosting = boosting or LocalBoosting(n_threads)
        self.boosters: list[xgb.Booster] = []
        self.n_trees: list[int] = []  # per booster, the trees used to predict
        self.features: list[str] = []
        self.report: dict = {}

    def _params(self, seed: int) -> dict:
        c = self.cfg
        return {
            "objective": c.objective,
            "eta": c.learning_rate,
            "max_depth": c.max_depth,
            "min_child_weight": c.min_child_weight,
            "subsample": c.subsample,
            "colsample_bytree": c.colsample_bytree,
            "tree_method": "hist",
            "seed": seed,
            "eval_metric": "ndcg@100",
        }

    def _matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """The frame's feature columns as XGBoost's float32 matrix, cast in polars: one float32 copy instead
        of a float64 one and its cast."""
        return frame.select(pl.col(self.features).cast(pl.Float32)).to_numpy()

    def fit(self, frame: pl.DataFrame | StackedFrames, features: list[str] | None = None) -> Reranker:
        """`frame`: clip, user, label and the feature columns (`features`; default every other column), or
        a stack of such frames read part by part (the training frames of stages/training_data.py): then
        only the sampled rows are ever held together."""
        stack = frame if isinstance(frame, StackedFrames) else StackedFrames.of(frame)
        features = feature_columns(stack.columns()) if features is None else features
        rng = np.random.default_rng(self.seed)
        keys = stack.select(["clip", "label"])
        with_positive = (
            keys.group_by("clip").agg(pl.col("label").max().alias("has")).filter(pl.col("has") > 0)
        )
        if with_positive.height < 2:
            raise TooLittleData("reranker: fewer than 2 training clips have a positive; cannot train")
        clips = np.sort(with_positive["clip"].to_numpy())  # group_by order is arbitrary; the draw must not be
        n_valid = max(1, int(len(clips) * self.cfg.valid_share))
        valid_draws = [rng.choice(clips, size=n_valid, replace=False)]
        keep = keys["label"].to_numpy() > 0
        keep |= rng.random(keys.height) < self.cfg.negative_keep
        keep &= keys["clip"].is_in(pl.Series(clips).implode()).to_numpy()
        del keys
        for i in range(1, self.cfg.bag_seeds):  # the first seed draws exactly what a single model draws
            seed_rng = np.random.default_rng([self.seed, i])
            valid_draws.append(seed_rng.choice(clips, size=n_valid, replace=False))
        self.features = list(features)
        sample = self._sample(stack, keep)
        self.boosters, self.n_trees = [], []
        start = time.perf_counter()
        with timing.substep("boosting"):
            members = [self._fit_seed(*sample, valid, self.seed + i) for i, valid in enumerate(valid_draws)]
        first = members[0]
        self.report = {
            "train_rows": first["train_rows"],
            "valid_rows": first["valid_rows"],
            "train_clips": len(clips),
            "positives": int(sample[1].sum()),
            "best_iteration": first["best_iteration"],  # the first seed's; every seed's under "seeds"
            "valid_ndcg@100": first["valid_ndcg@100"],
            "n_trees": self.n_trees,
            "refit_on_all_clips": self.cfg.refit_scale > 0,
            "seeds": members,
            "fit_s": round(time.perf_counter() - start, 2),  # matrices + boosting, after sampling
        }
        return self

    def _sample(self, stack: StackedFrames, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The `keep` rows' features as one float32 matrix, their labels and clips, sorted by clip (stably:
        a clip's rows keep their order). The matrix is allocated once and filled block by block."""
        data = np.empty((int(keep.sum()), len(self.features)), dtype=np.float32)
        labels, clips, filled = [], [], 0
        for block in stack.filtered_blocks(keep, [*self.features, "label", "clip"], SAMPLE_BLOCK_ROWS):
            data[filled : filled + block.height] = self._matrix(block)
            labels.append(block["label"].to_numpy())
            clips.append(block["clip"].to_numpy())
            filled += block.height
        label, clip = np.concatenate(labels), np.concatenate(clips)
        if np.any(clip[1:] < clip[:-1]):  # the training frames are sorted by clip; a plain frame may not be
            order = np.argsort(clip, kind="stable")
            permute_rows(data, order)
            label, clip = label[order], clip[order]
        return data, label, clip

    def _fit_seed(
        self, data: np.ndarray, label: np.ndarray, clip: np.ndarray, valid_clips: np.ndarray, seed: int
    ) -> dict:
        """One seed's boosters on the sampled rows (`data`, `label`, `clip`, sorted by clip): early-stopped on
        `valid_clips`, then (refit_scale > 0) boosted again on every clip; both join the average (the
        early-stopped one is a second model for free). The split reorders `data`'s rows in place, training
        rows first (each part keeps its clip order), and restores them: its matrices are views, not copies."""
        is_valid = np.isin(clip, valid_clips)
        order = np.concatenate([np.flatnonzero(~is_valid), np.flatnonzero(is_valid)])
        n_train = int((~is_valid).sum())
        summary = {"seed": seed, "train_rows": n_train, "valid_rows": int(is_valid.sum())}
        permute_rows(data, order)
        try:
            split_label, split_clip = label[order], clip[order]
            dtrain, dvalid = (
                self.boosting.matrix(data[rows], split_label[rows], split_clip[rows], self.features)
                for rows in (slice(0, n_train), slice(n_train, None))
            )
            booster, best_score = self.boosting.train_early_stopped(
                self._params(seed),
                dtrain,
                dvalid,
                self.cfg.n_estimators,
                self.cfg.early_stopping_rounds,
                f"reranker boosting, seed {seed}",
            )
            del dtrain, dvalid
        finally:
            permute_rows(data, np.argsort(order))
        best_trees = int(booster.best_iteration) + 1
        self.boosters.append(booster)
        self.n_trees.append(best_trees)
        summary |= {"best_iteration": best_trees - 1, "valid_ndcg@100": best_score}
        if self.cfg.refit_scale > 0:  # the stopping clips carry signal too: boost again on every clip
            refit_trees = max(1, round(best_trees * self.cfg.refit_scale))
            whole = self.boosting.matrix(data, label, clip, self.features)
            self.boosters.append(
                self.boosting.train_rounds(
                    self._params(seed), whole, refit_trees, f"reranker refit, seed {seed}"
                )
            )
            self.n_trees.append(refit_trees)
            summary["refit_trees"] = refit_trees
        return summary

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """The mean of every booster's prediction (probabilities for binary:logistic), `predict_block_rows`
        rows at a time: the float32 copy XGBoost reads is one block, not the whole pool (GBs at VK size).
        XGBoost reads the block in place (no DMatrix: the same predictions without building one per
        block, which cost about a fifth of the prediction)."""
        assert self.boosters, "fit first"
        block_rows = self.cfg.predict_block_rows
        total = np.zeros(frame.height, dtype=np.float64)
        for booster in self.boosters:
            booster.set_param({"nthread": self.n_threads})  # a cluster-trained booster has its workers'
        for start in range(0, frame.height, block_rows):
            data = self._matrix(frame.slice(start, block_rows))
            for booster, n_trees in zip(self.boosters, self.n_trees, strict=True):
                total[start : start + block_rows] += booster.inplace_predict(
                    data, iteration_range=(0, n_trees), missing=np.nan
                )
        return (total / len(self.boosters)).astype(np.float32)

    def importance(self) -> dict[str, float]:
        assert self.boosters, "fit first"
        return gain_shares(*self.boosters)

    def save(self, folder: Path) -> None:
        assert self.boosters, "fit first"
        meta = {"features": self.features, "config": asdict(self.cfg), "report": self.report}
        save_boosters(self.boosters, folder, meta)

    @classmethod
    def load(cls, folder: Path, n_threads: int = 1) -> Reranker:
        boosters, meta = load_boosters(folder)
        obj = cls(with_table(RerankerConfig(), meta["config"], "reranker"), n_threads)
        obj.boosters, obj.features, obj.report = boosters, meta["features"], meta["report"]
        trees = meta["report"].get("n_trees", meta["report"]["best_iteration"] + 1)
        # a model saved before bagging stored one tree count (before the refit option: none, the early stop's)
        obj.n_trees = trees if isinstance(trees, list) else [trees]
        return obj
