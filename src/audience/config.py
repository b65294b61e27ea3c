"""A run's configuration in one place: its typed settings (`RunConfig` and its nested tables) with defaults
in code, overridden by a TOML file, then by CLI flags. The synthetic datasets' settings live beside their
generator (data/presets.py).

Layer: above `data` (it reads the flag names of the schema and parses data locations), below everything that
runs. Comments state what a setting does and its limits; how the defaults were chosen is in
docs/experiments.md."""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from audience.data.location import data_path
from audience.data.schema import DEFAULT_POSITIVE_FLAGS, FLAG_COLUMNS
from audience.errors import ConfigError

MODES = ("validate", "submit")
DEFAULT_SUBMISSION = "submissions/submission.parquet"
STAGES = ("profiles", "candidates", "blend", "rank", "assign", "evaluate", "submission")
STRATEGIES = ("slots", "global", "margin")  # cap-aware assignment strategies (assign.py)
ASSIGNMENTS = (*STRATEGIES, "prices")  # a run's choices: the greedy strategies, or matching.assign_by_prices
COVARIANCE_TYPES = ("spherical", "diag", "tied", "full")  # GMM covariance structures (profiles/gmm.py)
INITS = ("kmeans", "k-means++", "random_from_data")  # GMM initialisations
QUOTA_OBJECTIVES = ("ndcg", "recall")  # what the fixed-quota search maximises (rank/mixigen.py)
ENGINES = ("local", "dask")  # where the heavy passes run (engine/)


@dataclass(frozen=True)
class GmmConfig:
    """How to fit the mixture. `dim=None` keeps every dimension; `sample_size=None` fits on every clip;
    `validation_size=0` stops on the training log-likelihood instead (sklearn-like)."""

    n_components: int = 128
    covariance_type: str = "diag"
    dim: int | None = 32
    sample_size: int | None = 200_000
    validation_size: int = 10_000
    max_iter: int = 200
    tol: float = 1e-3  # nats per clip gained by one EM iteration (validation LL) below which the fit stops
    init: str = "k-means++"
    init_iter: int = 10  # Lloyd iterations (on every training clip) of the "kmeans" init
    init_sample: int | None = 30_000  # clips the k-means++ seeding looks at (it is O(n K log K d))
    reg_covar: float = 1e-6
    seed: int = 0
    batch_size: int = 8192
    time_budget_s: float | None = None  # stop EM (keeping the best parameters) after this much wall time

    def __post_init__(self) -> None:
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ConfigError(f"covariance_type={self.covariance_type!r}, expected one of {COVARIANCE_TYPES}")
        if self.init not in INITS:
            raise ConfigError(f"init={self.init!r}, expected one of {INITS}")
        if self.n_components < 1:
            raise ConfigError(f"n_components={self.n_components}, expected >= 1")


@dataclass(frozen=True)
class MixiGenConfig:
    """Boosting settings for the position-value model and the merge budgets."""

    objective: str = "rank:ndcg"
    n_estimators: int = 200
    learning_rate: float = 0.1
    max_depth: int = 6
    min_child_weight: float = 50.0
    negative_keep: float = 0.3  # negatives are plentiful; thinning them uniformly keeps every clip's order
    valid_share: float = 0.2
    early_stopping_rounds: int = 30
    # rank objectives: pairs are built within each clip's top `rank_truncation` predictions (XGBoost's
    # lambdarank_num_pair_per_sample with the topk method; None keeps XGBoost's default)
    rank_truncation: int | None = 100
    quota_multipliers: tuple[float, ...] = (0.25, 0.5, 2.0, 4.0)  # tried per source in the quota search
    quota_rounds: int = 2
    # what the quota search maximises on the holdout pools: "ndcg" (NDCG@list_size of the merged list) or
    # "recall" (recall@candidate_depth: the merge as a pool for a reranker)
    quota_objective: str = "ndcg"

    def __post_init__(self) -> None:
        if self.quota_objective not in QUOTA_OBJECTIVES:
            known = sorted(QUOTA_OBJECTIVES)
            raise ConfigError(f"mixigen.quota_objective must be one of {known}, got {self.quota_objective!r}")


