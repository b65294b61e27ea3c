"""Warm targets as candidates: in VK-LSVD no (user, clip) pair repeats, so a user who already saw a warm
target cannot be a new positive for it. `ExcludeSeen` wraps any generator and drops the clip's fit-week
audience (data/target_history.py) from its lists.
Limits: it asks the wrapped source for up to twice `k` users, so a clip whose audience fills more than that
can come back short (the assignment fills it)."""

from __future__ import annotations

import numpy as np
import polars as pl

from audience.arrays import TopK
from audience.candidates.base import CandidateSource, ClipQueries
from audience.data.catalog import Catalog
from audience.data.ids import unique_sorted
from audience.data.target_history import seen_pairs
from audience.profiles.fit_data import FitData


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
