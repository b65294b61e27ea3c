"""Bridges from collaborative-filtering models, which only know old clips, to new clips.

* `BprBridgeSource` ('bpr_bridge'): BPR is fitted on the fit weeks' positives (users x clips). A ridge
  regression maps a clip's content embedding plus its author's mean clip factor to its BPR factor (fitted
  on old clips); a new clip's mapped factor queries an inner-product HNSW over the user factors.
  Limits: BPR costs epochs x positives SGD samples on one thread (Hogwild over threads would make the
  factors run-dependent), ~3 M samples/s: the epochs are cut so a fit takes at most `sample_budget` samples
  (150 M, under a minute; at VK density, 58 M positives, that is 2 epochs instead of 30); the map is
  (dim + factors)^2; the index n_users x factors. It learns only the most engaged users, while their
  positives add up to `max_positives` (`bpr_users`; 200 M: 3.2 GB of rows and pairs): the others are never
  answered. It is fitted in one process on those users' rows alone (`fit_rows`), which the Dask engine's user
  shards send (candidates/sharded.py's `sampled_rows`, `fit_on_rows`), so no step holds every user.
* `NeighbourBridgeSource` ('ease_bridge', 'slim_bridge'): a new clip stands in as the similarity-weighted sum
  of its nearest old clips (by embedding) among the model's scored clips; a user's score is
  X_u . B s_c (B the model's clip x clip weights, s_c those similarities). EASE keeps `max_items` clips
  (dense B: max_items^2 x 4 bytes); each query batch costs n_users x batch floats.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from audience.arrays import TopK, top_k, unit_rows
from audience.candidates.ann import HnswIndex
from audience.candidates.base import ClipQueries
from audience.candidates.coengagement import nearest_clip_weights
from audience.config import BprBridgeSettings, HnswConfig, NeighbourBridgeSettings
from audience.data.catalog import Catalog
from audience.models.bpr import BPR
from audience.models.ease import EASE
from audience.models.slim import SLIM
from audience.profiles.fit_data import FitData


def positives_matrix(data: FitData) -> sparse.csr_matrix:
    """Binary users x clips matrix of the fit weeks' positives."""
    matrix = data.histories["item_user_positives"].T.tocsr().astype(np.float32)
    matrix.data[:] = 1.0
    return matrix


def positive_rows(data: FitData, users: np.ndarray) -> sparse.csr_matrix:
    """The rows of `users` (indices into `data`'s users) of `positives_matrix`, in that order."""
    matrix = data.histories["item_user_positives"].T.tocsr()[users].astype(np.float32)
    matrix.data[:] = 1.0
    return matrix


def bpr_users(user_positives: np.ndarray, max_positives: int) -> np.ndarray:
    """The users BPR learns (sorted int32): those with positives, the most engaged first (ties to the smaller
    index), while their positives add up to at most `max_positives` (the most engaged one at least)."""
    users = np.flatnonzero(user_positives > 0)
    if user_positives[users].sum() <= max_positives:
        return users.astype(np.int32)
    order = users[np.lexsort((users, -user_positives[users]))]
    kept = max(1, int(np.searchsorted(np.cumsum(user_positives[order]), max_positives, side="right")))
    return np.sort(order[:kept]).astype(np.int32)


def _author_mean(
    factors: np.ndarray, item_author: np.ndarray, items: np.ndarray, n_authors: int
) -> np.ndarray:
    sums = np.zeros((n_authors, factors.shape[1]))
    np.add.at(sums, item_author[items], factors[items])
    counts = np.bincount(item_author[items], minlength=n_authors)[:, None]
    return (sums / np.maximum(counts, 1)).astype(np.float32)


