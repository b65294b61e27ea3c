"""SLIM (Ning & Karypis, 2011): a sparse non-negative item-item matrix ``W`` with ``diag(W) = 0``, one
ElasticNet per clip; a user's scores are ``x_u W``.

For target clip ``j`` (column ``a_j`` of ``X``, ``n`` = rows of ``X``) column ``j`` of ``W`` solves
scikit-learn's ElasticNet objective with ``w >= 0`` and ``w_j = 0``::

    1/(2n) ||a_j - X w||^2 + alpha * l1_ratio * ||w||_1 + 0.5 * alpha * (1 - l1_ratio) * ||w||^2

Two solvers give the same weights (tested to 1e-4 with tight tolerances): ``backend="sklearn"``
(``ElasticNet(positive=True, fit_intercept=False)`` on ``X`` with column ``j`` zeroed, clips in parallel
with joblib threads; sklearn's sparse coordinate descent releases the GIL) and ``backend="numba"``
(coordinate descent on the sparse Gram matrix ``G = X^T X``, clips in parallel with ``prange``).

Skip rules of the numba solver (``min_cooccurrence`` = lambda):

(i)  for target ``j``, coordinate ``k`` is never updated (``w_k = 0``) when ``G_jk = <a_j, a_k> < lambda``
     (with binary data, ``G_jk`` is the number of users who have both clips);
(ii) a target clip with fewer than ``lambda`` interactions (nonzeros) is skipped: its column of ``W`` is 0.

How (i) relates to the L1 penalty: the coordinate update is ``w_k <- max(0, c_k - n*alpha*l1_ratio) /
(G_kk + n*alpha*(1 - l1_ratio))`` with ``c_k = <a_k, a_j - X w> + G_kk w_k``. With ``X >= 0`` and ``w >= 0``
every ``G_km w_m`` is ``>= 0``, so for a coordinate at 0, ``c_k <= G_jk`` at every step (the correlation
with the residual can only shrink as other weights grow). Hence if ``G_jk <= n*alpha*l1_ratio`` the
update keeps ``w_k = 0`` forever, and the KKT condition of the optimum (``gradient >= -L1 threshold``) holds:
the skip is *exact*, not an approximation, whenever ``lambda <= n*alpha*l1_ratio`` (``min_cooccurrence=None``
uses exactly that value). A larger ``lambda`` is a speed/accuracy trade-off (drops coordinates that could be
active). Rule (ii) follows from (i) when the values of ``X`` lie in [0, 1] (then ``G_jk <= nnz(a_j)``), so
it is also exact in that case; with weights above 1 it is an extra approximation. The sklearn backend
applies (ii) (skipped targets) but fits every other target on all clips, so it checks (i) independently.
"""

from __future__ import annotations

import warnings

import numba as nb
import numpy as np
import scipy.sparse as sp

from audience.models import ScoredRecommender, check_interactions, popular_items, restrict_columns
from audience.models._sorted import find_sorted

__all__ = ["SLIM", "gram_sparse"]

CACHE_FLOATS = 4 * 2**20  # per thread: dense Gram rows of moving coordinates (32 MB)


def gram_sparse(Xk: sp.csr_matrix) -> sp.csr_matrix:
    """``Xk^T Xk`` as float64 CSR with sorted indices (symmetric, diagonal included)."""
    Xk = sp.csr_matrix(Xk, dtype=np.float64)
    G = (Xk.T.tocsr() @ Xk).tocsr()
    G.sort_indices()
    return G


@nb.njit(cache=True, nogil=True)
def _gram_row(indptr, indices, data, k, act, slot, s, out):  # pragma: no cover - numba
    """``out[r] += G[k, act[r]]`` for the ``s`` active clips: walk row k of G, or binary-search each
    active clip in it, whichever is cheaper."""
    lo = indptr[k]
    hi = indptr[k + 1]
    if s * 16 < hi - lo:
        for r in range(s):
            pos = find_sorted(indices, lo, hi, act[r])
            if pos >= 0:
                out[r] += data[pos]
    else:
        for pp in range(lo, hi):
            r = slot[indices[pp]]
            if r >= 0:
                out[r] += data[pp]


