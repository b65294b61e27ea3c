"""User picks: the other direction. Each user chooses their own best target clips, and each clip's list is
the users who chose it.

Every clip -> users source ranks a clip's users against each other, so under the cap (a user in at most
`user_cap` lists) the same heavy users top every clip's list and the lighter users who would fill the capped
lists are in no pool. Here every user with a history picks `per_user` clips among all the target clips at
once, where `per_user` = `share` x (targets x list_size / users picking): `share` times a user's fair part of
the slots, from the data's own sizes. A clip's list holds the users who picked it, ordered by how close the
clip comes to the user's favourite pick (the pair's score over the user's best score; ties by user index),
so the clip keeps first the users for whom it is a first choice.

Kinds:
- 'picks:<profile>': the cosine between the user's averaged-embedding profile and the clip's embedding,
  searched with one HNSW index over the target clips (clips without an embedding are never picked).
- 'picks:author': the user's author-fan score for the clip's author (candidates/authors.py), one sparse
  product per block of users; a user's picks are the clips of their favourite authors among the targets
  (clips of one author tie and are taken in index order).

Limits: it needs every target clip in one call (`whole_batch`; the Dask engine asks it once). Memory:
users x per_user pairs (9.6 M at 100,000 users and 47,765 targets with share 2), plus for 'picks:author'
one block of users x their authors' target clips. A clip that more than `k` users pick keeps its top `k`."""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse

from audience.arrays import TopK, product_top_k, sparse_top_k, unit_rows
from audience.candidates.ann import HnswIndex
from audience.candidates.authors import AuthorFansSource
from audience.candidates.base import ClipQueries
from audience.config import AuthorFansSettings, HnswConfig, PicksSettings
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData


def picks_per_user(n_clips: int, n_users: int, list_size: int, share: float, minimum: int) -> int:
    """How many clips each user picks: `share` x their fair part of the slots, at least `minimum`, at most
    every clip."""
    fair = n_clips * list_size / max(n_users, 1)
    return int(min(n_clips, max(minimum, math.ceil(share * fair))))


def turn_around(picks: TopK, users: np.ndarray, n_clips: int, n_users: int, k: int) -> TopK:
    """Per-user picks (rows = `users`, ids = clip rows, each row best first) -> each clip's top-`k` users
    by the pick's score over the user's best score (the raw score where the best is not positive), ties by
    user index (the arrays module's tie rule)."""
    valid = picks.ids >= 0
    best = picks.scores[:, :1].astype(np.float64)
    relative = np.where(best > 0, picks.scores / np.where(best > 0, best, 1.0), picks.scores)
    per_row = valid.sum(axis=1)
    matrix = sparse.csr_matrix(
        (
            relative[valid].astype(np.float32),
            (picks.ids[valid], np.repeat(users, per_row)),
        ),
        shape=(n_clips, n_users),
    )
    return sparse_top_k(matrix, k)


class UserPicksSource:
    """'picks:<profile>' or 'picks:author' (see the module docstring)."""

    whole_batch = True  # a user's picks are chosen among every target clip at once

    def __init__(
        self,
        kind: str = "positive",
        list_size: int = 100,
        settings: PicksSettings | None = None,
        hnsw: HnswConfig | None = None,
        n_threads: int = 1,
        seed: int = 0,
        user_block: int = 8192,
        fans: AuthorFansSettings | None = None,
    ):
        self.kind, self.list_size = kind, list_size
        settings = settings or PicksSettings()
        self.share, self.minimum, self.fans = settings.share, settings.minimum, fans
        self.hnsw = hnsw or HnswConfig()
        self.n_threads, self.seed, self.user_block = n_threads, seed, user_block
        self.name = f"picks:{kind}"
        self.n_users = 0
        self.users: np.ndarray | None = None  # user indices that pick
        self.vectors: np.ndarray | None = None  # their unit profiles ('picks:<profile>')
        self.user_authors: sparse.csr_matrix | None = None  # users x authors fan scores ('picks:author')

    def fit(self, data: FitData, catalog: Catalog) -> UserPicksSource:
        self.n_users = data.n_users
        if self.kind == "author":
            fans = AuthorFansSource(self.fans).fit(data, catalog).author_users
            assert fans is not None
            self.user_authors = fans.T.tocsr()
            self.users = np.flatnonzero(np.diff(self.user_authors.indptr) > 0).astype(np.int32)
            return self
        if self.kind not in data.profiles:
            raise ValueError(
                f"{self.name}: profile {self.kind!r} was not built; built: {sorted(data.profiles)}"
            )
        self.users = np.flatnonzero(data.profile_weight[self.kind] > 0).astype(np.int32)
        self.vectors = data.profiles[self.kind][self.users]
        return self

    def recommend(self, clips: ClipQueries, k: int) -> TopK:
        assert self.users is not None, "fit first"
        n_clips = len(clips)
        per_user = picks_per_user(n_clips, self.users.size, self.list_size, self.share, self.minimum)
        if n_clips == 0 or self.users.size == 0:
            return TopK.empty(n_clips, k)
        picks = (
            self._author_picks(clips, per_user)
            if self.kind == "author"
            else self._profile_picks(clips, per_user)
        )
        return turn_around(picks, self.users, n_clips, self.n_users, k)

    def _profile_picks(self, clips: ClipQueries, per_user: int) -> TopK:
        assert self.vectors is not None
        rows = np.flatnonzero(clips.has_embedding).astype(np.int32)
        index = HnswIndex.from_config("cosine", self.hnsw, self.n_threads, self.seed)
        index.build(unit_rows(clips.embedding[rows, : self.vectors.shape[1]]), np.arange(rows.size))
        found = index.query(self.vectors, per_user)
        ids = np.where(found.ids >= 0, rows[np.maximum(found.ids, 0)], -1).astype(np.int32)
        return TopK(ids, found.scores)

    def _author_picks(self, clips: ClipQueries, per_user: int) -> TopK:
        assert self.user_authors is not None and self.users is not None
        rows = np.flatnonzero(clips.author >= 0)
        author_clips = sparse.csr_matrix(
            (np.ones(rows.size, dtype=np.float32), (clips.author[rows], rows)),
            shape=(self.user_authors.shape[1], len(clips)),
        )
        out = TopK.empty(self.users.size, per_user)
        for start in range(0, self.users.size, self.user_block):  # a block's users x their authors' clips
            part = slice(start, start + self.user_block)
            top = product_top_k(self.user_authors[self.users[part]], author_clips, per_user)
            out.ids[part], out.scores[part] = top.ids, top.scores
        return out
