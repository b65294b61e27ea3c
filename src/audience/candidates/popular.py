"""Popularity: the most engaged users, the same list for every clip (the challenge's sample submission).

Score = positive interactions in the fit weeks, ties broken by views. Cost: O(n_users) to fit; any number
of clips. It is also the fallback for clips nothing else can score (no embedding, no metadata)."""

from __future__ import annotations

import numpy as np

from audience.arrays import TopK, top_k
from audience.candidates.base import ClipQueries
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData


class PopularSource:
    name = "popular"
    reads_counts_only = True  # fits on FitData's activity counts alone (FitData.load(counts_only=True))

    def __init__(self) -> None:
        self.order: np.ndarray | None = None
        self.score: np.ndarray | None = None

    def fit(self, data: FitData, catalog: Catalog) -> PopularSource:
        views = data.user_views.astype(np.float64)
        score = data.user_positives + views / (views.max() + 1.0)
        score = np.where(views > 0, score, -np.inf)
        top = top_k(score[None, :], int(np.isfinite(score).sum()))
        self.order, self.score = top.ids[0], top.scores[0]
        return self

    def ranking(self) -> np.ndarray:
        """Every user with history, most popular first (the fallback order for assignment)."""
        assert self.order is not None, "fit first"
        return self.order

    def recommend(self, clips: ClipQueries, k: int) -> TopK:
        assert self.order is not None and self.score is not None, "fit first"
        out = TopK.empty(len(clips), k)
        k_eff = min(k, self.order.shape[0])
        out.ids[:, :k_eff] = self.order[:k_eff]
        out.scores[:, :k_eff] = self.score[:k_eff]
        return out


def fallback_order(fit: FitData, catalog: Catalog) -> np.ndarray:
    """Popular users first, then users without history: what fills a clip the candidates leave short
    (assign.assign_with_cap's `fallback_order`)."""
    popular = PopularSource().fit(fit, catalog).ranking()
    without_history = np.ones(catalog.n_users, dtype=bool)
    without_history[popular] = False
    rest = np.flatnonzero(without_history)
    return np.concatenate([popular, rest]).astype(np.int32)
