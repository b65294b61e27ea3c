"""BPR (Rendle et al., 2009): matrix factorisation ``score(u, i) = U_u . V_i`` trained by SGD on the BPR
loss ``-log sigmoid(U_u . (V_i - V_j))`` over triplets (user, positive clip, negative clip); numba kernels.

One SGD step on (u, i, j) with learning rate ``lr`` and L2 weight ``reg`` (``bpr_step``)::

    x = U_u . (V_i - V_j);   g = sigmoid(-x)
    U_u <- U_u + lr * (g * (V_i - V_j) - reg * U_u)
    V_i <- V_i + lr * (g * U_u_old    - reg * V_i)
    V_j <- V_j + lr * (-g * U_u_old   - reg * V_j)

(item updates use the user vector from before the step; the regularisation is inside the learning rate).

Sampling, per SGD sample:

* positive: a uniformly random interaction (a nonzero of ``X``) gives (user, positive clip), so users and
  clips come in proportion to their interactions;
* negative, ``sampling="popularity"``: the clip of another uniformly random interaction (negatives drawn
  proportionally to clip popularity); ``"uniform"``: a uniformly random clip. A negative that is in fact a
  positive of the user (binary search in the user's sorted CSR row) is not used: the sample is skipped and
  counted (``history[e]["false_negatives"]``);
* ``"adaptive"``: ``warmup_epochs`` epochs of ``warmup_sampling`` (popularity or uniform), then at the
  start of every epoch a table of negatives is rebuilt from the current model: for each user,
  ``n_candidates`` clips are drawn by popularity (proposal ``q``) and weighted by
  ``exp(score / temperature) / q`` (zero for the user's positives), and the epoch draws the user's
  negatives from that table. This is sampling-importance-
  resampling: as ``n_candidates`` grows the negative distribution tends to the exact
  ``softmax(score / temperature)`` over the user's non-positives among clips with at least one interaction
  (the proposal never reaches the others; tested). On a 30-clip toy the total-variation distance of one
  user's table to the exact softmax is ~0.38 at 32 candidates, 0.06 at 1,000, 0.01 at 40,000: few
  candidates bias it towards popular clips. It is cheap: ``n_users * n_candidates * factors`` flops and
  ``8 * n_users * n_candidates`` bytes per epoch, whereas an exact softmax needs every score,
  ``n_users x n_items`` per epoch (feasible only for small catalogues, not implemented). Users whose
  candidates are all positives fall back to ``warmup_sampling`` with rejection.

Epochs run lock-free in parallel (Hogwild): the samples of an epoch are cut into fixed chunks (their
size depends only on the number of samples), each with its own xorshift64* generator seeded from
(``seed``, epoch, chunk) through ``np.random.SeedSequence``, run by ``prange``. The samples drawn do not
depend on the number of threads, but with more than one thread concurrent updates to the same rows interleave
nondeterministically, so results are not bit-reproducible; with ``n_threads=1`` they are.
"""

from __future__ import annotations

import math
import time

import numba as nb
import numpy as np
import scipy.sparse as sp

from audience.models import ScoredRecommender, check_interactions
from audience.models._sorted import find_sorted

__all__ = ["BPR", "adaptive_negative_table", "bpr_step", "sample_triplets"]

SAMPLING = ("popularity", "uniform", "adaptive")
_MODE = {"popularity": 0, "uniform": 1, "adaptive": 2}
CHUNK_SAMPLES = 1 << 15  # at most this many SGD samples per Hogwild chunk (one seed each)