@nb.njit(cache=True, nogil=True, parallel=True)
def _slim_cd_kernel(
    indptr, indices, data, diag, targets, out_ptr, threshold, l1, l2, max_iter, tol, n_chunks, cache_size
):  # pragma: no cover - numba
    """Coordinate descent per target clip on the Gram matrix (CSR, sorted indices). Returns, per target,
    the positive weights (``out_cnt[t]`` of them at ``out_ptr[t]`` of ``out_idx``/``out_val``) and the
    sweeps run. The Gram row of a coordinate, restricted to the active set, is extracted the first time
    its weight moves and kept (dense, up to ``cache_size`` floats per thread), so later residual updates
    are contiguous ``O(|active|)`` loops instead of walks over the whole sparse row."""
    m = diag.size
    out_idx = np.empty(out_ptr[-1], dtype=np.int32)
    out_val = np.empty(out_ptr[-1], dtype=np.float32)
    out_cnt = np.zeros(targets.size, dtype=np.int64)
    n_sweeps = np.zeros(targets.size, dtype=np.int32)
    for ch in nb.prange(n_chunks):
        slot = np.full(m, -1, dtype=np.int64)  # clip -> position in the active set (of this target)
        act = np.empty(m, dtype=np.int64)
        c = np.empty(m, dtype=np.float64)  # <a_k, residual> + G_kk w_k is c + w * G_kk
        w = np.empty(m, dtype=np.float64)
        row_of = np.empty(m, dtype=np.int64)  # active position -> cached Gram row (or -1)
        cache = np.empty(cache_size, dtype=np.float64)
        for t in range(ch, targets.size, n_chunks):
            j = targets[t]
            s = 0
            for p in range(indptr[j], indptr[j + 1]):
                k = indices[p]
                if k != j and data[p] >= threshold:  # skip rule (i)
                    act[s] = k
                    c[s] = data[p]
                    w[s] = 0.0
                    row_of[s] = -1
                    slot[k] = s
                    s += 1
            n_rows = 0
            sweeps = 0
            for _ in range(max_iter):
                sweeps += 1
                w_max = 0.0
                d_max = 0.0
                for q in range(s):
                    k = act[q]
                    gkk = diag[k]
                    tmp = c[q] + w[q] * gkk - l1
                    new = tmp / (gkk + l2) if tmp > 0.0 else 0.0
                    d = new - w[q]
                    if d != 0.0:
                        w[q] = new
                        if row_of[q] < 0 and (n_rows + 1) * s <= cache_size:
                            row_of[q] = n_rows
                            off = n_rows * s
                            n_rows += 1
                            cache[off : off + s] = 0.0
                            _gram_row(indptr, indices, data, k, act, slot, s, cache[off : off + s])
                        if row_of[q] >= 0:
                            off = row_of[q] * s
                            for r in range(s):
                                c[r] -= cache[off + r] * d
                        else:  # cache full: update straight from the sparse row
                            lo = indptr[k]
                            hi = indptr[k + 1]
                            if s * 16 < hi - lo:
                                for r in range(s):
                                    pos = find_sorted(indices, lo, hi, act[r])
                                    if pos >= 0:
                                        c[r] -= data[pos] * d
                            else:
                                for pp in range(lo, hi):
                                    r = slot[indices[pp]]
                                    if r >= 0:
                                        c[r] -= data[pp] * d
                        if abs(d) > d_max:
                            d_max = abs(d)
                    if new > w_max:
                        w_max = new
                if w_max == 0.0 or d_max <= tol * w_max:
                    break
            n_sweeps[t] = sweeps
            base = out_ptr[t]
            cnt = 0
            for q in range(s):
                if w[q] > 0.0:
                    out_idx[base + cnt] = act[q]
                    out_val[base + cnt] = w[q]
                    cnt += 1
                slot[act[q]] = -1
            out_cnt[t] = cnt
    return out_idx, out_val, out_cnt, n_sweeps