@dataclass(frozen=True)
class HnswConfig:
    """hnswlib parameters. `ef` is a query-time setting that hnswlib does not save with an index."""

    m: int = 16
    ef_construction: int = 100  # build-time candidate list: higher builds slower, recalls more
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
    # the user x author views history keeps each user's this many most-viewed authors and every author they
    # engaged with (profiles/author_views.py: at VK density a user meets thousands); None keeps all
    max_user_authors: int | None = 1000

    def __hash__(self) -> int:
        return hash(
            (
                self.kinds,
                tuple(sorted(self.flag_weights.items())),
                self.skip_share,
                self.watch_cap,
                self.recency_half_life,
                self.max_user_authors,
            )
        )


@dataclass(frozen=True)
class SimilarAuthorsSettings:
    """The reranker's similar-authors features (rank/similar_authors.py): each target author's `k` nearest
    authors by audience cosine. When every author's neighbours would count more than `pair_budget` (author,
    author) pairs (~15 s per 4e9), each user's audience is cut to its most viewed authors to fit."""

    k: int = 50
    pair_budget: float = 4e9


@dataclass(frozen=True)
class RerankerConfig:
    """XGBoost reranker (rank/reranker.py): pool depth per source, boosting and sampling settings."""

    # per source: its top pool_depth candidates enter the pool (rows, hence time and memory, grow with it)
    pool_depth: int = 150
    train_weeks: int = 2  # label weeks pooled for training (each costs one profiles + candidates run)
    # which clips of a label week are labelled (rank/protocol.py): "new" (unseen before it), "pseudo"
    # (sampled clips whose fit-week interactions are hidden) or "both". "new" falls back to "pseudo" where no
    # label week of the last `label_week_lookback` holds `min_new_clips` new clips (how each choice scored:
    # reports/shapes_small.md, docs/experiments.md)
    label_clips: str = "new"
    min_new_clips: int = 50  # fewer new clips than this: too few clips with positives to learn from
    label_week_lookback: int = 4
    pseudo_clips: int = 1000  # pseudo-new clips per label week: at most this many,
    pseudo_share: float = 0.1  # and at most this share of the week's clips (hiding more thins the fit data)
    # which clips become pseudo-new: "viewed" (drawn with weights = label-week views, like new clips that the
    # feed pushes), "youngest" (latest first appearance first) or "uniform". On the stocked shape (every clip
    # lives in every week) "youngest" picks the obscure clips
    pseudo_pick: str = "viewed"
    # binary:logistic gives calibrated probabilities, which the cross-clip assignment compares
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
    # Costs bag_seeds x the boosting time.
    bag_seeds: int = 2
    similar_authors: SimilarAuthorsSettings = SimilarAuthorsSettings()
    # pool rows predicted at once: XGBoost reads a float32 copy of one block (~200 MB per million rows)
    predict_block_rows: int = 1_000_000

    def __post_init__(self) -> None:
        if self.bag_seeds < 1:
            raise ConfigError(f"reranker.bag_seeds must be >= 1, got {self.bag_seeds}")
        if self.label_clips not in LABEL_CLIPS:
            raise ConfigError(f"reranker.label_clips must be one of {LABEL_CLIPS}, got {self.label_clips!r}")
        if self.pseudo_pick not in PSEUDO_PICKS:
            raise ConfigError(f"reranker.pseudo_pick must be one of {PSEUDO_PICKS}, got {self.pseudo_pick!r}")


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
class AuthorFansSettings:
    """'author_fans' (candidates/authors.py): a user's views of the clip's author times their engagement rate
    with it, shrunk towards the global rate by `prior_strength` pseudo-views."""

    prior_strength: float = 5.0
    batch: int = 4096  # distinct target authors per sparse top-k


