"""Warm targets as candidates: in VK-LSVD no (user, clip) pair repeats, so a user who already saw a warm
target cannot be a new positive for it. `ExcludeSeen` wraps any generator and drops the clip's fit-week
audience (data/target_history.py) from its lists; `largest_audience` and `drop_seen` do the same for answers
gathered another way (user shards merged: stages/candidates.py).
Limits: the source is asked for up to twice `k` users, so a clip whose audience fills more than that can
come back short (the assignment fills it)."""

from __future__ import annotations

import numpy as np
import polars as pl

from audience.arrays import TopK
from audience.candidates.base import CandidateSource, ClipQueries
from audience.data.catalog import Catalog
from audience.data.ids import unique_sorted
from audience.data.target_history import seen_pairs
from audience.profiles.fit_data import FitData


def largest_audience(history: pl.DataFrame) -> int:
    """The largest fit-week audience of any target: how many users beyond `k` to ask a source for, at most
    `k` (so a clip's list does not depend on which other clips share its batch)."""
    audience = history.select("item_id", "user_id").unique()["item_id"].value_counts()
    return int(audience["count"].max()) if audience.height else 0


def drop_seen(top: TopK, seen: tuple[np.ndarray, np.ndarray], n_users: int, k: int) -> TopK:
    """`top` (global user indices, one row per clip) without the `seen` pairs (row, user:
    data/target_history.seen_pairs of the same clips), the source's order kept, cut to `k`."""
    row, user = seen
    if row.size == 0:
        return TopK(top.ids[:, :k], top.scores[:, :k])
    seen_keys = unique_sorted(row * np.int64(n_users) + user)
    keys = np.arange(top.ids.shape[0], dtype=np.int64)[:, None] * np.int64(n_users) + top.ids
    drop = np.isin(keys, seen_keys) | (top.ids < 0)
    order = np.argsort(drop, axis=1, kind="stable")[:, :k]  # kept users first, in the source's order
    users = np.take_along_axis(np.where(drop, -1, top.ids), order, axis=1)
    scores = np.take_along_axis(np.where(drop, -np.inf, top.scores), order, axis=1)
    return TopK(users.astype(np.int32), scores.astype(np.float32))


class ExcludeSeen:
    """A generator whose lists leave out each clip's fit-week audience (the wrapped source's order kept)."""

    def __init__(self, inner: CandidateSource, history: pl.DataFrame):
        self.inner, self.history = inner, history
        self.name = inner.name
        self.whole_batch = getattr(inner, "whole_batch", False)
        self.catalog: Catalog | None = None
        self.largest = 0  # largest_audience, counted once at fit

    def fit(self, data: FitData, catalog: Catalog) -> ExcludeSeen:
        self.inner.fit(data, catalog)
        return self.around_fitted(catalog)

    def around_fitted(self, catalog: Catalog) -> ExcludeSeen:
        """This wrapper around an inner source fitted another way (on rows gathered from user shards)."""
        self.catalog = catalog
        self.largest = largest_audience(self.history)
        return self

    def recommend(self, clips: ClipQueries, k: int) -> TopK:
        assert self.catalog is not None, "fit first"
        seen = seen_pairs(self.history, clips.item_ids, self.catalog)
        if seen[0].size == 0:
            return self.inner.recommend(clips, k)
        top = self.inner.recommend(clips, k + min(self.largest, k))
        return drop_seen(top, seen, self.catalog.n_users, k)


def excluding_seen(inner: CandidateSource, history: pl.DataFrame, catalog: Catalog) -> ExcludeSeen:
    """`inner`, fitted another way, wrapped to leave out the targets' fit-week audience `history`
    (module-level, so an engine can wrap a source where it was fitted)."""
    return ExcludeSeen(inner, history).around_fitted(catalog)