def _sklearn_chunk(Xc: sp.csc_matrix, targets: np.ndarray, params: dict) -> list[tuple[int, np.ndarray]]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import ElasticNet

    X = Xc.copy()  # own copy: column j is zeroed in place while fitting target j
    enet = ElasticNet(positive=True, fit_intercept=False, copy_X=False, precompute=False, **params)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for j in targets:
            s, e = X.indptr[j], X.indptr[j + 1]
            y = np.zeros(X.shape[0], dtype=np.float64)
            y[X.indices[s:e]] = Xc.data[s:e]
            X.data[s:e] = 0.0
            enet.fit(X, y, check_input=False)
            X.data[s:e] = Xc.data[s:e]
            coef = enet.coef_
            out.append((int(j), np.flatnonzero(coef > 0), coef[coef > 0]))
    return out


class SLIM(ScoredRecommender):
    """SLIM item-item model (see the module docstring for the objective and the skip rules): sparse
    non-negative ``item_item`` (CSR float32, ``m x m`` over ``scored_items``, ``W[k, j]`` = weight of clip
    ``k`` in the model of clip ``j``, zero diagonal); scores ``x_u W``.

    Operating limits (m = kept clips, ``max_items``, most popular first; other clips get no score):
    the numba solver holds the sparse Gram matrix, ``12 * nnz(X^T X)`` bytes (``nnz(X^T X)`` <= ``m^2`` is
    the number of co-occurring clip pairs: 17.4 M, 210 MB, for the positives of synthetic-small, 32k clips x
    20k users x 330k interactions), plus ``40 m`` bytes and a 32 MB row cache per thread; building it costs
    ``O(sum over users of deg^2)`` (~1 s there). Solving costs ``O(sum_j |active(j)| * sweeps)`` plus, per
    coordinate that ever moves, one extraction of its Gram row, plus ``O(|active(j)|)`` per move: it scales
    with co-occurrences at or above ``lambda``, not with users. Measured on one core (same data): 77k
    active coordinates (lambda ~5) in 1.7 s, 1.5 M (lambda ~2) in 7 s, all 17.4 M (lambda < 1) in minutes;
    raise ``min_cooccurrence`` to go faster (then approximately). The sklearn backend costs
    ``O(nnz(X) * sweeps)`` per clip (a full pass over ``X`` per sweep, ~10 ms per clip there): fine for a
    few thousand clips, hours for 10^5 (it exists to check the numba solver). Scoring is a sparse x sparse
    product, ``O(nnz(x_u) * nnz per row of W)``; ``item_item`` is ``8 * nnz(W)`` bytes.

    ``tol``: the numba solver stops when the largest weight change of a sweep is ``<= tol * max weight``
    (scikit-learn's first test; sklearn then also checks the duality gap against ``tol``).
    """

    def __init__(
        self,
        alpha: float = 1e-3,
        l1_ratio: float = 0.5,
        min_cooccurrence: float | None = None,
        max_items: int | None = None,
        backend: str = "numba",
        max_iter: int = 100,
        tol: float = 1e-4,
        n_jobs: int | None = None,
    ):
        if alpha <= 0 or not 0.0 < l1_ratio <= 1.0:
            raise ValueError(f"need alpha > 0 and 0 < l1_ratio <= 1, got {alpha}, {l1_ratio}")
        if backend not in ("numba", "sklearn"):
            raise ValueError(f"backend must be 'numba' or 'sklearn', got {backend!r}")
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be >= 1 or None, got {max_items}")
        self.alpha = float(alpha)
        self.l1_ratio = float(l1_ratio)
        self.min_cooccurrence = min_cooccurrence
        self.max_items = max_items
        self.backend = backend
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.n_jobs = n_jobs
        self.item_item: sp.csr_matrix | None = None
        self.scored_items: np.ndarray | None = None
        self.n_items = 0
        self.n_sweeps: np.ndarray | None = None
        self.threshold_ = 0.0
        self._csc: sp.csc_matrix | None = None

    def threshold(self, n_rows: int) -> float:
        """lambda for ``n_rows`` users: ``min_cooccurrence``, or the exact ``n_rows * alpha * l1_ratio``."""
        if self.min_cooccurrence is None:
            return n_rows * self.alpha * self.l1_ratio
        return float(self.min_cooccurrence)

    def fit(self, X: sp.csr_matrix) -> SLIM:
        X = check_interactions(X)
        n, self.n_items = X.shape
        items = popular_items(X, self.max_items)
        Xk = restrict_columns(X, items, self.n_items).astype(np.float64)
        m = items.size
        lam = self.threshold(n)
        self.threshold_ = lam
        counts = np.diff(Xk.tocsc().indptr)
        targets = np.flatnonzero(counts >= lam).astype(np.int64)  # skip rule (ii)
        l1 = n * self.alpha * self.l1_ratio
        l2 = n * self.alpha * (1.0 - self.l1_ratio)
        if self.backend == "numba":
            G = gram_sparse(Xk)
            diag = G.diagonal().astype(np.float64)
            out_ptr = np.zeros(targets.size + 1, dtype=np.int64)
            np.cumsum(np.diff(G.indptr)[targets], out=out_ptr[1:])
            n_chunks = min(max(targets.size, 1), 64 * nb.get_num_threads())
            idx, val, cnt, sweeps = _slim_cd_kernel(
                G.indptr.astype(np.int64), G.indices.astype(np.int32), G.data, diag, targets, out_ptr,
                float(lam), l1, l2, self.max_iter, self.tol, n_chunks, CACHE_FLOATS,
            )  # fmt: skip
            del G
            first = np.cumsum(cnt) - cnt  # start of each target's weights once compacted
            at = np.repeat(out_ptr[:-1] - first, cnt) + np.arange(int(cnt.sum()))
            rows, vals = idx[at], val[at]
            cols = np.repeat(targets, cnt)
            self.n_sweeps = sweeps
        else:
            from joblib import Parallel, delayed

            Xc = Xk.tocsc()
            Xc.sort_indices()
            params = {
                "alpha": self.alpha,
                "l1_ratio": self.l1_ratio,
                "tol": self.tol,
                "max_iter": self.max_iter,
            }
            n_jobs = self.n_jobs or 1
            chunks = [c for c in np.array_split(targets, max(1, 4 * n_jobs)) if c.size]
            parts = Parallel(n_jobs=n_jobs, prefer="threads")(
                delayed(_sklearn_chunk)(Xc, c, params) for c in chunks
            )
            res = [r for part in parts for r in part]
            rows = np.concatenate([r[1] for r in res]) if res else np.zeros(0, np.int64)
            vals = np.concatenate([r[2] for r in res]).astype(np.float32) if res else np.zeros(0, np.float32)
            cols = np.concatenate([np.full(r[1].size, r[0]) for r in res]) if res else np.zeros(0, np.int64)
            self.n_sweeps = None
        W = sp.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=(m, m))
        W.sort_indices()
        self.item_item = W
        self.scored_items = items
        self._csc = None
        return self

    @property
    def n_parameter_bytes(self) -> int:
        """Bytes of the fitted parameters (CSR ``item_item``: data + indices + indptr, + ``scored_items``)."""
        self._check_fitted()
        W = self.item_item
        return int(W.data.nbytes + W.indices.nbytes + W.indptr.nbytes + self.scored_items.nbytes)

    def _score(self, user_rows: np.ndarray, X_rows: sp.csr_matrix, cols: np.ndarray) -> np.ndarray:
        Xk = restrict_columns(X_rows, self.scored_items, self.n_items).astype(np.float32)
        if cols.size == self.scored_items.size:
            W = self.item_item
        else:
            if self._csc is None:
                self._csc = self.item_item.tocsc()
            W = self._csc[:, cols]
        return (Xk @ W).toarray().astype(np.float32, copy=False)