@dataclass(frozen=True)
class CoEngagementSettings:
    """'coengagement' (candidates/coengagement.py): the engaged users of a new clip's `n_neighbours` nearest
    old clips by content, each weighted by its cosine to the power `power`."""

    n_neighbours: int = 50
    power: float = 2.0
    batch: int = 1024  # target clips per round of neighbour queries and top-k (product_top_k)


@dataclass(frozen=True)
class BprBridgeSettings:
    """'bpr_bridge' (candidates/cf_bridges.py): BPR factors of the old clips, mapped from content and author
    by ridge regression, queried against the users' factors."""

    factors: int = 64
    epochs: int = 30  # at most; fewer when positives x epochs would pass `sample_budget`
    ridge: float = 1.0
    sample_budget: int = 150_000_000  # SGD samples in all: bounds the fit's time on dense data
    # the users whose factors are learned: the most engaged, while their positives add up to at most this
    # (bounds the fit's memory, 16 bytes a positive plus the factors, wherever it runs; the others are never
    # answered)
    max_positives: int = 200_000_000

    def __post_init__(self) -> None:
        if self.max_positives < 1:
            raise ConfigError(f"bpr_bridge.max_positives must be >= 1, got {self.max_positives}")


@dataclass(frozen=True)
class NeighbourBridgeSettings:
    """'ease_bridge' and 'slim_bridge' (candidates/cf_bridges.py): a new clip borrows the item-item scores of
    its `n_neighbours` nearest old clips by content, among the `max_items` most popular (EASE's dense
    matrix is max_items^2 x 4 bytes)."""

    n_neighbours: int = 20
    max_items: int = 10_000
    batch: int = 256  # target clips per sparse x dense product


@dataclass(frozen=True)
class OwnAudienceSettings:
    """'own_audience' (candidates/own_audience.py, warm targets): the engaged users of the `n_neighbours`
    clips most co-engaged with the clip's own audience, weighted by that cosine."""

    n_neighbours: int = 100
    batch: int = 256  # target clips per round of sparse products


@dataclass(frozen=True)
class PicksSettings:
    """The user-direction sources ('picks:<kind>', candidates/user_picks.py): each user picks `share` x
    their fair part of the slots (targets x list_size / users), at least `minimum` clips."""

    share: float = 2.0
    minimum: int = 10

    def __post_init__(self) -> None:
        if self.share <= 0 or self.minimum < 1:
            raise ConfigError(
                "source.picks: share > 0 and minimum >= 1 expected, "
                f"got share {self.share}, minimum {self.minimum}"
            )


@dataclass(frozen=True)
class SourceSettings:
    """Each candidate source's own settings, one TOML table per source family (`[source.coengagement]`,
    `[source.picks]` for every 'picks:<kind>', ...); the registry (candidates/registry.py) builds the
    sources from them. Index settings shared by every HNSW source are `[hnsw]`."""

    author_fans: AuthorFansSettings = AuthorFansSettings()
    coengagement: CoEngagementSettings = CoEngagementSettings()
    bpr_bridge: BprBridgeSettings = BprBridgeSettings()
    ease_bridge: NeighbourBridgeSettings = NeighbourBridgeSettings()
    slim_bridge: NeighbourBridgeSettings = NeighbourBridgeSettings()
    own_audience: OwnAudienceSettings = OwnAudienceSettings()
    picks: PicksSettings = PicksSettings()


