"""MixiGen-style learned merge of candidate sources, and the fixed-quota merge it must beat.

Every source proposes users for a clip in its own order. MixiGen learns the value of "the candidate at
position p of source s" for this clip: P(the pair is a positive of the label week), from the source, the
position, the source's score (raw and relative to its top score for the clip), how many sources propose the
user and their best position there, and clip and user features known before the label week (XGBoost,
rank:ndcg grouped by clip by default, trained on the holdout weeks like the reranker). If value
falls as position grows (`value_by_position` measures it; `kway_merge` enforces it with a running minimum),
each source's list is sorted by value and a k-way merge by value decides how many candidates each source
contributes to a budget: a clip whose author has many fans draws most of its budget from the fans, a clip of
an unknown author from the content sources.

`quota_merge` is the baseline: fixed shares of the budget per source, interleaved by position / share, with
the shares tuned on the holdout weeks (`tune_quota`, coordinate search) for NDCG@budget of the merged list
(`pool_ndcg`) or for recall@budget (`pool_recall`: the merge as the candidate set a reranker orders).

Limits: one row per (clip, source, position), i.e. clips x sources x depth rows; features are float32, so
memory ~ rows x 14 x 4 bytes plus XGBoost's quantised copy. Merges are one polars sort of those rows."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import xgboost as xgb
from scipy.stats import spearmanr

from audience import progress
from audience.config import MixiGenConfig
from audience.errors import TooLittleData
from audience.metrics import pool_ndcg, pool_recall
from audience.rank._booster import gain_shares, load_booster, save_booster, train_early_stopped

# clip and user features of the reranker's pool (rank/features.py) that MixiGen may see: no pair features,
# those are the reranker's job
CONTEXT_FEATURES = (
    "user_log_views",
    "user_log_positives",
    "user_positive_rate",
    "user_pool_share",
    "clip_duration",
    "clip_has_embedding",
    "author_log_views",
    "author_positive_rate",
    "author_clips",
)
# how many sources propose the pair and its best position in any of them: the value of a candidate that a
# stronger source already proposed is what the merge needs
CROSS_FEATURES = ("n_sources", "best_position")
FEATURES = ("source", "position", "log_position", "score", "score_to_top", *CONTEXT_FEATURES, *CROSS_FEATURES)


def long_candidates(pool: pl.DataFrame, sources: Sequence[str]) -> pl.DataFrame:
    """One row per (clip, user, source) that the source proposed, from a pool frame with `rank__<s>` and
    `score__<s>` columns (rank/features.candidate_pool, plus pair_features and labels when present)."""
    context = [  # a pool without some context feature (no pair_features) gets it as unknown
        pl.col(c) if c in pool.columns else pl.lit(None, pl.Float32).alias(c) for c in CONTEXT_FEATURES
    ]
    label = ["label"] if "label" in pool.columns else []
    parts = []
    for index, name in enumerate(sources):
        rank, score = f"rank__{name}", f"score__{name}"
        part = pool.filter(pl.col(rank).is_not_null()).select(
            "clip",
            "user",
            pl.lit(index, pl.Int8).alias("source"),
            pl.col(rank).cast(pl.Int32).alias("position"),
            pl.col(score).cast(pl.Float32).alias("score"),
            *context,
            *label,
        )
        parts.append(part)
    frame = pl.concat(parts)
    top = pl.col("score").max().over("clip", "source")
    return frame.with_columns(
        pl.col("position").cast(pl.Float32).log1p().alias("log_position"),
        pl.when(top.abs() > 0).then(pl.col("score") / top.abs()).otherwise(0.0).alias("score_to_top"),
        pl.len().over("clip", "user").alias("n_sources"),
        pl.col("position").min().over("clip", "user").alias("best_position"),
    ).sort("clip", "source", "position")


class MixiGen:
    """XGBoost model of the value of a (source, position) candidate for a clip."""

    def __init__(self, cfg: MixiGenConfig, sources: Sequence[str], n_threads: int = 1, seed: int = 0):
        self.cfg, self.sources, self.n_threads, self.seed = cfg, list(sources), n_threads, seed
        self.booster: xgb.Booster | None = None
        self.report: dict = {}

    @property
    def _metric(self) -> str:
        return "ndcg@100" if self.cfg.objective.startswith("rank:") else "logloss"

    def _matrix(self, frame: pl.DataFrame, label: bool) -> xgb.DMatrix:
        data = frame.select(pl.col(f).cast(pl.Float32) for f in FEATURES).to_numpy()
        return xgb.DMatrix(
            data,
            label=frame["label"].to_numpy() if label else None,
            qid=frame["clip"].to_numpy() if self.cfg.objective.startswith("rank:") else None,
            feature_names=list(FEATURES),
            missing=np.nan,
        )

    def fit(self, frame: pl.DataFrame) -> MixiGen:
        """`frame`: long_candidates of labelled holdout pools (the `label` column is required)."""
        rng = np.random.default_rng(self.seed)
        clips = np.unique(frame["clip"].to_numpy())
        if clips.shape[0] < 2 or int(frame["label"].sum()) == 0:
            raise TooLittleData("mixigen: needs at least 2 training clips and one positive candidate")
        valid_clips = rng.choice(clips, size=max(1, int(len(clips) * self.cfg.valid_share)), replace=False)
        keep = (frame["label"].to_numpy() > 0) | (rng.random(frame.height) < self.cfg.negative_keep)
        frame = frame.filter(pl.Series(keep))  # sorted by clip (long_candidates): contiguous ranking groups
        is_valid = frame["clip"].is_in(pl.Series(valid_clips).implode())
        train, valid = frame.filter(~is_valid), frame.filter(is_valid)
        params = {
            "objective": self.cfg.objective,
            "eta": self.cfg.learning_rate,
            "max_depth": self.cfg.max_depth,
            "min_child_weight": self.cfg.min_child_weight,
            "tree_method": "hist",
            "nthread": self.n_threads,
            "seed": self.seed,
            "eval_metric": self._metric,
        }
        if self.cfg.rank_truncation is not None and self.cfg.objective.startswith("rank:"):
            params["lambdarank_pair_method"] = "topk"
            params["lambdarank_num_pair_per_sample"] = self.cfg.rank_truncation
        start = time.perf_counter()
        self.booster, best_score = train_early_stopped(
            params,
            self._matrix(train, True),
            self._matrix(valid, True),
            self.cfg.n_estimators,
            self.cfg.early_stopping_rounds,
            "mixigen boosting",
        )
        self.report = {
            "train_rows": train.height,
            "valid_rows": valid.height,
            "positives": int(frame["label"].sum()),
            "best_iteration": int(self.booster.best_iteration),
            f"valid_{self._metric}": best_score,
            "fit_s": round(time.perf_counter() - start, 2),  # matrices + boosting, after sampling
        }
        return self

    def value(self, frame: pl.DataFrame) -> np.ndarray:
        """Predicted value of each long row: a ranking score within its clip (rank objectives), or a monotone
        transform of P(positive) (binary:logistic; negatives were thinned)."""
        assert self.booster is not None, "fit first"
        best = self.booster.best_iteration
        return self.booster.predict(self._matrix(frame, False), iteration_range=(0, best + 1))

    def importance(self) -> dict[str, float]:
        assert self.booster is not None
        return gain_shares(self.booster)

    def save(self, folder: Path) -> None:
        assert self.booster is not None
        save_booster(
            self.booster, folder, {"sources": self.sources, "config": asdict(self.cfg), "report": self.report}
        )

    @classmethod
    def load(cls, folder: Path, n_threads: int = 1) -> MixiGen:
        booster, meta = load_booster(folder)
        config = {**meta["config"], "quota_multipliers": tuple(meta["config"]["quota_multipliers"])}
        obj = cls(MixiGenConfig(**config), meta["sources"], n_threads)
        obj.booster, obj.report = booster, meta["report"]
        return obj


def _first_per_user(ordered: pl.DataFrame, budget: int) -> pl.DataFrame:
    """Keep each (clip, user)'s first row in `ordered` (sorted by clip, best first), number the survivors
    1, 2, ... per clip and cut at `budget`."""
    kept = ordered.unique(["clip", "user"], keep="first", maintain_order=True)
    ranked = kept.with_columns(pl.col("clip").cum_count().over("clip").cast(pl.Int32).alias("rank"))
    return ranked.filter(pl.col("rank") <= budget)


def kway_merge(frame: pl.DataFrame, value: np.ndarray, budget: int) -> pl.DataFrame:
    """Merge each clip's source lists by value, best head first, into `budget` distinct users.

    Each source's values are made non-increasing along its positions (running minimum), which is what lets
    a k-way merge of sorted lists decide the per-source counts; a user already taken from another source is
    skipped. Returns clip, user, source, position, score (the merge value), rank."""
    scored = frame.select("clip", "user", "source", "position").with_columns(
        pl.Series("value", value, dtype=pl.Float32)
    )
    monotone = scored.sort("clip", "source", "position").with_columns(
        pl.col("value").cum_min().over("clip", "source").alias("score")
    )
    ordered = monotone.sort(
        ["clip", "score", "source", "position"], descending=[False, True, False, False]
    ).drop("value")
    return _first_per_user(ordered, budget)


def quota_merge(frame: pl.DataFrame, shares: Mapping[int, float], budget: int) -> pl.DataFrame:
    """Fixed quotas: source s advances at speed share_s (key = position / share_s); the interleave, without
    repeated users, cut at `budget`. Sources missing from `shares` take nothing. Score = -key."""
    share = pl.col("source").replace_strict(dict(shares), default=0.0, return_dtype=pl.Float64)
    keyed = (
        frame.select("clip", "user", "source", "position")
        .with_columns(share.alias("share"))
        .filter(pl.col("share") > 0)
        .with_columns((-(pl.col("position") / pl.col("share"))).cast(pl.Float32).alias("score"))
    )
    ordered = keyed.sort(["clip", "score", "source"], descending=[False, True, False]).drop("share")
    return _first_per_user(ordered, budget)


QUOTA_OBJECTIVES = {"ndcg": pool_ndcg, "recall": pool_recall}


def tune_quota(
    frame: pl.DataFrame,
    n_sources: int,
    budget: int,
    multipliers: Sequence[float],
    rounds: int,
    objective: str = "ndcg",
) -> tuple[dict[int, float], float]:
    """Coordinate search over per-source shares (start equal; per source try each multiplier, keep what
    raises the pool's `objective` (NDCG@budget or recall@budget) on the labelled `frame`). Returns (shares,
    best score)."""
    metric = QUOTA_OBJECTIVES[objective]
    shares = dict.fromkeys(range(n_sources), 1.0)
    best = metric(quota_merge(frame, shares, budget), frame, budget)
    with progress.bar("quota search", rounds * n_sources * len(multipliers), "trials") as report:
        for _ in range(rounds):
            improved = False
            for source in range(n_sources):
                for factor in multipliers:
                    trial = {**shares, source: shares[source] * factor}
                    score = metric(quota_merge(frame, trial, budget), frame, budget)
                    if score > best + 1e-9:
                        shares, best, improved = trial, score, True
                    report.update(1, f"best {objective} {best:.4f}")
            if not improved:
                break
    total = sum(shares.values())
    return {s: v / total for s, v in shares.items()}, best


def value_by_position(frame: pl.DataFrame, value: np.ndarray, sources: Sequence[str]) -> pl.DataFrame:
    """Mean predicted value and observed positive rate per (source, position): the assumption check."""
    grouped = (
        frame.select("source", "position", "label")
        .with_columns(pl.Series("value", value, dtype=pl.Float64))
        .group_by("source", "position")
        .agg(
            pl.col("value").mean(),
            pl.col("label").cast(pl.Float64).mean().alias("positive_rate"),
            pl.len().alias("n"),
        )
        .sort("source", "position")
    )
    names = dict(enumerate(sources))
    return grouped.with_columns(
        pl.col("source").replace_strict(names, return_dtype=pl.String).alias("source_name")
    )


def position_trend(table: pl.DataFrame) -> dict[str, float]:
    """Spearman correlation of position with the observed positive rate, per source (negative = value falls
    with position, the merge's assumption)."""
    out = {}
    for name in table["source_name"].unique(maintain_order=True).to_list():
        part = table.filter(pl.col("source_name") == name)
        rate = part["positive_rate"].to_numpy()
        constant = part.height < 3 or np.ptp(rate) == 0
        out[name] = float("nan") if constant else float(spearmanr(part["position"].to_numpy(), rate)[0])
    return out
