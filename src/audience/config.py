"""One typed configuration for a run: defaults in code, overrides from a TOML file, then from CLI flags."""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from audience.assign import STRATEGIES
from audience.data.schema import DEFAULT_POSITIVE_FLAGS, FLAG_COLUMNS
from audience.profiles.gmm import GmmConfig
from audience.rank.mixigen import MixiGenConfig

MODES = ("validate", "submit")
DEFAULT_SUBMISSION = "submissions/submission.parquet"
STAGES = ("profiles", "candidates", "blend", "rank", "assign", "evaluate", "submission")


@dataclass(frozen=True)
class HnswConfig:
    """hnswlib parameters. `ef` is a query-time setting that hnswlib does not save with an index."""

    m: int = 16
    ef_construction: int = 100  # small: 1.5 s build, recall@100 0.999 vs exact (200: 3.2 s, 0.9997)
    ef: int = 256
    # hnswlib inserts in a thread-dependent order: more than one build thread makes the graph (and so the
    # candidates) differ from run to run. Queries are parallel either way.
    build_threads: int = 1


@dataclass(frozen=True)
class ProfileSettings:
    """Which averaged-embedding profiles to build and how each weighs a view.

    all: every view; positive: sum of `flag_weights` of the view's flags; negative: dislikes and skips
    (watched < `skip_share` of the clip) without a positive flag; timespent: share of the clip watched,
    capped at `watch_cap`; recency: every view, halving every `recency_half_life` weeks back."""

    kinds: tuple[str, ...] = ("all", "positive", "negative", "timespent", "recency")
    flag_weights: dict[str, float] = field(
        default_factory=lambda: {
            "like": 1.0,
            "share": 2.0,
            "bookmark": 2.0,
            "click_on_author": 1.0,
            "open_comments": 1.0,
        }
    )
    skip_share: float = 0.25
    watch_cap: float = 3.0
    recency_half_life: float = 4.0

    def __hash__(self) -> int:
        return hash(
            (
                self.kinds,
                tuple(sorted(self.flag_weights.items())),
                self.skip_share,
                self.watch_cap,
                self.recency_half_life,
            )
        )


@dataclass(frozen=True)
class RerankerConfig:
    """XGBoost reranker (rank/reranker.py): pool depth per source, boosting and sampling settings."""

    # per source: its top pool_depth candidates enter the pool. 150 (with negative_keep 0.5, eta 0.08) ran
    # the rank stage in 80 s instead of 174 s on small for NDCG@100 0.1574 instead of 0.1599
    pool_depth: int = 150
    train_weeks: int = 2  # label weeks pooled for training (each costs one profiles + candidates run)
    # which clips of a label week are labelled (rank/protocol.py): "new" (unseen before it), "pseudo"
    # (sampled clips whose fit-week interactions are hidden) or "both". "new" falls back to "pseudo" where no
    # label week of the last `label_week_lookback` holds `min_new_clips` new clips. On small (rolling shape)
    # new 0.1656, both 0.1644, pseudo 0.1533 (reports/shapes_small.md): adding pseudo-new clips did not help
    label_clips: str = "new"
    min_new_clips: int = 50  # fewer new clips than this: too few clips with positives to learn from
    label_week_lookback: int = 4
    pseudo_clips: int = 1000  # pseudo-new clips per label week: at most this many,
    pseudo_share: float = 0.1  # and at most this share of the week's clips (hiding more thins the fit data)
    # which clips become pseudo-new: "viewed" (drawn with weights = label-week views, like new clips that the
    # feed pushes), "youngest" (latest first appearance first) or "uniform". Pseudo-only on small: viewed
    # 0.1533, youngest 0.1478, uniform 0.1413; stocked small: viewed 0.1095, uniform 0.1011; on the stocked
    # shape youngest picks the obscure clips (tiny: 0.2149 vs viewed 0.2419, uniform 0.2334)
    pseudo_pick: str = "viewed"
    # binary:logistic gives calibrated probabilities, which the cross-clip assignment compares; it also beat
    # rank:ndcg and rank:pairwise on tiny and small (see README, Ranking)
    objective: str = "binary:logistic"
    n_estimators: int = 400
    learning_rate: float = 0.08
    max_depth: int = 5
    min_child_weight: float = 20.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    negative_keep: float = 0.5
    valid_share: float = 0.2
    early_stopping_rounds: int = 40
    # > 0: after early stopping, boost a second booster on all training clips (the stopping share included)
    # for refit_scale x the best tree count and average the two; 0 keeps the early-stopped one (demo time)
    refit_scale: float = 0.0
    # seeds bagged: each draws its own stopping clips and XGBoost row/column samples; every booster's
    # prediction is averaged (with refit_scale > 0 each seed adds its early-stopped and its refit booster).
    # Costs bag_seeds x the boosting time. 2 on small: NDCG@100 0.1630 -> 0.1640, rank stage 26 s -> 51 s
    bag_seeds: int = 2

    def __post_init__(self) -> None:
        if self.bag_seeds < 1:
            raise ValueError(f"reranker.bag_seeds must be >= 1, got {self.bag_seeds}")
        if self.label_clips not in LABEL_CLIPS:
            raise ValueError(f"reranker.label_clips must be one of {LABEL_CLIPS}, got {self.label_clips!r}")
        if self.pseudo_pick not in PSEUDO_PICKS:
            raise ValueError(f"reranker.pseudo_pick must be one of {PSEUDO_PICKS}, got {self.pseudo_pick!r}")


