"""Random baseline: k distinct users per clip drawn uniformly from users with history (seeded).

O(n_clips x k): a single random permutation of users, read at a random offset per clip, so lists are
distinct within a clip without a per-clip draw."""

from __future__ import annotations

import numpy as np

from audience.arrays import TopK
from audience.candidates.base import ClipQueries
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData


class RandomSource:
    name = "random"
    whole_batch = True  # a clip's draw depends on its place in the batch: engines query every clip at once
    reads_counts_only = True  # fits on FitData's activity counts alone (FitData.load(counts_only=True))

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.users: np.ndarray | None = None

    def fit(self, data: FitData, catalog: Catalog) -> RandomSource:
        self.users = np.flatnonzero(data.user_views > 0).astype(np.int32)
        return self

    def recommend(self, clips: ClipQueries, k: int) -> TopK:
        assert self.users is not None, "fit first"
        rng = np.random.default_rng(self.seed)
        n_users = self.users.shape[0]
        out = TopK.empty(len(clips), k)
        k_eff = min(k, n_users)
        if k_eff == 0:
            return out
        perm = rng.permutation(self.users)
        offsets = rng.integers(0, n_users, size=len(clips))
        out.ids[:, :k_eff] = perm[(offsets[:, None] + np.arange(k_eff)[None, :]) % n_users]
        out.scores[:, :k_eff] = rng.random((len(clips), k_eff)).astype(np.float32)
        out.scores[:, :k_eff] = -np.sort(-out.scores[:, :k_eff], axis=1)
        return out
