"""EASE (Steck, 2019): a dense item-item matrix in closed form, ``B = I - P diag(1 / diag(P))`` with
``P = (X^T X + lambda I)^-1``, so ``diag(B) = 0``; a user's scores are ``x_u B``."""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from audience.models import ScoredRecommender, check_interactions, popular_items, restrict_columns

__all__ = ["EASE", "gram_dense"]

_BLOCK = 2048  # columns per block when building the Gram matrix / symmetrising / converting


def gram_dense(Xk: sp.csc_matrix, dtype: type = np.float64) -> np.ndarray:
    """``Xk^T Xk`` as a dense C-ordered array, built by column blocks of sparse products (never holds the
    whole sparse Gram matrix)."""
    Xk = sp.csc_matrix(Xk, dtype=np.float64)
    m = Xk.shape[1]
    G = np.zeros((m, m), dtype=dtype)
    Xt = Xk.T.tocsr()
    for s in range(0, m, _BLOCK):
        e = min(m, s + _BLOCK)
        G[:, s:e] = (Xt @ Xk[:, s:e]).toarray()
    return G


def _symmetrise_upper_fortran(A: np.ndarray) -> None:
    """``A`` (Fortran order) holds a symmetric matrix in its upper triangle; copy it to the lower one in
    place, by blocks (no n x n temporary)."""
    m = A.shape[0]
    for s in range(0, m, _BLOCK):
        e = min(m, s + _BLOCK)
        blk = A[s:e, s:e]
        A[s:e, s:e] = np.triu(blk) + np.triu(blk, 1).T
        if e < m:
            A[e:, s:e] = A[s:e, e:].T


class EASE(ScoredRecommender):
    """EASE item-item model: ``B = I - P diag(1/diag(P))``, ``P = (X^T X + regularization * I)^-1``,
    ``diag(B) = 0``, stored as dense float32 ``item_item`` over ``scored_items`` (the ``max_items`` most
    popular clips; other clips get no score and are never recommended).

    Solver: ``method="cholesky"`` (default) factorises ``G + lambda I`` in place with LAPACK ``potrf`` and
    inverts it from the factor with ``potri`` (``n^3`` flops in all, half of ``np.linalg.inv``'s LU route,
    and no second n x n buffer); ``method="inv"`` uses ``np.linalg.inv`` (reference, for the benchmark).

    Operating limits (m = number of kept clips, ``max_items``): memory ``8 m^2`` bytes for the float64
    factorisation (``4 m^2`` with ``dtype=np.float32``) plus ``4 m^2`` for the float32 ``item_item`` kept
    after the fit (at m = 30,000: 7.2 + 3.6 GB), so about 30k clips on a 16-32 GB machine, i.e. the same
    scale as RecTools' EASE ("about 30k items"); time ``O(m^3)``: measured 26 s for m = 10k on one (shared)
    EPYC core, against 75 s for ``np.linalg.inv`` (benchmarks/results/cf_models.md), so m = 30k is ~12 min
    on one core and divides by the BLAS threads; plus building the Gram matrix,
    ``O(sum over users of deg^2)`` (2 s for 330k interactions). Scoring is a sparse x dense product,
    ``O(nnz(x_u) * m)`` per user. Users are unlimited (they only enter through ``X^T X``).

    ``regularization`` is lambda (hundreds for binary data with many users is typical; it should grow with the
    number of users). ``X`` values are used as given (binarise them beforehand if wanted).
    """

    def __init__(
        self,
        regularization: float = 500.0,
        max_items: int | None = 30_000,
        method: str = "cholesky",
        dtype: type = np.float64,
    ):
        if regularization <= 0:
            raise ValueError(f"regularization must be > 0, got {regularization}")
        if method not in ("cholesky", "inv"):
            raise ValueError(f"method must be 'cholesky' or 'inv', got {method!r}")
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be >= 1 or None, got {max_items}")
        self.regularization = float(regularization)
        self.max_items = max_items
        self.method = method
        self.dtype = np.dtype(dtype)
        self.item_item: np.ndarray | None = None
        self.scored_items: np.ndarray | None = None
        self.n_items = 0
        self.fit_seconds: dict[str, float] = {}

    def fit(self, X: sp.csr_matrix) -> EASE:
        X = check_interactions(X)
        self.n_items = X.shape[1]
        items = popular_items(X, self.max_items)
        t0 = time.perf_counter()
        G = gram_dense(X.tocsc()[:, items], dtype=self.dtype)
        G[np.diag_indices_from(G)] += self.regularization
        t1 = time.perf_counter()
        if self.method == "inv":
            P = np.linalg.inv(G)
            del G
        else:
            P = self._cholesky_inverse(G)
        t2 = time.perf_counter()
        self.item_item = self._to_b(P)
        del P
        self.scored_items = items
        self.fit_seconds = {"gram": t1 - t0, "solve": t2 - t1, "to_b": time.perf_counter() - t2}
        return self

    @staticmethod
    def _cholesky_inverse(G: np.ndarray) -> np.ndarray:
        """``G^-1`` for symmetric positive definite ``G`` (C order, overwritten): potrf + potri in place."""
        A = G.T  # Fortran-ordered view of the same (symmetric) matrix, so LAPACK works in place
        potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (A,))
        c, info = potrf(A, lower=0, overwrite_a=1, clean=0)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: Cholesky failed (potrf info={info}); raise regularization")
        inv, info = potri(c, lower=0, overwrite_c=1)
        if info != 0:
            raise np.linalg.LinAlgError(
                f"EASE: inversion from the Cholesky factor failed (potri info={info})"
            )
        inv = np.asfortranarray(inv)  # no copy when LAPACK worked in place
        _symmetrise_upper_fortran(inv)
        return inv.T  # symmetric, so the transpose is the same matrix, C-ordered

    @staticmethod
    def _to_b(P: np.ndarray) -> np.ndarray:
        """``B = -P / diag(P)`` (column j divided by ``P_jj``), ``diag(B) = 0``, float32, by row blocks."""
        m = P.shape[0]
        inv_d = -1.0 / np.diag(P).astype(np.float64)
        B = np.empty((m, m), dtype=np.float32)
        for s in range(0, m, _BLOCK):
            e = min(m, s + _BLOCK)
            B[s:e] = P[s:e] * inv_d[None, :]
        B[np.diag_indices_from(B)] = 0.0
        return B

    @property
    def n_parameter_bytes(self) -> int:
        """Bytes of the fitted parameters (``item_item`` + ``scored_items``)."""
        self._check_fitted()
        return int(self.item_item.nbytes + self.scored_items.nbytes)

    def _score(self, user_rows: np.ndarray, X_rows: sp.csr_matrix, cols: np.ndarray) -> np.ndarray:
        # user rows restricted to the kept clips, then x_u B[:, cols]
        Xk = restrict_columns(X_rows, self.scored_items, self.n_items).astype(np.float32)
        B = self.item_item if cols.size == self.scored_items.size else self.item_item[:, cols]
        return np.asarray(Xk @ B, dtype=np.float32)