LABEL_CLIPS = ("new", "pseudo", "both")
PSEUDO_PICKS = ("youngest", "uniform", "viewed")


@dataclass(frozen=True)
class HoldoutTargets:
    """Which clips of a holdout run's truth week are its targets (set by the rank stage, never by hand):
    its new clips (`new`), `pseudo` pseudo-new clips (sampled among its clips seen before, their fit-week
    interactions hidden) and `warm` warm clips (sampled among its clips seen before, history kept)."""

    new: bool = True
    pseudo: int = 0
    warm: int = 0
    pseudo_pick: str = "viewed"  # RerankerConfig.pseudo_pick


@dataclass(frozen=True)
class RunConfig:
    data_dir: Path = Path("data/synthetic-small")
    subsample: str | None = None
    mode: str = "validate"
    targets: Path | None = None  # parquet with an item_id column; submit mode's default is the test week
    out: Path | None = None  # default: submissions/submission.parquet (submit), the run folder (validate)
    run_dir: Path | None = None  # artifacts folder; default artifacts/<dataset>-<mode>
    seed: int = 0
    n_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    positive_flags: tuple[str, ...] = DEFAULT_POSITIVE_FLAGS
    embedding_dim: int = 64
    # blended and reranked; weaker profile indexes (hnsw:all, hnsw:recency, hnsw:negative) are opt-in
    # bpr_bridge raised the reranked pool's recall@300 on small from 0.298 to 0.321 for ~6 s a run
    sources: tuple[str, ...] = (
        "popular",
        "author_fans",
        "coengagement",
        "hnsw:positive",
        "hnsw:timespent",
        "bpr_bridge",
    )
    # scored for the report only: random, the plain averaged-embedding HNSW and its exact reference
    baselines: tuple[str, ...] = ("random", "hnsw:all", "exact:all")
    candidate_depth: int = 300
    blend_rrf_k: float = 60.0
    list_size: int = 100
    user_cap: int = 100
    # cap-aware assignment strategy (assign.py): "slots", "global" or "margin". On the reranker's scores
    # margin beat slots on small (0.1630 vs 0.1616) and medium offline (0.1105 vs 0.1103); oracle: slots
    assignment: str = "margin"
    final_method: str = "reranked"
    # learn the value of each source's positions on the holdout weeks and merge the sources by it
    # ("mixigen"), beside the same holdout weeks' best fixed quota per source ("quota"). Off by default:
    # neither beat the reranker nor fed it a better pool, and MixiGen did not beat the quota (README, Ranking)
    learned_blend: bool = False
    mixigen: MixiGenConfig = field(default_factory=MixiGenConfig)
    rerank: bool = True  # train the XGBoost reranker on the holdout split and rank the pool with it
    reranker: RerankerConfig = field(default_factory=RerankerConfig)
    holdout: int = 0  # > 0: shift the split back this many weeks (how the ranker's training data is made)
    holdout_targets: HoldoutTargets = HoldoutTargets()  # holdout runs only
    # a warm target's fit-week audience is left out of its list: (user, clip) pairs do not repeat in VK-LSVD
    exclude_seen: bool = True
    hnsw: HnswConfig = HnswConfig()
    profiles: ProfileSettings = field(default_factory=ProfileSettings)
    # soft-cluster profiles are built when a 'gmm:<kind>' source is configured; diag covariance beat full on
    # held-out log-likelihood and BIC at every size tried (benchmarks/results/gmm.md)
    gmm: GmmConfig = field(default_factory=lambda: GmmConfig(covariance_type="diag"))
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        bad_weights = [f for f in self.profiles.flag_weights if f not in FLAG_COLUMNS]
        if bad_weights:
            raise ValueError(f"profiles.flag_weights {bad_weights}: each must be one of {FLAG_COLUMNS}")
        unknown = [f for f in self.positive_flags if f not in FLAG_COLUMNS]
        if unknown or not self.positive_flags:
            raise ValueError(
                f"positive_flags {list(self.positive_flags)}: each must be one of {FLAG_COLUMNS}"
            )
        if self.final_method not in self.methods:
            raise ValueError(
                f"final_method {self.final_method!r} must be one of the run's methods {self.methods}"
            )
        if self.assignment not in STRATEGIES:
            raise ValueError(f"assignment must be one of {STRATEGIES}, got {self.assignment!r}")
        if self.candidate_depth < self.list_size:
            raise ValueError(
                f"candidate_depth ({self.candidate_depth}) must be >= list_size ({self.list_size})"
            )

    @property
    def methods(self) -> tuple[str, ...]:
        """Every method a run scores: baselines, sources, the blend and (when on) the reranker."""
        learned = ("quota", "mixigen") if self.learned_blend else ()
        reranked = ("reranked",) if self.rerank else ()
        return tuple(dict.fromkeys((*self.baselines, *self.sources, "blend", *learned, *reranked)))

    @property
    def dataset_name(self) -> str:
        return self.data_dir.name + (f"-{self.subsample}" if self.subsample else "")

    @property
    def artifacts(self) -> Path:
        return (
            self.run_dir
            if self.run_dir is not None
            else Path("artifacts") / f"{self.dataset_name}-{self.mode}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _coerce(name: str, value: Any, current: Any) -> Any:
    if name in ("data_dir", "out", "targets", "run_dir"):
        return None if value in (None, "") else Path(value)
    if name in ("positive_flags", "sources", "baselines"):
        return tuple(value.split(",")) if isinstance(value, str) else tuple(value)
    if name in ("hnsw", "profiles", "reranker", "gmm", "mixigen") and isinstance(value, dict):
        known = {f.name for f in fields(current)}
        if set(value) - known:
            raise ValueError(f"unknown [{name}] key(s) {sorted(set(value) - known)}; known: {sorted(known)}")
        for key in ("kinds", "quota_multipliers"):
            if key in value:
                value = {**value, key: tuple(value[key])}
        return replace(current, **value)
    return value


def load_config(toml_path: Path | None = None, **overrides: Any) -> RunConfig:
    """Defaults, then the TOML file's keys, then non-None overrides (CLI flags)."""
    values: dict[str, Any] = {}
    if toml_path is not None:
        with open(toml_path, "rb") as fh:
            values.update(tomllib.load(fh))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(RunConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown config key(s) {sorted(unknown)}; known: {sorted(known)}")
    base = RunConfig()
    return replace(base, **{k: _coerce(k, v, getattr(base, k)) for k, v in values.items()})