class BprBridgeSource:
    name = "bpr_bridge"
    fits_on_sampled_rows = True  # sample_users, sample_rows, fit_rows (candidates/sharded.py)

    def __init__(
        self,
        settings: BprBridgeSettings | None = None,
        hnsw: HnswConfig | None = None,
        n_threads: int = 1,
        seed: int = 0,
    ):
        settings = settings or BprBridgeSettings()
        self.factors, self.epochs, self.ridge = settings.factors, settings.epochs, settings.ridge
        self.sample_budget, self.max_positives = settings.sample_budget, settings.max_positives
        self.hnsw = hnsw or HnswConfig()
        self.n_threads, self.seed = n_threads, seed

    def _features(self, embedding: np.ndarray, author: np.ndarray) -> np.ndarray:
        author_part = np.where((author >= 0)[:, None], self.author_factor[np.maximum(author, 0)], 0.0)
        return np.hstack([embedding, author_part, np.ones((embedding.shape[0], 1))]).astype(np.float32)

    def sample_users(self, counts: FitData) -> np.ndarray:
        """The users this source learns (`bpr_users`), from the fit data's counts alone."""
        return bpr_users(counts.user_positives, self.max_positives)

    def sample_rows(self, data: FitData, users: np.ndarray) -> sparse.csr_matrix:
        """What `fit_rows` reads of `users` (indices into `data`'s users): their positives' rows."""
        return positive_rows(data, users)

    def fit(self, data: FitData, catalog: Catalog) -> BprBridgeSource:
        users = self.sample_users(data)
        return self.fit_rows(self.sample_rows(data, users), users, catalog)

    def fit_rows(self, X: sparse.csr_matrix, users: np.ndarray, catalog: Catalog) -> BprBridgeSource:
        """Fitted on the positives' rows `X` of `users` (global indices, sorted): `positive_rows`."""
        epochs = max(1, min(self.epochs, self.sample_budget // max(X.nnz, 1)))
        model = BPR(factors=self.factors, epochs=epochs, n_threads=1, seed=self.seed).fit(X)
        old = np.flatnonzero(catalog.has_embedding & (np.bincount(X.indices, minlength=X.shape[1]) > 0))
        self.author_factor = _author_mean(model.item_factors, catalog.item_author, old, len(catalog.authors))
        A = self._features(catalog.embedding[old], catalog.item_author[old]).astype(np.float64)
        self.map = np.linalg.solve(A.T @ A + self.ridge * np.eye(A.shape[1]), A.T @ model.item_factors[old])
        rows = np.flatnonzero(np.diff(X.indptr) > 0)
        self.index = HnswIndex.from_config("ip", self.hnsw, self.n_threads, self.seed).build(
            model.user_factors[rows], np.asarray(users, dtype=np.int32)[rows]
        )
        return self

    def recommend(self, clips: ClipQueries, k: int) -> TopK:
        out = TopK.empty(len(clips), k)
        rows = np.flatnonzero(clips.has_embedding)
        mapped = (self._features(clips.embedding[rows], clips.author[rows]) @ self.map).astype(np.float32)
        found = self.index.query(mapped, k)
        out.ids[rows], out.scores[rows] = found.ids, found.scores
        return out


class NeighbourBridgeSource:
    def __init__(
        self,
        model: str = "ease",
        settings: NeighbourBridgeSettings | None = None,
        hnsw: HnswConfig | None = None,
        n_threads: int = 1,
        seed: int = 0,
    ):
        if model not in ("ease", "slim"):
            raise ValueError(f"model must be 'ease' or 'slim', got {model!r}")
        settings = settings or NeighbourBridgeSettings()
        self.model_name, self.n_neighbours = model, settings.n_neighbours
        self.batch, self.max_items = settings.batch, settings.max_items
        self.name = f"{model}_bridge"
        self.hnsw = hnsw or HnswConfig()
        self.n_threads, self.seed = n_threads, seed

    def fit(self, data: FitData, catalog: Catalog) -> NeighbourBridgeSource:
        X = positives_matrix(data)
        # EASE keeps its 10k most popular clips: dense B is 10k^2 x 4 bytes (381 MB).
        # At 30k clips the fit crashed (segfault inside the dense Gram/LAPACK path, 7 GB float64): not used.
        model = (
            EASE(max_items=self.max_items) if self.model_name == "ease" else SLIM(max_items=self.max_items)
        )
        model.fit(X)
        scored = model.scored_items
        usable = scored[catalog.has_embedding[scored]]
        self.scored = scored
        self.B = model.item_item  # dense (EASE) or sparse (SLIM), indexed by position in `scored`
        X = X[:, scored].tocsr()
        self.users = np.flatnonzero(np.diff(X.indptr) > 0).astype(np.int32)
        self.X = X[self.users]  # users with history x scored clips
        self.dim = catalog.embedding.shape[1]
        self.n_items = catalog.n_items
        self.neighbours = HnswIndex.from_config("cosine", self.hnsw, self.n_threads, self.seed)
        self.neighbours.build(unit_rows(catalog.embedding[usable]), usable.astype(np.int32))
        return self

    def recommend(self, clips: ClipQueries, k: int) -> TopK:
        out = TopK.empty(len(clips), k)
        rows = np.flatnonzero(clips.has_embedding)
        n_items = self.n_items
        for start in range(0, rows.size, self.batch):  # batches of clips: one sparse x dense product each
            part = rows[start : start + self.batch]
            weights = nearest_clip_weights(
                self.neighbours, clips.embedding[part, : self.dim], self.n_neighbours, 1.0, n_items
            )[:, self.scored].T  # (n_scored, batch); the indexed clips are all scored clips
            virtual = self.B @ weights  # (n_scored, batch): each new clip as a weighted mix of old columns
            virtual = virtual.toarray() if sparse.issparse(virtual) else np.asarray(virtual)
            scores = np.asarray(self.X @ virtual).T  # (batch, users with history)
            top = top_k(scores.astype(np.float32), k, self.users)
            out.ids[part], out.scores[part] = top.ids, top.scores
        return out
