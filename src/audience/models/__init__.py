"""Collaborative-filtering models over a user x clip interaction matrix (scipy CSR, rows = users, columns =
clips, dense int32 indices): EASE (closed form), SLIM (sparse ElasticNet item-item) and BPR (matrix
factorisation, numba SGD).

Every model has the same two calls:

* ``fit(X) -> self``
* ``recommend(user_rows, X, k, filter_seen=True, whitelist=None) -> TopK``: for each row of
  ``X[user_rows]`` the top-``k`` clips as an ``audience.arrays.TopK`` (the generators' shape; unpacks as
  ``ids, scores``): ids ``(n, k)`` int32 padded with -1 and scores ``(n, k)`` float32 padded with -inf,
  each row sorted by score descending, ties by clip id ascending. ``filter_seen``
  drops the clips already in the user's row of ``X``; ``whitelist`` (clip indices) restricts the answer
  to those clips. Users are scored in batches (one matrix product + argpartition per batch).

Item-item models (EASE, SLIM) score a user from their row of ``X``, so any ``X`` with the fitted number of
columns works (a later week, a single user...); BPR scores from its fitted ``user_factors`` and uses ``X``
only to know what each user has seen. Models that keep only part of the catalogue (``max_items``) never
return the other clips. The shared machinery lives here (``ScoredRecommender``, ``popular_items``,
``restrict_columns``); the model classes are
imported lazily (``from audience.models import EASE``) so that their numba code compiles only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import scipy.sparse as sp

from audience.arrays import TopK, top_k

__all__ = [
    "BPR",
    "EASE",
    "SLIM",
    "ScoredRecommender",
    "check_interactions",
    "popular_items",
    "restrict_columns",
]

_LAZY = {"EASE": "audience.models.ease", "SLIM": "audience.models.slim", "BPR": "audience.models.bpr"}

# Dense scores held at once while recommending (bytes); a batch is at least one user.
SCORE_BUDGET_BYTES = 128 * 2**20


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'audience.models' has no attribute {name!r}")


def check_interactions(X: Any, n_items: int | None = None) -> sp.csr_matrix:
    """``X`` as a canonical CSR matrix (sorted indices, no duplicates); raises on a wrong shape or type."""
    if not sp.issparse(X):
        raise TypeError(f"X must be a scipy sparse matrix, got {type(X).__name__}")
    X = sp.csr_matrix(X)
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()  # also sorts the indices
    if n_items is not None and X.shape[1] != n_items:
        raise ValueError(f"X has {X.shape[1]} columns, the model was fitted on {n_items}")
    return X


def popular_items(X: sp.csr_matrix, max_items: int | None) -> np.ndarray:
    """Indices (ascending, int32) of the ``max_items`` clips with the most interactions (nonzeros; ties by
    lower index); all clips with at least one interaction when ``max_items`` is None."""
    counts = np.bincount(X.indices, minlength=X.shape[1])
    active = np.flatnonzero(counts > 0)
    if max_items is not None and active.size > max_items:
        order = np.lexsort((active, -counts[active]))  # count desc, index asc
        active = np.sort(active[order[:max_items]])
    return active.astype(np.int32)


def restrict_columns(X: sp.csr_matrix, items: np.ndarray, n_items: int) -> sp.csr_matrix:
    """``X[:, items]`` for ascending ``items`` (CSR, sorted indices), without scipy's fancy-indexing copy."""
    pos = np.full(n_items, -1, dtype=np.int64)
    pos[items] = np.arange(items.size)
    p = pos[X.indices]
    keep = p >= 0
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    indptr = np.zeros(X.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=X.shape[0]), out=indptr[1:])
    return sp.csr_matrix((X.data[keep], p[keep], indptr), shape=(X.shape[0], items.size))


class ScoredRecommender:
    """Shared ``recommend``: subclasses set ``n_items`` and ``scored_items`` (int32 clip indices the model
    can score, ascending) and implement ``_score(user_rows, X_rows, cols) -> (n, len(cols)) float32``, the
    scores of the batch users for the scored clips at positions ``cols`` of ``scored_items``."""

    n_items: int
    scored_items: np.ndarray

    def _score(self, user_rows: np.ndarray, X_rows: sp.csr_matrix, cols: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if getattr(self, "scored_items", None) is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(X) first")

    def _check_users(self, user_rows: np.ndarray, X: sp.csr_matrix) -> None:
        """Hook for models whose users are fixed at fit time (BPR)."""

    def recommend(
        self,
        user_rows: np.ndarray,
        X: sp.csr_matrix,
        k: int,
        filter_seen: bool = True,
        whitelist: np.ndarray | None = None,
    ) -> TopK:
        """Top-``k`` clips for each user row (see the module docstring): ids (n, k) int32 padded with -1,
        scores (n, k) float32 padded with -inf, sorted by score descending, then clip id ascending."""
        self._check_fitted()
        X = check_interactions(X, self.n_items)
        user_rows = np.asarray(user_rows, dtype=np.int64).reshape(-1)
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if user_rows.size and (user_rows.min() < 0 or user_rows.max() >= X.shape[0]):
            raise IndexError(f"user_rows must be in [0, {X.shape[0]})")
        self._check_users(user_rows, X)
        # candidate columns: positions in scored_items (all, or the whitelist's scored clips)
        if whitelist is None:
            cols = np.arange(self.scored_items.size, dtype=np.int64)
        else:
            wl = np.unique(np.asarray(whitelist, dtype=np.int64))
            pos = np.searchsorted(self.scored_items, wl)
            pos = np.minimum(pos, max(self.scored_items.size - 1, 0))
            cols = pos[(self.scored_items.size > 0) & (self.scored_items[pos] == wl)] if wl.size else pos[:0]
        cand_ids = self.scored_items[cols].astype(np.int32)
        n = user_rows.size
        out = TopK.empty(n, k)
        if n == 0 or k == 0 or cols.size == 0:
            return out
        # clip id -> column of the candidate block, for filtering what was seen
        slot = np.full(self.n_items, -1, dtype=np.int64)
        slot[cand_ids] = np.arange(cand_ids.size)
        batch = max(1, SCORE_BUDGET_BYTES // (4 * cand_ids.size))
        for start in range(0, n, batch):
            rows = user_rows[start : start + batch]
            X_rows = X[rows]
            scores = np.ascontiguousarray(self._score(rows, X_rows, cols), dtype=np.float32)
            if filter_seen and X_rows.nnz:
                r = np.repeat(np.arange(rows.size), np.diff(X_rows.indptr))
                c = slot[X_rows.indices]
                keep = c >= 0
                scores[r[keep], c[keep]] = -np.inf
            ids, top = top_k(scores, k, cand_ids)
            out.ids[start : start + rows.size] = ids
            out.scores[start : start + rows.size] = top
        return out
