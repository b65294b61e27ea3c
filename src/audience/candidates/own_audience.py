"""Own audience: for a warm target (a clip with positives in the fit weeks), the users like its engaged users.

score(u, c) = sum over the n clips j most co-engaged with c of cos(c, j) x positives(u, j), where a clip is
its column of recency-weighted positives (FitData.histories['item_user_positives']) and cos(c, j) compares
the users who engaged with c and j: item-item co-engagement from the clip's own column. The users it ranks
are its audience's neighbours (they engaged with what its audience engaged with). c itself is left out.
A cold clip (no positives in the fit weeks) gets no users. Limits: a batch's co-engagement product holds
up to batch x (clips co-engaged with c) entries; the users' top-k (`arrays.product_top_k`) costs
n x (users per clip) multiply-adds per query and a buffer of about 32 x n_users bytes per thread."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from audience.arrays import TopK, product_top_k, sparse_top_k
from audience.candidates.base import ClipQueries
from audience.config import OwnAudienceSettings
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData


class OwnAudienceSource:
    name = "own_audience"

    def __init__(self, settings: OwnAudienceSettings | None = None):
        settings = settings or OwnAudienceSettings()
        self.n_neighbours, self.batch = settings.n_neighbours, settings.batch
        self.item_users: sparse.csr_matrix | None = None
        self.user_items: sparse.csr_matrix | None = None
        self.inv_norm: np.ndarray | None = None
        self.catalog: Catalog | None = None

    def fit(self, data: FitData, catalog: Catalog) -> OwnAudienceSource:
        self.item_users = data.histories["item_user_positives"].tocsr().astype(np.float32)
        self.user_items = self.item_users.T.tocsr()
        norm = np.sqrt(np.asarray(self.item_users.multiply(self.item_users).sum(axis=1)).ravel())
        self.inv_norm = np.where(norm > 0, 1.0 / np.maximum(norm, 1e-12), 0.0).astype(np.float32)
        self.catalog = catalog
        return self

    def recommend(self, clips: ClipQueries, k: int) -> TopK:
        assert self.item_users is not None and self.catalog is not None, "fit first"
        out = TopK.empty(len(clips), k)
        index = self.catalog.items.lookup(clips.item_ids)
        warm = np.flatnonzero((index >= 0) & (self.inv_norm[np.maximum(index, 0)] > 0))
        for start in range(0, warm.size, self.batch):  # batches of clips, each a few sparse products
            rows = warm[start : start + self.batch]
            own = index[rows]
            cosine = (self.item_users[own] @ self.user_items).multiply(self.inv_norm[None, :]).tocsr()
            cosine = sparse.csr_matrix(cosine.multiply(self.inv_norm[own][:, None]))
            cosine[np.arange(own.size), own] = 0.0  # the clip itself is not its own neighbour
            cosine.eliminate_zeros()
            near = sparse_top_k(cosine, self.n_neighbours)
            valid = near.ids >= 0
            weights = sparse.csr_matrix(
                (near.scores[valid], (np.nonzero(valid)[0], near.ids[valid])),
                shape=(own.size, self.item_users.shape[0]),
            )
            top = product_top_k(weights, self.item_users, k)
            out.ids[rows], out.scores[rows] = top.ids, top.scores
        return out