def _chunk(n_samples: int) -> int:
    """Samples per chunk: at least 64 chunks when there are enough samples (so small epochs still spread over
    threads), at most ``CHUNK_SAMPLES``; depends only on ``n_samples``, never on the thread count."""
    return int(min(CHUNK_SAMPLES, max(1024, -(-n_samples // 64))))


@nb.njit(cache=True, nogil=True)
def _in_row(indices, lo, hi, key):  # pragma: no cover - numba
    """Is ``key`` in the sorted ``indices[lo:hi]``?"""
    return find_sorted(indices, lo, hi, key) >= 0


# reassociation lets the dot product and the updates vectorise (3-4x faster); no nnan/ninf assumptions
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


@nb.njit(cache=True, nogil=True, fastmath=_FAST)
def _dot_diff(uu, vi, vj):  # pragma: no cover - numba
    x = uu[0] * (vi[0] - vj[0])
    for d in range(1, uu.size):
        x += uu[d] * (vi[d] - vj[d])
    return x


@nb.njit(cache=True, nogil=True, fastmath=_FAST)
def _update(uu, vi, vj, g, lr, reg):  # pragma: no cover - numba
    for d in range(uu.size):
        uf = uu[d]
        a = vi[d]
        b = vj[d]
        uu[d] = uf + lr * (g * (a - b) - reg * uf)
        vi[d] = a + lr * (g * uf - reg * a)
        vj[d] = b + lr * (-g * uf - reg * b)


@nb.njit(cache=True, nogil=True)
def _sigmoid_neg(x):  # pragma: no cover - numba
    return 0.0 if x > 80.0 else 1.0 / (1.0 + math.exp(x))


@nb.njit(cache=True, nogil=True)
def bpr_step(U, V, u, i, j, lr, reg):  # pragma: no cover - numba
    """One SGD step of BPR on (user u, positive i, negative j), in place; returns ``x = U_u . (V_i - V_j)``
    before the step (the trainer runs the same code with float32 scalars)."""
    x = _dot_diff(U[u], V[i], V[j])
    _update(U[u], V[i], V[j], _sigmoid_neg(x), lr, reg)
    return x


_U64 = np.uint64
_TO_UNIT = 1.0 / 9007199254740992.0  # 2^-53


@nb.njit(cache=True, nogil=True, inline="always")
def _rand(state):  # pragma: no cover - numba
    """Uniform float in [0, 1) from a xorshift64* generator whose state is ``state[0]`` (uint64, nonzero);
    ~2x cheaper than numba's ``np.random`` in the sampling loops."""
    x = state[0]
    x ^= x >> _U64(12)
    x ^= x << _U64(25)
    x ^= x >> _U64(27)
    state[0] = x
    return np.float64(np.int64((x * _U64(0x2545F4914F6CDD1D)) >> _U64(11))) * _TO_UNIT  # via int64: cheaper


@nb.njit(cache=True, nogil=True, inline="always")
def _randint(state, n):  # pragma: no cover - numba
    """Uniform int in [0, n) (53-bit resolution: bias below n / 2^53)."""
    return np.int64(_rand(state) * n)


@nb.njit(cache=True, nogil=True, inline="always")
def _draw(state, pairs, n_items, mode, cand, cum):  # pragma: no cover - numba
    """One raw sample: (user, positive, negative, check). The positive is a uniformly random interaction
    (row of ``pairs``); the negative comes from the user's adaptive table (modes 2-3 when the user's row
    has weight; ``check`` False: never a positive) or, otherwise, by popularity (modes 0, 2) or uniformly
    (modes 1, 3), and then must be checked against the user's positives (``check`` True)."""
    r = _randint(state, pairs.shape[0])
    u = pairs[r, 0]
    i = pairs[r, 1]
    if mode >= 2:
        m = cum.shape[1]
        total = cum[u, m - 1]
        if total > 0.0:
            x = _rand(state) * total
            lo = 0
            hi = m - 1
            while lo < hi:  # first candidate with cum > x: zero-weight candidates are never chosen
                mid = (lo + hi) >> 1
                if cum[u, mid] > x:
                    hi = mid
                else:
                    lo = mid + 1
            return u, i, cand[u, lo], False
    if mode == 1 or mode == 3:
        j = _randint(state, n_items)
    else:
        j = pairs[_randint(state, pairs.shape[0]), 1]
    return u, i, j, True


_BLOCK = 256  # samples drawn ahead of their SGD steps (independent loads overlap: ~1.3x faster)


@nb.njit(cache=True, nogil=True, parallel=True, fastmath=_FAST)
def _epoch_kernel(  # lr, reg: np.float32
    U, V, pairs, indptr, indices, n_items, n_samples, chunk, seeds, lr, reg, mode, cand, cum
):  # pragma: no cover - numba
    n_chunks = seeds.size
    skipped = np.zeros(n_chunks, dtype=np.int64)
    loss = np.zeros(n_chunks, dtype=np.float64)
    for ch in nb.prange(n_chunks):
        state = np.full(1, seeds[ch], dtype=np.uint64)
        bu = np.empty(_BLOCK, dtype=np.int64)
        bi = np.empty(_BLOCK, dtype=np.int64)
        bj = np.empty(_BLOCK, dtype=np.int64)
        bc = np.empty(_BLOCK, dtype=np.bool_)
        stop = min(n_samples, (ch + 1) * chunk)
        for b0 in range(ch * chunk, stop, _BLOCK):
            nb_ = min(_BLOCK, stop - b0)
            for t in range(nb_):
                bu[t], bi[t], bj[t], bc[t] = _draw(state, pairs, n_items, mode, cand, cum)
            for t in range(nb_):
                u = bu[t]
                j = bj[t]
                if bc[t] and _in_row(indices, indptr[u], indptr[u + 1], j):
                    skipped[ch] += 1  # a false negative: skipped
                    continue
                uu = U[u]
                vi = V[bi[t]]
                vj = V[j]
                x = _dot_diff(uu, vi, vj)
                g = _sigmoid_neg(x)
                _update(uu, vi, vj, np.float32(g), lr, reg)  # = bpr_step, all in float32
                loss[ch] += -math.log(1.0 - g) if g < 0.999 else -x  # -log sigmoid(x) = -log(1 - g)
    return skipped.sum(), loss.sum()


@nb.njit(cache=True, nogil=True, parallel=True)
def _sample_kernel(pairs, indptr, indices, n_items, n_samples, chunk, seeds, mode, cand, cum):
    # pragma: no cover - numba
    """The draws of ``_epoch_kernel`` (same seeds, same order), without training."""
    out_u = np.empty(n_samples, dtype=np.int32)
    out_i = np.empty(n_samples, dtype=np.int32)
    out_j = np.empty(n_samples, dtype=np.int32)
    out_rej = np.zeros(n_samples, dtype=np.bool_)
    for ch in nb.prange(seeds.size):
        state = np.full(1, seeds[ch], dtype=np.uint64)
        for s in range(ch * chunk, min(n_samples, (ch + 1) * chunk)):
            u, i, j, check = _draw(state, pairs, n_items, mode, cand, cum)
            out_u[s] = u
            out_i[s] = i
            out_j[s] = j
            out_rej[s] = check and _in_row(indices, indptr[u], indptr[u + 1], j)
    return out_u, out_i, out_j, out_rej


@nb.njit(cache=True, nogil=True, parallel=True)
def _table_kernel(U, V, coo_i, indptr, indices, log_q, m, temperature, chunk, seeds):  # pragma: no cover
    n_users = U.shape[0]
    f = U.shape[1]
    cand = np.zeros((n_users, m), dtype=np.int32)
    cum = np.zeros((n_users, m), dtype=np.float32)
    for ch in nb.prange(seeds.size):
        state = np.full(1, seeds[ch], dtype=np.uint64)
        logit = np.empty(m, dtype=np.float64)
        for u in range(ch * chunk, min(n_users, (ch + 1) * chunk)):
            lo = indptr[u]
            hi = indptr[u + 1]
            if lo == hi:
                continue  # never drawn as a positive user
            best = -np.inf
            for c in range(m):
                it = coo_i[_randint(state, coo_i.size)]
                cand[u, c] = it
                if _in_row(indices, lo, hi, it):
                    logit[c] = -np.inf
                else:
                    s = 0.0
                    for d in range(f):
                        s += U[u, d] * V[it, d]
                    logit[c] = s / temperature - log_q[it]
                    if logit[c] > best:
                        best = logit[c]
            if best == -np.inf:
                continue  # all candidates are positives: cum stays 0 -> popularity fallback
            total = 0.0
            for c in range(m):
                if logit[c] > -np.inf:
                    total += math.exp(logit[c] - best)
                cum[u, c] = total
    return cand, cum


def _seeds(seed: int, *key: int, n: int) -> np.ndarray:
    """Nonzero uint64 xorshift states, one per chunk, from (seed, *key)."""
    return np.random.SeedSequence([seed, *key]).generate_state(max(n, 1), dtype=np.uint64) | np.uint64(1)


def _pairs(X: sp.csr_matrix) -> np.ndarray:
    """The interactions as an (nnz, 2) int32 array of (user, clip), one cache line per draw."""
    pairs = np.empty((X.nnz, 2), dtype=np.int32)
    pairs[:, 0] = np.repeat(np.arange(X.shape[0], dtype=np.int32), np.diff(X.indptr))
    pairs[:, 1] = X.indices
    return pairs


def sample_triplets(
    X: sp.csr_matrix,
    n_samples: int,
    seed: int = 0,
    sampling: str = "popularity",
    table: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user, positive, negative, rejected) draws made by the training kernel's own sampling code (seeded
    independently of any fit), without training (for tests and diagnostics). ``rejected`` marks negatives
    that are positives of the user (skipped in training). ``sampling="adaptive"`` needs ``table`` from
    ``adaptive_negative_table``."""
    X = check_interactions(X)
    pairs = _pairs(X)
    cand, cum = table if table is not None else (np.zeros((1, 1), np.int32), np.zeros((1, 1), np.float32))
    if sampling == "adaptive" and table is None:
        raise ValueError("sampling='adaptive' needs a table")
    chunk = _chunk(n_samples)
    n_chunks = -(-n_samples // chunk)
    return _sample_kernel(
        pairs, X.indptr.astype(np.int64), X.indices.astype(np.int32), X.shape[1], n_samples,
        chunk, _seeds(seed, 1, n=n_chunks), _MODE[sampling], cand, cum,
    )  # fmt: skip


def adaptive_negative_table(
    U: np.ndarray, V: np.ndarray, X: sp.csr_matrix, n_candidates: int, temperature: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Per user, ``n_candidates`` clips drawn by popularity and their cumulative (unnormalised) weights
    ``exp(U_u . V_c / temperature) / q_c`` (``q_c`` = popularity share), zero for the user's positives.
    Returns (cand (n_users, m) int32, cum (n_users, m) float32); a row of zeros = no usable candidate."""
    X = check_interactions(X)
    coo_i = X.indices.astype(np.int32)
    counts = np.bincount(coo_i, minlength=X.shape[1]).astype(np.float64)
    log_q = np.log(np.maximum(counts, 1.0) / max(coo_i.size, 1))
    chunk = 1024
    n_chunks = -(-X.shape[0] // chunk)
    return _table_kernel(
        U, V, coo_i, X.indptr.astype(np.int64), X.indices.astype(np.int32), log_q, int(n_candidates),
        float(temperature), chunk, _seeds(seed, 2, n=n_chunks),
    )  # fmt: skip


class BPR(ScoredRecommender):
    """BPR matrix factorisation (see the module docstring for the update, sampling and reproducibility):
    ``user_factors`` (n_users, factors) and ``item_factors`` (n_items, factors), float32; scores
    ``U_u . V_i`` for every clip. Only the structure of ``X`` is used (its values are ignored).

    Operating limits: memory ``4 * factors * (n_users + n_items)`` bytes of parameters (10M users x 64
    factors = 2.6 GB) plus the interaction list (8 bytes per interaction) and, for adaptive sampling,
    ``8 * n_users * n_candidates`` bytes; time ``O(samples * factors)`` per epoch, bound by random memory
    access (three factor rows, the interaction list and the user's row per sample): 2-4 M samples/s per
    core at 64 factors on 20k users x 32k clips (benchmarks/results/cf_models.md), fewer once the factors
    outgrow the CPU caches; ``samples_per_epoch`` defaults to the number of interactions. The adaptive
    table adds ``n_users * n_candidates * factors`` multiply-adds per epoch. Scoring is dense,
    ``O(n_users_asked * n_items * factors)``. Users are fixed at fit time (``user_rows`` index
    ``user_factors``; ``X`` in ``recommend`` only supplies what each user has seen).
    """

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.02,
        regularization: float = 0.01,
        epochs: int = 30,
        sampling: str = "popularity",
        warmup_epochs: int = 5,
        warmup_sampling: str = "popularity",
        temperature: float = 1.0,
        n_candidates: int = 32,
        samples_per_epoch: int | None = None,
        init_scale: float = 0.1,
        n_threads: int | None = None,
        seed: int = 0,
    ):
        if sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
        if warmup_sampling not in ("popularity", "uniform"):
            raise ValueError(f"warmup_sampling must be 'popularity' or 'uniform', got {warmup_sampling!r}")
        if factors < 1 or epochs < 0 or n_candidates < 1 or temperature <= 0:
            raise ValueError("need factors >= 1, epochs >= 0, n_candidates >= 1, temperature > 0")
        self.factors = int(factors)
        self.learning_rate = float(learning_rate)
        self.regularization = float(regularization)
        self.epochs = int(epochs)
        self.sampling = sampling
        self.warmup_epochs = int(warmup_epochs)
        self.warmup_sampling = warmup_sampling
        self.temperature = float(temperature)
        self.n_candidates = int(n_candidates)
        self.samples_per_epoch = samples_per_epoch
        self.init_scale = float(init_scale)
        self.n_threads = n_threads
        self.seed = int(seed)
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        self.scored_items: np.ndarray | None = None
        self.n_items = 0
        self.history: list[dict] = []

    def fit(self, X: sp.csr_matrix) -> BPR:
        X = check_interactions(X)
        n_users, n_items = X.shape
        if X.nnz == 0:
            raise ValueError("BPR needs at least one interaction")
        rng = np.random.default_rng(self.seed)
        scale = self.init_scale / np.sqrt(self.factors)
        U = (rng.standard_normal((n_users, self.factors)) * scale).astype(np.float32)
        V = (rng.standard_normal((n_items, self.factors)) * scale).astype(np.float32)
        pairs = _pairs(X)
        indptr, indices = X.indptr.astype(np.int64), X.indices.astype(np.int32)
        n_samples = int(self.samples_per_epoch or X.nnz)
        chunk = _chunk(n_samples)
        n_chunks = -(-n_samples // chunk)
        no_table = (np.zeros((1, 1), np.int32), np.zeros((1, 1), np.float32))
        self.history = []
        old_threads = nb.get_num_threads()
        if self.n_threads is not None:
            nb.set_num_threads(max(1, min(self.n_threads, nb.config.NUMBA_NUM_THREADS)))
        try:
            for epoch in range(self.epochs):
                t0 = time.perf_counter()
                adaptive = self.sampling == "adaptive" and epoch >= self.warmup_epochs
                if adaptive:
                    cand, cum = adaptive_negative_table(
                        U, V, X, self.n_candidates, self.temperature, seed=self.seed * 7919 + epoch
                    )
                    mode = 3 if self.warmup_sampling == "uniform" else 2
                else:
                    cand, cum = no_table
                    base = self.warmup_sampling if self.sampling == "adaptive" else self.sampling
                    mode = 1 if base == "uniform" else 0
                t1 = time.perf_counter()
                skipped, loss = _epoch_kernel(
                    U, V, pairs, indptr, indices, n_items, n_samples, chunk,
                    _seeds(self.seed, 0, epoch, n=n_chunks), np.float32(self.learning_rate),
                    np.float32(self.regularization), mode,
                    cand, cum,
                )  # fmt: skip
                t2 = time.perf_counter()
                used = n_samples - int(skipped)
                self.history.append(
                    {
                        "epoch": epoch,
                        "adaptive": adaptive,
                        "samples": n_samples,
                        "false_negatives": int(skipped),
                        "loss": float(loss) / max(used, 1),
                        "table_seconds": t1 - t0,
                        "sgd_seconds": t2 - t1,
                    }
                )
        finally:
            nb.set_num_threads(old_threads)
        self.user_factors, self.item_factors = U, V
        self.n_items = n_items
        self.scored_items = np.arange(n_items, dtype=np.int32)
        return self

    @property
    def n_parameter_bytes(self) -> int:
        """Bytes of the fitted parameters (user and item factors)."""
        self._check_fitted()
        return int(self.user_factors.nbytes + self.item_factors.nbytes)

    def _check_users(self, user_rows: np.ndarray, X: sp.csr_matrix) -> None:
        if user_rows.size and user_rows.max() >= self.user_factors.shape[0]:
            raise IndexError(f"user_rows must be < {self.user_factors.shape[0]} (users seen in fit)")

    def _score(self, user_rows: np.ndarray, X_rows: sp.csr_matrix, cols: np.ndarray) -> np.ndarray:
        V = self.item_factors if cols.size == self.n_items else self.item_factors[cols]
        return self.user_factors[user_rows] @ V.T
