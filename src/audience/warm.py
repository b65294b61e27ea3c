"""Warm targets: target clips that already have interactions in the fit weeks.

In VK-LSVD no (user, clip) pair repeats, so a user who already saw a warm target cannot be a new positive
for it: `ExcludeSeen` wraps any generator and drops the clip's earlier audience from its lists. The
clip's history (`target_history.parquet`, written by the profiles stage: one row per fit-week interaction
with a warm target) also gives the reranker four features (`history_features`): views, positives,
positive rate and age in weeks (weeks since its first fit-week interaction). `group_ndcg` splits a
method's NDCG into the cold and the warm targets.
Limits: the history pass reads the user_id/item_id/flag columns of every fit week filtered to the warm
targets (polars pushes the filter into the scan); the exclusion asks the wrapped source for up to twice
`k` users, so a clip whose audience fills more than that can come back short (assignment fills it)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from audience.arrays import TopK
from audience.candidates.base import CandidateSource, ClipQueries
from audience.data.catalog import Catalog
from audience.data.ids import unique_sorted
from audience.data.location import scan_parquet
from audience.data.schema import INTERACTIONS_SCHEMA, check_schema
from audience.io import write_parquet
from audience.profiles.fit_data import FitData

HISTORY_SCHEMA = {"item_id": pl.UInt32, "user_id": pl.UInt32, "positive": pl.Boolean, "weeks_ago": pl.Int32}
HISTORY_FEATURES = ("clip_past_views", "clip_past_positives", "clip_past_positive_rate", "clip_age_weeks")


def target_history(
    fit_weeks: Sequence[Path], warm_ids: np.ndarray, positive_flags: Sequence[str]
) -> pl.DataFrame:
    """Every fit-week interaction with the `warm_ids` clips: item_id, user_id, positive, weeks_ago (0 for
    the last fit week)."""
    if len(warm_ids) == 0:
        return pl.DataFrame(schema=HISTORY_SCHEMA)
    wanted = pl.Series(np.asarray(warm_ids, dtype=np.uint32), dtype=pl.UInt32).implode()
    parts = []
    for k, path in enumerate(fit_weeks):
        check_schema(path, INTERACTIONS_SCHEMA, ("user_id", "item_id", *positive_flags))
        parts.append(
            scan_parquet(path)
            .filter(pl.col("item_id").is_in(wanted))
            .select(
                "item_id",
                "user_id",
                pl.any_horizontal(*positive_flags).alias("positive"),
                pl.lit(len(fit_weeks) - 1 - k, pl.Int32).alias("weeks_ago"),
            )
        )
    return pl.concat(parts).collect().cast(HISTORY_SCHEMA)


def write_target_history(
    path: Path,
    fit_weeks: Sequence[Path],
    target_ids: np.ndarray,
    seen_ids: np.ndarray,
    positive_flags: Sequence[str],
) -> None:
    """The history of the targets seen in the fit weeks (an empty file for an all-cold target list)."""
    warm_ids = np.intersect1d(target_ids, seen_ids, assume_unique=True)  # both hold each clip once
    write_parquet(target_history(fit_weeks, warm_ids, positive_flags), path)


def read_target_history(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path) if Path(path).is_file() else pl.DataFrame(schema=HISTORY_SCHEMA)


def seen_pairs(
    history: pl.DataFrame, item_ids: np.ndarray, catalog: Catalog
) -> tuple[np.ndarray, np.ndarray]:
    """(row in `item_ids`, user index) of every user who interacted with a target in the fit weeks."""
    rows = pl.DataFrame({"item_id": pl.Series(item_ids, dtype=pl.UInt32)}).with_row_index("row")
    pairs = history.select("item_id", "user_id").unique().join(rows, on="item_id")
    users = catalog.users.lookup(pairs["user_id"].to_numpy())
    known = users >= 0
    return pairs["row"].to_numpy()[known].astype(np.int64), users[known].astype(np.int64)


class ExcludeSeen:
    """A generator whose lists leave out each clip's fit-week audience (the wrapped source's order kept)."""

    def __init__(self, inner: CandidateSource, history: pl.DataFrame):
        self.inner, self.history = inner, history
        self.name = inner.name
        self.whole_batch = getattr(inner, "whole_batch", False)
        self.catalog: Catalog | None = None
        # users asked for beyond k: the largest audience of any target (so a clip's list does not depend
        # on which other clips share its batch)
        self.extra = 0

    def fit(self, data: FitData, catalog: Catalog) -> ExcludeSeen:
        self.inner.fit(data, catalog)
        self.catalog = catalog
        audience = self.history.select("item_id", "user_id").unique()["item_id"].value_counts()
        self.extra = int(audience["count"].max()) if audience.height else 0
        return self

    def recommend(self, clips: ClipQueries, k: int) -> TopK:
        assert self.catalog is not None, "fit first"
        row, user = seen_pairs(self.history, clips.item_ids, self.catalog)
        if row.size == 0:
            return self.inner.recommend(clips, k)
        extra = min(self.extra, k)
        top = self.inner.recommend(clips, k + extra)
        n_users = np.int64(self.catalog.n_users)
        seen_keys = unique_sorted(row * n_users + user)
        keys = np.arange(len(clips), dtype=np.int64)[:, None] * n_users + top.ids
        drop = np.isin(keys, seen_keys) | (top.ids < 0)
        order = np.argsort(drop, axis=1, kind="stable")[:, :k]  # kept users first, in the source's order
        users = np.take_along_axis(np.where(drop, -1, top.ids), order, axis=1)
        scores = np.take_along_axis(np.where(drop, -np.inf, top.scores), order, axis=1)
        return TopK(users.astype(np.int32), scores.astype(np.float32))


def history_features(pool: pl.DataFrame, item_ids: np.ndarray, history: pl.DataFrame) -> pl.DataFrame:
    """The pool with the clip-history columns: views, positives and positive rate in the fit weeks, age in
    weeks since its first fit-week interaction (NaN for a clip without history: cold or pseudo-new)."""
    per_clip = history.group_by("item_id").agg(
        pl.len().cast(pl.Float32).alias("clip_past_views"),
        pl.col("positive").sum().cast(pl.Float32).alias("clip_past_positives"),
        (pl.col("weeks_ago").max() + 1).cast(pl.Float32).alias("clip_age_weeks"),
    )
    clips = (
        pl.DataFrame({"item_id": pl.Series(item_ids, dtype=pl.UInt32)})
        .with_row_index("clip")
        .join(per_clip, on="item_id", how="left")
        .with_columns(
            pl.col("clip_past_views").fill_null(0.0),
            pl.col("clip_past_positives").fill_null(0.0),
            (pl.col("clip_past_positives") / pl.col("clip_past_views")).alias("clip_past_positive_rate"),
        )
        .select(pl.col("clip").cast(pool.schema["clip"]), *HISTORY_FEATURES)
        .with_columns(pl.col(HISTORY_FEATURES).cast(pl.Float32).fill_nan(None).fill_null(np.nan))
    )
    return pool.join(clips, on="clip", how="left")


def group_ndcg(per_clip: pl.DataFrame, targets: pl.DataFrame, suffix: str) -> dict[str, float]:
    """Mean NDCG of the cold and the warm targets (per_clip: item_id, ndcg); empty without warm targets."""
    if "warm" not in targets.columns or not targets["warm"].any():
        return {}
    joined = per_clip.join(targets.select(pl.col("item_id").cast(pl.UInt32), "warm"), on="item_id")
    out = {}
    for group, flag in (("cold", False), ("warm", True)):
        values = joined.filter(pl.col("warm") == flag)["ndcg"]
        out[f"ndcg_{suffix}_{group}"] = float(values.mean()) if values.len() else float("nan")
    return out


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


def without_hidden_audience(
    pool: pl.DataFrame, item_ids: np.ndarray, split, cfg, catalog: Catalog
) -> pl.DataFrame:
    """A holdout run's pool (clip rows follow `item_ids`) without the (pseudo-new clip, user) pairs whose
    interaction was hidden from its fit weeks: pairs do not repeat, so those users cannot be positives of
    the label week, and keeping them as negatives teaches the reranker that users like a clip's audience do
    not engage with it. Real new clips have no such users. Costs one fit-week scan filtered to the clips."""
    from audience.rank.protocol import holdout_samples  # the rank package imports this module

    pseudo, _ = holdout_samples(split, cfg)
    if pseudo.size == 0:
        return pool
    row, user = seen_pairs(target_history(split.fit_weeks, pseudo, cfg.positive_flags), item_ids, catalog)
    hidden = pl.DataFrame({"clip": row, "user": user}).cast(
        {"clip": pool.schema["clip"], "user": pool.schema["user"]}
    )
    return pool.join(hidden, on=["clip", "user"], how="anti")
