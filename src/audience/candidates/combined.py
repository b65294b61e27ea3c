"""The first stage ('first_stage'): every user scored for a clip by a weighted sum of a few terms that are
cheap to compute for all users at once. The weights are learned on label weeks (rank/first_stage.py) and
passed in; this module only computes the terms and ranks every user by them.

Why: each source proposes its own top users by one signal. At VK density most users who engage with a clip
are fairly high on several signals and at the top of none, so the union of the sources' top lists misses
them; a combination ranked over every user does not.

Terms of a pair (user u, clip c of author a), `TERMS`:
  log_views              log(1 + u's views in the fit weeks)
  log_positives          log(1 + u's positives)
  log_cluster_positives  log(1e-3 + w_u <s_u, q_c>): u's recency-weighted positives expected in c's soft
                         clusters (s_u: u's positive shares over the mixture's clusters, w_u their weight,
                         q_c: c's posterior); only when the profiles stage fitted the mixture
  cos_positive           cosine of u's positive profile and c's embedding
  log_author_positives   log(1 + u's recency-weighted positives on a)
  log_author_views       log(1 + u's recency-weighted views of a)
  author_viewed          1 where u viewed a
A clip without an embedding has cos 0 and the cluster term at its floor; a clip whose author is unknown has
0 author terms, for every user alike.

Cost per block of `block` clips: two dense products (users x (clusters + dim) x block), one pass over the
block's authors' columns of the two histories, and a top-k over users x block floats; memory about
3 x 4 x users x block bytes. Exhaustive over users: time grows with users x clips (the `vk` preset's
100,000 x 47,765 take minutes on 2 cores); the full dataset's 10 M users need the user-sharded engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numba as nb
import numpy as np
from scipy import sparse

from audience import progress
from audience.arrays import TopK, sparse_values_at, top_k, unit_rows
from audience.candidates.base import ClipQueries
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData
from audience.profiles.gmm import GmmModel

TERMS = (
    "log_views",
    "log_positives",
    "log_cluster_positives",
    "cos_positive",
    "log_author_positives",
    "log_author_views",
    "author_viewed",
)
CLUSTER_PROFILE = "gmm_positive"  # the soft-cluster profile of the cluster term (profiles stage)
CONTENT_PROFILE = "positive"  # the averaged-embedding profile of the cosine term
CLUSTER_FLOOR = 1e-3  # expected positives added before the log: a user with none is not -inf


@dataclass
class ClipSide:
    """What the terms need of the clips: unit embeddings, cluster posteriors (or None), authors."""

    vectors: np.ndarray  # float32 (n, dim)
    posteriors: np.ndarray | None  # float32 (n, clusters)
    author: np.ndarray  # int (n,), -1 unknown


class TermTables:
    """The user side of the terms, built once from the fit data: dense per-user rows and the user x author
    histories (log1p applied), column-major so a clip's author is one contiguous column."""

    def __init__(self, data: FitData):
        self.user = np.stack([np.log1p(data.user_views), np.log1p(data.user_positives)], axis=1).astype(
            np.float32
        )
        self.profile = data.profiles[CONTENT_PROFILE]
        self.mixture: GmmModel | None = None
        self.cluster_users: np.ndarray | None = None
        if data.gmm is not None and CLUSTER_PROFILE in data.profiles:
            stored = data.profiles[CLUSTER_PROFILE]  # unit rows of mean posteriors: back to shares
            shares = stored / np.maximum(stored.sum(axis=1, keepdims=True), 1e-12)
            self.cluster_users = (shares * data.profile_weight[CLUSTER_PROFILE][:, None]).astype(np.float32)
            self.mixture = data.gmm
        self.author_views = _log1p_csc(data.histories["user_author_views"])
        self.author_positives = _log1p_csc(data.histories["user_author_positives"])

    @property
    def n_users(self) -> int:
        return int(self.user.shape[0])

    @property
    def terms(self) -> tuple[str, ...]:
        """The terms these tables provide (the cluster term only with a mixture)."""
        return tuple(t for t in TERMS if t != "log_cluster_positives" or self.mixture is not None)

    def clip_side(self, clips: ClipQueries) -> ClipSide:
        dim = min(clips.embedding.shape[1], self.profile.shape[1])
        vectors = unit_rows(clips.embedding[:, :dim])
        posteriors = None
        if self.mixture is not None:
            posteriors = self.mixture.predict_proba(clips.embedding) * clips.has_embedding[:, None]
            posteriors = posteriors.astype(np.float32)
        return ClipSide(vectors, posteriors, np.asarray(clips.author))

    def pair_terms(self, clips: ClipSide, rows: np.ndarray, users: np.ndarray) -> np.ndarray:
        """(pairs, len(terms)) float32: the terms of (clip row, user) pairs, the columns in `terms` order."""
        rows, users = np.asarray(rows, dtype=np.int64), np.asarray(users, dtype=np.int64)
        author = clips.author[rows]
        known = author >= 0
        safe = np.maximum(author, 0)
        values = {"log_views": self.user[users, 0], "log_positives": self.user[users, 1]}
        dim = clips.vectors.shape[1]
        values["cos_positive"] = np.einsum("ij,ij->i", clips.vectors[rows], self.profile[users, :dim])
        if self.cluster_users is not None and clips.posteriors is not None:
            expected = np.einsum("ij,ij->i", clips.posteriors[rows], self.cluster_users[users])
            values["log_cluster_positives"] = np.log(CLUSTER_FLOOR + expected)
        pair_author = np.where(known, safe, -1)  # the transposed CSC histories are CSR by author, no copy
        views = sparse_values_at(self.author_views.T, pair_author, users)
        values["log_author_views"] = views
        values["log_author_positives"] = sparse_values_at(self.author_positives.T, pair_author, users)
        values["author_viewed"] = (views > 0).astype(np.float32)
        return np.stack([values[t] for t in self.terms], axis=1).astype(np.float32)

    def block_scores(self, clips: ClipSide, rows: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
        """(len(rows), users) float32: sum_t weights[t] x term t + weights['intercept'] for every user."""
        w = {t: np.float32(weights.get(t, 0.0)) for t in (*TERMS, "intercept")}
        user_part = self.user @ np.array([w["log_views"], w["log_positives"]], dtype=np.float32)
        scores = np.empty((rows.size, self.n_users), dtype=np.float32)
        scores[:] = user_part + w["intercept"]
        if w["cos_positive"]:
            dim = clips.vectors.shape[1]
            scores += w["cos_positive"] * (clips.vectors[rows] @ self.profile[:, :dim].T)
        if w["log_cluster_positives"] and self.cluster_users is not None and clips.posteriors is not None:
            expected = clips.posteriors[rows] @ self.cluster_users.T
            expected += np.float32(CLUSTER_FLOOR)
            np.log(expected, out=expected)
            expected *= w["log_cluster_positives"]
            scores += expected
        v, p = self.author_views, self.author_positives
        _add_author_terms(
            scores,
            clips.author[rows].astype(np.int64),
            v.indptr,
            v.indices,
            v.data,
            p.indptr,
            p.indices,
            p.data,
            w["log_author_views"],
            w["author_viewed"],
            w["log_author_positives"],
        )
        return scores


def _log1p_csc(matrix: sparse.spmatrix) -> sparse.csc_matrix:
    out = sparse.csc_matrix(matrix, dtype=np.float32)
    out.sort_indices()
    np.log1p(out.data, out=out.data)
    return out


@nb.njit(parallel=True, cache=True)
def _add_author_terms(scores, author, v_ptr, v_idx, v_val, p_ptr, p_idx, p_val, w_views, w_viewed, w_pos):
    """scores[r, u] += the author terms of (row r's author, u) for every u in that author's columns."""
    for r in nb.prange(scores.shape[0]):
        a = author[r]
        if a < 0:
            continue
        for j in range(v_ptr[a], v_ptr[a + 1]):
            if v_val[j] > 0:
                scores[r, v_idx[j]] += w_views * v_val[j] + w_viewed
        for j in range(p_ptr[a], p_ptr[a + 1]):
            scores[r, p_idx[j]] += w_pos * p_val[j]


class CombinedSource:
    """Every user ranked by the weighted terms (`weights`: term -> weight, plus 'intercept'), exactly."""

    name = "first_stage"

    def __init__(self, weights: Mapping[str, float], block: int = 512):
        unknown = sorted(set(weights) - {*TERMS, "intercept"})
        if unknown:
            raise ValueError(f"first stage weights: unknown terms {unknown}; the terms are {TERMS}")
        self.weights, self.block = dict(weights), block
        self.tables: TermTables | None = None

    def fit(self, data: FitData, catalog: Catalog) -> CombinedSource:
        self.tables = TermTables(data)
        return self

    def recommend(self, clips: ClipQueries, k: int) -> TopK:
        assert self.tables is not None, "fit first"
        side = self.tables.clip_side(clips)
        out = TopK.empty(len(clips), k)
        starts = range(0, len(clips), self.block)
        for start in progress.iterate(starts, "first stage", "block"):
            rows = np.arange(start, min(start + self.block, len(clips)))
            top = top_k(self.tables.block_scores(side, rows, self.weights), k)
            out.ids[rows], out.scores[rows] = top.ids, top.scores
        return out
