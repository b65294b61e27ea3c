"""The training protocol of the reranker and MixiGen: which label weeks, which clips of them are labelled,
and what a run falls back to when a protocol cannot train.

A label week is a fit week that the holdout run (rank stage) treats as its truth week: profiles and
sources are fitted on the weeks before it, its positives label the pool of its target clips.
- "new": the target clips are the label week's clips unseen before it (the cold-start situation itself).
  A week qualifies when it holds at least `min_new_clips` of them; the `train_weeks` most recent
  qualifying weeks among the last `label_week_lookback` are used.
- "pseudo": a seeded sample of the label week's clips that were seen before; every interaction with them is
  dropped from the fit weeks while they stream (the week pass subtracts their rows), so they are new to the
  holdout run and labelled by the label week. Works on any dataset, also where clips live in every week.
- "both": the new clips and the pseudo-new clips of the same weeks.
Fallback chain (stages/rank.py): the configured protocol, then "pseudo", then the best single source
on the holdout pools built so far (or the first configured source when none could be built).
Warm targets: when the run's targets include clips with history, each label week also labels a sample of
its warm clips (history kept), so the reranker sees the clip-history features it will meet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from audience.config import HoldoutTargets, RerankerConfig, RunConfig
from audience.data.location import data_path, scan_parquet
from audience.data.schema import INTERACTIONS_SCHEMA, check_schema
from audience.metrics import pool_ndcg
from audience.split import Split, default_targets, read_targets_file


@dataclass(frozen=True)
class LabelWeek:
    holdout: int  # weeks shifted back from the run's split
    week: str  # the label week's file name
    new_clips: int  # its clips unseen in the weeks before it
    clips: int  # its distinct clips
    targets: HoldoutTargets


@dataclass
class TrainingPlan:
    protocol: str  # "new", "pseudo" or "both"
    weeks: list[LabelWeek] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict:
        return {"protocol": self.protocol, "note": self.note, "weeks": [asdict(w) for w in self.weeks]}


def week_clip_counts(fit_weeks: Sequence[Path], lookback: int) -> list[tuple[int, Path, int, int]]:
    """(holdout, label week, new clips, clips) for the last `lookback` fit weeks that have a week before
    them, most recent first. One item_id column read per fit week."""
    frames = []
    for k, path in enumerate(fit_weeks):
        check_schema(path, INTERACTIONS_SCHEMA, ("item_id",))
        items = scan_parquet(path).select(pl.col("item_id").unique()).with_columns(pl.lit(k).alias("week"))
        frames.append(items)
    if len(frames) < 2:
        return []
    seen = pl.concat(frames).collect()
    first = seen.group_by("item_id").agg(pl.col("week").min().alias("first"))
    per_week = (
        seen.join(first, on="item_id")
        .group_by("week")
        .agg(pl.len().alias("clips"), (pl.col("first") == pl.col("week")).sum().alias("new"))
    )
    counts = {row["week"]: (row["new"], row["clips"]) for row in per_week.iter_rows(named=True)}
    n = len(fit_weeks)
    out = []
    for holdout in range(1, min(lookback, n - 1) + 1):
        new, clips = counts.get(n - holdout, (0, 0))
        out.append((holdout, data_path(fit_weeks[n - holdout]), int(new), int(clips)))
    return out


def training_plans(fit_weeks: Sequence[Path], cfg: RerankerConfig, n_warm: int = 0) -> list[TrainingPlan]:
    """The protocols to try in order: the configured one, then "pseudo" (when it differs). Empty when the
    split has a single fit week (no label week can have a week before it)."""
    weeks = week_clip_counts(fit_weeks, max(cfg.label_week_lookback, 1))
    if not weeks:
        return []

    def pseudo_count(clips: int) -> int:
        return int(min(cfg.pseudo_clips, round(cfg.pseudo_share * clips)))

    def week(h, path, new, clips, with_new: bool, with_pseudo: bool) -> LabelWeek:
        targets = HoldoutTargets(
            new=with_new,
            pseudo=pseudo_count(clips) if with_pseudo else 0,
            warm=min(n_warm, cfg.pseudo_clips),
            pseudo_pick=cfg.pseudo_pick,
        )
        return LabelWeek(h, path.name, new, clips, targets)

    recent = weeks[: cfg.train_weeks]
    pseudo = TrainingPlan("pseudo", [week(*w, with_new=False, with_pseudo=True) for w in recent])
    if cfg.label_clips == "pseudo":
        return [pseudo]
    qualifying = [w for w in weeks if w[2] >= cfg.min_new_clips][: cfg.train_weeks]
    note = (
        f"no label week among the last {len(weeks)} holds {cfg.min_new_clips} new clips "
        f"(new clips: {', '.join(f'{p.name} {n}' for _, p, n, _ in weeks)})"
    )
    if cfg.label_clips == "both":
        both = [week(*w, with_new=w[2] >= cfg.min_new_clips, with_pseudo=True) for w in recent]
        plan = TrainingPlan("both", both, "" if qualifying else f"{note}: pseudo-new clips only")
        return [plan, pseudo]
    plans = [TrainingPlan("new", [week(*w, with_new=True, with_pseudo=False) for w in qualifying])]
    if not qualifying:
        plans[0].note = note
    return [*plans, pseudo]


def holdout_samples(split: Split, cfg: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """(pseudo-new clip ids, warm clip ids) a holdout run samples among its truth week's clips seen in its
    fit weeks (seeded by seed and holdout; disjoint). Pseudo-new clips are the youngest of them (latest
    first appearance, ties in random order) or a uniform draw (`pseudo_pick`); warm clips a uniform draw of
    the rest. Both empty for a run that is not a holdout run."""
    wanted = cfg.holdout_targets
    empty = np.zeros(0, dtype=np.uint32)
    if cfg.holdout <= 0 or (wanted.pseudo <= 0 and wanted.warm <= 0) or split.truth_week is None:
        return empty, empty
    first = (
        pl.concat(
            [
                scan_parquet(p).select(pl.col("item_id").unique(), pl.lit(k).alias("week"))
                for k, p in enumerate(split.fit_weeks)
            ]
        )
        .group_by("item_id")
        .agg(pl.col("week").min().alias("first"))
    )
    week = scan_parquet(split.truth_week).group_by("item_id").agg(pl.len().alias("views"))
    pool = week.join(first, on="item_id").collect().sort("item_id")
    rng = np.random.default_rng([cfg.seed, cfg.holdout, 16])
    shuffled = pool.with_columns(pl.Series("draw", rng.permutation(pool.height)))
    if wanted.pseudo_pick == "youngest":
        shuffled = shuffled.sort(["first", "draw"], descending=[True, False])
    elif wanted.pseudo_pick == "viewed":  # a draw without replacement, weights = label-week views (Gumbel)
        gumbel = -np.log(-np.log(rng.random(pool.height)))
        key = np.log(pool["views"].to_numpy().astype(np.float64)) + gumbel
        shuffled = shuffled.with_columns(pl.Series("key", key)).sort("key", descending=True)
    else:
        shuffled = shuffled.sort("draw")
    drawn = shuffled["item_id"].to_numpy()
    pseudo = np.sort(drawn[: wanted.pseudo])
    rest = drawn[wanted.pseudo :]
    warm = np.sort(rng.permutation(rest)[: wanted.warm])
    return pseudo.astype(np.uint32), warm.astype(np.uint32)


def run_target_ids(
    cfg: RunConfig, split: Split, seen_ids: np.ndarray, pseudo: np.ndarray, warm: np.ndarray
) -> np.ndarray:
    """The run's target clips: the --targets file (a main run), else the truth week's clips unseen in the
    fit weeks (pseudo-new clips are unseen: their rows were hidden) plus the warm sample; a holdout run
    without `new` keeps only its pseudo-new and warm clips."""
    if cfg.targets is not None and cfg.holdout == 0:
        return read_targets_file(cfg.targets)
    if cfg.holdout > 0 and not cfg.holdout_targets.new:
        return np.union1d(pseudo, warm).astype(np.uint32)
    return np.union1d(default_targets(split, seen_ids), warm).astype(np.uint32)


def best_source_on_pools(frame: pl.DataFrame | None, sources: Sequence[str], k: int) -> tuple[str, dict]:
    """The source with the best NDCG@k on labelled holdout pools (`frame`: clip, user, label, rank__<s>),
    with every source's score; the first source (and no scores) when there are no pools."""
    if frame is None or frame.height == 0 or int(frame["label"].sum()) == 0:
        return sources[0], {}
    scores = {}
    for name in sources:
        merged = frame.filter(pl.col(f"rank__{name}").is_not_null()).select(
            "clip", "user", pl.col(f"rank__{name}").alias("rank")
        )
        scores[name] = round(pool_ndcg(merged, frame, k), 5)
    best = max(sources, key=lambda s: scores[s])  # ties: the first configured source
    return best, scores