@dataclass(frozen=True)
class FirstStageConfig:
    """The reranker's first stage (candidates/combined.py, rank/first_stage.py): every user scored for every
    target clip by a logistic model of a few terms learned on the label weeks; its top `depth` users per
    clip join the sources' in the reranker's pool. depth 0 turns it off."""

    depth: int = 0
    negatives: int = 200  # users drawn uniformly per label clip against its positives, to learn the weights
    block: int = 512  # clips scored at once: ~12 x users x block bytes

    def __post_init__(self) -> None:
        if self.depth < 0 or self.negatives < 1 or self.block < 1:
            raise ConfigError(f"first_stage: depth >= 0, negatives >= 1 and block >= 1 expected, got {self}")


@dataclass(frozen=True)
class DaskConfig:
    """The Dask engine (`engine = "dask"`): which cluster, and how work is cut into tasks (engine/)."""

    scheduler: str | None = None  # a running scheduler's address (tcp://host:8786); None: a LocalCluster
    connect_timeout_s: float = 10.0  # how long to wait for that scheduler before giving up with one line
    workers: int | None = None  # LocalCluster workers; default one per core
    threads_per_worker: int = 1
    # LocalCluster memory per worker ("6GB"); default the machine's memory split evenly. A worker above 95 %
    # of it is restarted by its nanny and its tasks rerun elsewhere
    memory_limit: str | None = None
    # rows of one aggregation task (whole row groups: a bigger row group is a task alone); a task holds
    # ~part_rows x (40 + 4 x kinds x dim) bytes at most (every row a different user)
    part_rows: int = 8_000_000
    merge_fan_in: int = 4  # partial aggregates merged per task of the reduction tree
    clip_block: int = 2_048  # target clips per candidates / pair-features task
    # rows of one xgboost.dask partition (whole clips; a group never straddles two); the reranker's
    # training frame is cut into about rows / train_partition_rows partitions
    train_partition_rows: int = 2_000_000
    # user shards (engine/dask_engine.py): > 0, the candidates stage's sources that split by user (exact
    # search, author fans, co-engagement; HNSW and reach approximately, one index per shard) are fitted and
    # answered per shard on the workers, each from its own users' fit data, and merged on the client; 0
    # fits every source on the client
    user_shards: int = 0

    def __post_init__(self) -> None:
        if self.user_shards < 0:
            raise ConfigError(f"dask.user_shards={self.user_shards}: 0 (off) or a count of shards expected")
        for name in ("part_rows", "merge_fan_in", "clip_block", "train_partition_rows", "threads_per_worker"):
            if getattr(self, name) < 1 or (name == "merge_fan_in" and self.merge_fan_in < 2):
                raise ConfigError(f"dask.{name}={getattr(self, name)} is too small")


# the metadata that marks a RunConfig field as shaping the profiles and candidates of a run: a holdout run's
# cache key holds every such field (stages/holdout_runs.py), so a new setting that shapes them is marked
# here, not listed there
SHAPES_CANDIDATES = {"shapes": "candidates"}


@dataclass(frozen=True)
class RunConfig:
    data_dir: Path = Path("data/synthetic-small")
    subsample: str | None = None
    mode: str = "validate"
    targets: Path | None = None  # parquet with an item_id column; submit mode's default is the test week
    out: Path | None = None  # default: submissions/submission.parquet (submit), the run folder (validate)
    run_dir: Path | None = None  # artifacts folder; default artifacts/<dataset>-<mode>
    # the dataset's weekly aggregates and week ids, shared by every run of it (keyed by content); default
    # <the run folder's parent>/<dataset>-weeks
    weeks_dir: Path | None = None
    seed: int = field(default=0, metadata=SHAPES_CANDIDATES)
    n_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    positive_flags: tuple[str, ...] = field(default=DEFAULT_POSITIVE_FLAGS, metadata=SHAPES_CANDIDATES)
    embedding_dim: int = field(default=64, metadata=SHAPES_CANDIDATES)
    # blended and reranked; weaker profile indexes (hnsw:all, hnsw:recency, hnsw:negative) are opt-in
    sources: tuple[str, ...] = field(
        default=(
            "popular",
            "author_fans",
            "coengagement",
            "hnsw:positive",
            "hnsw:timespent",
            "reach:recency",
            "reach:gmm_positive",
            "bpr_bridge",
        ),
        metadata=SHAPES_CANDIDATES,
    )
    # scored for the report only: random, the plain averaged-embedding HNSW and its exact reference
    baselines: tuple[str, ...] = ("random", "hnsw:all", "exact:all")
    candidate_depth: int = field(default=300, metadata=SHAPES_CANDIDATES)
    # pool depths (up to candidate_depth) whose recall of the truth week the evaluation reports, besides
    # list_size and candidate_depth
    recall_depths: tuple[int, ...] = (100, 300, 1000)
    blend_rrf_k: float = 60.0
    list_size: int = 100
    user_cap: int = 100
    # cap-aware assignment of every method: a greedy strategy of assign.py, or "prices" (matching.py: the
    # best priced greedy along the Lagrangian bound's subgradient steps); the oracle always uses "slots"
    assignment: str = "margin"
    # the final method's assignment (its lists become the submission); the others keep `assignment`
    final_assignment: str = "prices"
    # subgradient steps of the Lagrangian bound on the final method's assignment (reported by the assign
    # stage) and of the "prices" assignment; each costs about one pass over the pairs x list_size
    bound_steps: int = 40
    # the "prices" assignment runs its three greedies every this many subgradient steps (and on the best
    # bound's prices at the end): each run costs about three sorts of every clip's best candidates, most of
    # the assignment's time at VK size; fewer runs are faster and can find a slightly worse assignment
    primal_every: int = 10
    # scale the final method's scores by each clip's 1 / expected IDCG before the cap-aware assignment and
    # its bound (matching.expected_ndcg_weights): the assignment then trades expected NDCG, not DCG, across
    # clips. Applied only when those scores are probabilities in [0, 1] (the reranker's)
    ndcg_weights: bool = True
    final_method: str = "reranked"
    # learn the value of each source's positions on the holdout weeks and merge the sources by it
    # ("mixigen"), beside the same holdout weeks' best fixed quota per source ("quota"); costs the MixiGen
    # fit and the quota search in the blend stage
    learned_blend: bool = False
    mixigen: MixiGenConfig = field(default_factory=MixiGenConfig)
    rerank: bool = True  # train the XGBoost reranker on the holdout split and rank the pool with it
    reranker: RerankerConfig = field(default_factory=RerankerConfig)
    holdout: int = 0  # > 0: shift the split back this many weeks (how the ranker's training data is made)
    holdout_targets: HoldoutTargets = field(
        default=HoldoutTargets(), metadata=SHAPES_CANDIDATES
    )  # holdout runs only
    # a warm target's fit-week audience is left out of its list: (user, clip) pairs do not repeat in VK-LSVD
    exclude_seen: bool = field(default=True, metadata=SHAPES_CANDIDATES)
    hnsw: HnswConfig = field(default=HnswConfig(), metadata=SHAPES_CANDIDATES)
    source: SourceSettings = field(
        default=SourceSettings(), metadata=SHAPES_CANDIDATES
    )  # each candidate source's settings ([source.NAME])
    first_stage: FirstStageConfig = FirstStageConfig()
    profiles: ProfileSettings = field(default_factory=ProfileSettings, metadata=SHAPES_CANDIDATES)
    # soft-cluster profiles are built when a 'gmm:<kind>' source is configured
    gmm: GmmConfig = field(default=GmmConfig(), metadata=SHAPES_CANDIDATES)
    quiet: bool = False
    # "local": this process (the default); "dask": the weekly aggregation, candidate queries, pair features
    # and the reranker's boosting run on a Dask cluster (`dask`), the rest in this process (engine/)
    engine: str = "local"
    dask: DaskConfig = DaskConfig()

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        bad_weights = [f for f in self.profiles.flag_weights if f not in FLAG_COLUMNS]
        if bad_weights:
            raise ConfigError(f"profiles.flag_weights {bad_weights}: each must be one of {FLAG_COLUMNS}")
        unknown = [f for f in self.positive_flags if f not in FLAG_COLUMNS]
        if unknown or not self.positive_flags:
            raise ConfigError(
                f"positive_flags {list(self.positive_flags)}: each must be one of {FLAG_COLUMNS}"
            )
        if self.final_method not in self.methods:
            raise ConfigError(
                f"final_method {self.final_method!r} must be one of the run's methods {self.methods}"
            )
        for name in ("assignment", "final_assignment"):
            if getattr(self, name) not in ASSIGNMENTS:
                raise ConfigError(f"{name} must be one of {ASSIGNMENTS}, got {getattr(self, name)!r}")
        if self.primal_every < 1 or self.bound_steps < 0:
            raise ConfigError(
                "primal_every >= 1 and bound_steps >= 0 expected, "
                f"got {self.primal_every}, {self.bound_steps}"
            )
        if self.candidate_depth < self.list_size:
            raise ConfigError(
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

    @property
    def weeks_cache(self) -> Path:
        return (
            self.weeks_dir
            if self.weeks_dir is not None
            else self.artifacts.parent / f"{self.dataset_name}-weeks"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def candidate_settings(self) -> dict[str, Any]:
        """The fields marked SHAPES_CANDIDATES: what shapes this run's profiles and candidates."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata == SHAPES_CANDIDATES}


def _coerce(name: str, value: Any, current: Any) -> Any:
    if name in ("data_dir", "targets"):  # data may live at a URL (data/location.py)
        return None if value in (None, "") else data_path(value)
    if name in ("out", "run_dir", "weeks_dir"):
        return None if value in (None, "") else Path(value)
    if name == "sources" and isinstance(value, dict):  # [sources.NAME] would parse as a table
        raise ConfigError("sources is a list of names; a source's settings go in [source.NAME]")
    if name in ("positive_flags", "sources", "baselines"):
        return tuple(value.split(",")) if isinstance(value, str) else tuple(value)
    if name == "recall_depths":
        return tuple(int(depth) for depth in value)
    if is_dataclass(current) and isinstance(value, dict):  # a nested table ([hnsw], [source.picks], ...)
        return with_table(current, value, name)
    return value


def with_table(current: Any, table: dict[str, Any], name: str) -> Any:
    """The settings dataclass `current` with the keys of `table` (a TOML table or a saved `asdict`, nested
    tables included) set; an unknown key raises ConfigError naming the table `name`."""
    known = {f.name for f in fields(current)}
    if set(table) - known:
        raise ConfigError(f"unknown [{name}] key(s) {sorted(set(table) - known)}; known: {sorted(known)}")
    for key in ("kinds", "quota_multipliers"):
        if key in table:
            table = {**table, key: tuple(table[key])}
    return replace(current, **{k: _coerce(f"{name}.{k}", v, getattr(current, k)) for k, v in table.items()})


# tables that moved: the loader names the new place instead of listing every known key
MOVED = {"picks": "[source.picks]"}


def load_config(toml_path: Path | None = None, **overrides: Any) -> RunConfig:
    """Defaults, then the TOML file's keys, then non-None overrides (CLI flags)."""
    values: dict[str, Any] = {}
    if toml_path is not None:
        with open(toml_path, "rb") as fh:
            values.update(tomllib.load(fh))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(RunConfig)}
    unknown = set(values) - known
    moved = sorted(unknown & set(MOVED))
    if moved:
        raise ConfigError(f"[{moved[0]}] is now {MOVED[moved[0]]}")
    if unknown:
        raise ConfigError(f"unknown config key(s) {sorted(unknown)}; known: {sorted(known)}")
    base = RunConfig()
    return replace(base, **{k: _coerce(k, v, getattr(base, k)) for k, v in values.items()})
