"""Soft "interest bubbles": a Gaussian mixture over clip content embeddings, and users as mean posteriors.

A mixture of K Gaussians is fitted on (a sample of) the clip embeddings, first `dim` dimensions. A clip is
described by its posterior over the K components, a user by the weighted mean posterior of the clips they
watched, and a new clip is matched against users by the inner product of posteriors.

Fit (`fit_gmm`): our own EM in float32 numpy, not sklearn's float64 per-component loops:
  * the E-step of a full-covariance mixture is one GEMM per batch, X @ [P_1 .. P_K] (P_k the precision
    Cholesky factors), followed by a fused subtract-square-sum (numba); spherical/diag/tied reduce to GEMMs
    against the means; the M-step's second moments are one GEMM R^T [x_i x_j]_{i<=j} per batch, accumulated
    in float64 (data centred on its mean first, so the float32 products lose little);
  * it runs on a seeded sample of the clips (`sample_size`) and stops when the log-likelihood of a
    separate validation sample (`validation_size`) gains less than `tol` nats per clip in an iteration,
    keeping the best parameters seen;
  * init "kmeans" (default) runs a few Lloyd iterations after k-means++ seeding; "k-means++" is seeding only
    (sklearn's init_params="k-means++"); "random_from_data" picks random clips as means.

Operating limits (measured figures: benchmarks/results/gmm.md, 2-core AMD EPYC):
  * fit time ~ iterations x sample_size x K x dim^2 (full) or x K x dim (diag/spherical); the default config
    (128 full components, dim 32, 60k-clip sample) fits in well under a minute on one core;
  * fit memory ~ sample_size x K x 4 bytes x 3 (log-densities, responsibilities, temporaries) plus one batch
    of batch_size x K x dim x 4 bytes (full covariance: 8192 x 128 x 32 x 4 = 128 MiB);
  * posteriors of all clips are dense float32: n_items x K x 4 bytes (200k x 128 = 98 MiB, 10M x 128 = 4.8 GiB)
    -- compute them in batches (`predict_proba(batch=...)`) or only for the clips needed;
  * user profiles are n_users x K x 4 bytes (float32), plus float64 accumulators in `SoftProfileAccumulator`
    (n_users x K x 8 bytes).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numba
import numpy as np
from scipy import sparse
from scipy.special import logsumexp

from audience.io import atomic_path

COVARIANCE_TYPES = ("spherical", "diag", "tied", "full")
INITS = ("kmeans", "k-means++", "random_from_data")
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class GmmConfig:
    """How to fit the mixture. `dim=None` keeps every dimension; `sample_size=None` fits on every clip;
    `validation_size=0` stops on the training log-likelihood instead (sklearn-like)."""

    n_components: int = 128
    covariance_type: str = "full"
    dim: int | None = 32
    sample_size: int | None = 60_000
    validation_size: int = 10_000
    max_iter: int = 200
    tol: float = 1e-3  # nats per clip gained by one EM iteration (validation LL) below which the fit stops
    init: str = "kmeans"
    init_iter: int = 10  # Lloyd iterations of the "kmeans" init
    reg_covar: float = 1e-6
    seed: int = 0
    batch_size: int = 8192
    time_budget_s: float | None = None  # stop EM (keeping the best parameters) after this much wall time

    def __post_init__(self) -> None:
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type={self.covariance_type!r}, expected one of {COVARIANCE_TYPES}")
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r}, expected one of {INITS}")
        if self.n_components < 1:
            raise ValueError(f"n_components={self.n_components}, expected >= 1")


# --------------------------------------------------------------------------------------------- kernels


@numba.njit(cache=True, fastmath=True, nogil=True)
def _sq_dist_groups(y: np.ndarray, b: np.ndarray, k: int, d: int, out: np.ndarray) -> None:  # pragma: no cover
    """out[i, c] = sum_j (y[i, c*d + j] - b[c*d + j])^2 for y (n, k*d)."""
    for i in range(y.shape[0]):
        for c in range(k):
            s = np.float32(0.0)
            base = c * d
            for j in range(d):
                t = y[i, base + j] - b[base + j]
                s += t * t
            out[i, c] = s


def _precision_cholesky(cov: np.ndarray, covariance_type: str) -> np.ndarray:
    """sklearn's precisions_cholesky_ from covariances_ (float64)."""
    if covariance_type in ("spherical", "diag"):
        if np.any(cov <= 0.0):
            raise np.linalg.LinAlgError("non-positive variance")
        return 1.0 / np.sqrt(cov)
    mats = cov[None] if covariance_type == "tied" else cov
    chol = np.linalg.cholesky(mats)  # lower; raises LinAlgError when not positive definite
    d = mats.shape[-1]
    inv = np.linalg.solve(chol, np.broadcast_to(np.eye(d), mats.shape))  # L^-1
    prec = np.swapaxes(inv, -1, -2)  # upper, prec @ prec.T = cov^-1
    return prec[0] if covariance_type == "tied" else prec


def _log_det_chol(prec_chol: np.ndarray, covariance_type: str, d: int) -> np.ndarray:
    if covariance_type == "full":
        return np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
    if covariance_type == "tied":
        return np.full(1, np.log(np.diag(prec_chol)).sum())
    if covariance_type == "diag":
        return np.log(prec_chol).sum(axis=1)
    return d * np.log(prec_chol)


# ----------------------------------------------------------------------------------------------- model


@dataclass
class GmmModel:
    """A fitted mixture, with sklearn's parameter conventions (weights_, means_, covariances_,
    precisions_cholesky_), float64, on the first `dim` embedding dimensions."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, d)
    covariances: np.ndarray  # spherical (K,), diag (K, d), tied (d, d), full (K, d, d)
    covariance_type: str
    info: dict = field(default_factory=dict)  # fit record: iterations, timings, validation LL trajectory

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.means = np.asarray(self.means, dtype=np.float64)
        self.covariances = np.asarray(self.covariances, dtype=np.float64)
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type={self.covariance_type!r}, expected one of {COVARIANCE_TYPES}")
        self.precisions_cholesky = _precision_cholesky(self.covariances, self.covariance_type)
        self._prepare()

    # -- derived float32 arrays used by the E-step; data are shifted by `centre` to keep float32 accurate
    def _prepare(self) -> None:
        k, d = self.means.shape
        ct = self.covariance_type
        self.centre = self.means.T @ self.weights  # mixture mean
        mu = self.means - self.centre
        pc = self.precisions_cholesky
        const = np.log(np.maximum(self.weights, np.finfo(np.float64).tiny)) - 0.5 * d * _LOG_2PI
        const = const + _log_det_chol(pc, ct, d)
        if ct == "full":
            self._proj = np.ascontiguousarray(np.transpose(pc, (1, 0, 2)).reshape(d, k * d), dtype=np.float32)
            self._shift = np.einsum("kd,kde->ke", mu, pc).reshape(-1).astype(np.float32)
        elif ct == "tied":
            self._proj = np.ascontiguousarray(pc, dtype=np.float32)
            b = mu @ pc  # (K, d)
            self._shift = np.ascontiguousarray(b.T, dtype=np.float32)  # (d, K)
            const = const - 0.5 * (b**2).sum(axis=1)
        else:
            prec = pc**2  # (K,) or (K, d)
            if ct == "spherical":
                prec = np.repeat(prec[:, None], d, axis=1)
            self._proj = np.ascontiguousarray(prec.T, dtype=np.float32)  # (d, K) multiplies x^2
            self._shift = np.ascontiguousarray((mu * prec).T, dtype=np.float32)  # (d, K) multiplies x
            const = const - 0.5 * (mu**2 * prec).sum(axis=1)
        self._const = const.astype(np.float32)

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def n_parameters(self) -> int:
        k, d = self.means.shape
        cov = {"spherical": k, "diag": k * d, "tied": d * (d + 1) // 2, "full": k * d * (d + 1) // 2}
        return cov[self.covariance_type] + k * d + k - 1

    def _as_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] < self.dim:
            raise ValueError(f"embeddings must be (n, >= {self.dim}), found {x.shape}")
        return x[:, : self.dim]

    def _weighted_log_prob(self, xb: np.ndarray) -> np.ndarray:
        """log w_k + log N(x | k) for one batch, float32 (n, K)."""
        x = np.asarray(xb, dtype=np.float32) - self.centre.astype(np.float32)
        k, d = self.means.shape
        ct = self.covariance_type
        if ct == "full":
            y = x @ self._proj  # (n, K*d)
            sq = np.empty((x.shape[0], k), dtype=np.float32)
            _sq_dist_groups(y, self._shift, k, d, sq)
        elif ct == "tied":
            y = x @ self._proj
            sq = (y * y).sum(axis=1, keepdims=True) - 2.0 * (y @ self._shift)
        else:
            sq = (x * x) @ self._proj - 2.0 * (x @ self._shift)
        return self._const - np.float32(0.5) * sq

    def _batches(self, n: int, batch: int):
        for start in range(0, n, batch):
            yield slice(start, min(start + batch, n))

    def score_samples(self, embeddings: np.ndarray, batch: int = 16_384) -> np.ndarray:
        """log p(x) per clip, float64 (n,)."""
        x = self._as_input(embeddings)
        out = np.empty(x.shape[0], dtype=np.float64)
        for sl in self._batches(x.shape[0], batch):
            out[sl] = logsumexp(self._weighted_log_prob(x[sl]).astype(np.float64), axis=1)
        return out

    def mean_log_likelihood(self, embeddings: np.ndarray, batch: int = 16_384) -> float:
        """Mean log-density per clip (nats); sklearn's GaussianMixture.score."""
        return float(self.score_samples(embeddings, batch).mean())

    def bic(self, embeddings: np.ndarray, batch: int = 16_384) -> float:
        """Bayesian information criterion on `embeddings` (lower is better); sklearn's definition."""
        n = np.asarray(embeddings).shape[0]
        return float(-2.0 * self.score_samples(embeddings, batch).sum() + self.n_parameters() * np.log(n))

    def predict_proba(self, embeddings: np.ndarray, batch: int = 16_384) -> np.ndarray:
        """Posterior over components per clip, float32 (n, K), rows summing to 1. Memory n x K x 4 bytes."""
        x = self._as_input(embeddings)
        out = np.empty((x.shape[0], self.n_components), dtype=np.float32)
        for sl in self._batches(x.shape[0], batch):
            wlp = self._weighted_log_prob(x[sl])
            wlp -= wlp.max(axis=1, keepdims=True)
            np.exp(wlp, out=wlp)
            wlp /= wlp.sum(axis=1, keepdims=True)
            out[sl] = wlp
        return out

    def predict(self, embeddings: np.ndarray, batch: int = 16_384) -> np.ndarray:
        x = self._as_input(embeddings)
        out = np.empty(x.shape[0], dtype=np.int64)
        for sl in self._batches(x.shape[0], batch):
            out[sl] = self._weighted_log_prob(x[sl]).argmax(axis=1)
        return out

    def to_sklearn(self):
        """An sklearn GaussianMixture carrying these parameters (for checks and interop)."""
        from sklearn.mixture import GaussianMixture

        gm = GaussianMixture(n_components=self.n_components, covariance_type=self.covariance_type)
        gm.weights_, gm.means_, gm.covariances_ = self.weights, self.means, self.covariances
        gm.precisions_cholesky_ = self.precisions_cholesky
        if self.covariance_type == "full":
            gm.precisions_ = np.einsum("kij,klj->kil", self.precisions_cholesky, self.precisions_cholesky)
        elif self.covariance_type == "tied":
            gm.precisions_ = self.precisions_cholesky @ self.precisions_cholesky.T
        else:
            gm.precisions_ = self.precisions_cholesky**2
        gm.converged_, gm.n_iter_, gm.lower_bound_ = True, int(self.info.get("iterations", 0)), -np.inf
        gm.n_features_in_ = self.dim
        return gm

    def save(self, path: Path) -> Path:
        """Write the parameters to an npz file atomically (temp file beside it, then os.replace)."""
        import json

        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh, weights=self.weights, means=self.means, covariances=self.covariances,
                    covariance_type=np.array(self.covariance_type),
                    info=np.array(json.dumps(self.info, default=str)),
                )  # fmt: skip
        return path

    @classmethod
    def load(cls, path: Path) -> GmmModel:
        import json

        with np.load(Path(path), allow_pickle=False) as npz:
            return cls(
                weights=npz["weights"], means=npz["means"], covariances=npz["covariances"],
                covariance_type=str(npz["covariance_type"]), info=json.loads(str(npz["info"])),
            )  # fmt: skip


# ------------------------------------------------------------------------------------------------- fit


class _Moments:
    """Sufficient statistics of one EM pass, float64, on centred data."""

    def __init__(self, k: int, d: int, covariance_type: str):
        self.nk = np.zeros(k)
        self.sx = np.zeros((k, d))
        self.ct = covariance_type
        if covariance_type == "full":
            self.iu = np.triu_indices(d)
            self.sxx = np.zeros((k, len(self.iu[0])))
        elif covariance_type == "tied":
            self.sxx = np.zeros((d, d))
        else:
            self.sxx = np.zeros((k, d))

    def add(self, x: np.ndarray, resp: np.ndarray) -> None:
        self.nk += resp.sum(axis=0, dtype=np.float64)
        self.sx += resp.T @ x
        if self.ct == "full":
            z = x[:, self.iu[0]] * x[:, self.iu[1]]
            self.sxx += resp.T @ z
        elif self.ct == "tied":
            self.sxx += x.T @ x
        else:
            self.sxx += resp.T @ (x * x)

    def parameters(self, reg_covar: float, centre: np.ndarray):
        """(weights, means, covariances) in the original coordinates."""
        k, d = self.sx.shape
        nk = self.nk + 10 * np.finfo(np.float64).eps
        mu = self.sx / nk[:, None]
        if self.ct == "full":
            sxx = np.zeros((k, d, d))
            sxx[:, self.iu[0], self.iu[1]] = self.sxx
            sxx[:, self.iu[1], self.iu[0]] = self.sxx
            cov = sxx / nk[:, None, None] - mu[:, :, None] * mu[:, None, :]
            cov[:, np.arange(d), np.arange(d)] += reg_covar
        elif self.ct == "tied":
            cov = (self.sxx - (nk[:, None] * mu).T @ mu) / nk.sum()
            cov.flat[:: d + 1] += reg_covar
        else:
            var = self.sxx / nk[:, None] - mu**2 + reg_covar
            cov = var if self.ct == "diag" else var.mean(axis=1)
        return nk / nk.sum(), mu + centre, cov


def _repair(weights, means, cov, covariance_type, x: np.ndarray, rng: np.random.Generator, reg_covar: float):
    """Replace components whose covariance is not positive definite (empty or collapsed) by a copy of the
    global covariance around a random clip, so EM can go on."""
    d = means.shape[1]
    glob = np.cov(x, rowvar=False).reshape(d, d) + reg_covar * np.eye(d)
    if covariance_type == "tied":
        return weights, means, glob
    bad = []
    for c in range(means.shape[0]):
        try:
            _precision_cholesky(cov[c : c + 1], covariance_type)
        except np.linalg.LinAlgError:
            bad.append(c)
    for c in bad:
        means[c] = x[rng.integers(x.shape[0])]
        cov[c] = {"full": glob, "diag": np.diag(glob), "spherical": np.diag(glob).mean()}[covariance_type]
        weights[c] = max(weights[c], 1.0 / (10 * len(weights)))
    return weights / weights.sum(), means, cov


def _m_step(x, resp_fn, k: int, cfg: GmmConfig, centre: np.ndarray, rng):
    mom = _Moments(k, x.shape[1], cfg.covariance_type)
    xc = (x - centre).astype(np.float32)
    for start in range(0, x.shape[0], cfg.batch_size):
        sl = slice(start, min(start + cfg.batch_size, x.shape[0]))
        mom.add(xc[sl], resp_fn(sl))
    weights, means, cov = mom.parameters(cfg.reg_covar, centre)
    try:
        return GmmModel(weights, means, cov, cfg.covariance_type)
    except np.linalg.LinAlgError:
        weights, means, cov = _repair(weights, means, cov, cfg.covariance_type, x, rng, cfg.reg_covar)
        return GmmModel(weights, means, cov, cfg.covariance_type)


def _e_step(model: GmmModel, x: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    """Responsibilities float32 (n, K) and mean log-likelihood of x."""
    resp = np.empty((x.shape[0], model.n_components), dtype=np.float32)
    total = 0.0
    for start in range(0, x.shape[0], batch):
        sl = slice(start, min(start + batch, x.shape[0]))
        wlp = model._weighted_log_prob(x[sl])
        m = wlp.max(axis=1, keepdims=True)
        wlp -= m
        np.exp(wlp, out=wlp)
        s = wlp.sum(axis=1, keepdims=True)
        total += float(np.log(s.astype(np.float64)).sum() + m.astype(np.float64).sum())
        wlp /= s
        resp[sl] = wlp
    return resp, total / max(x.shape[0], 1)


def _init_labels(x: np.ndarray, cfg: GmmConfig, rng: np.random.Generator) -> np.ndarray:
    """Hard assignments for the first M-step."""
    from sklearn.cluster import kmeans_plusplus

    k = cfg.n_components
    seed = int(rng.integers(2**31 - 1))
    if cfg.init == "random_from_data":
        centers = x[rng.choice(x.shape[0], size=k, replace=False)]
    else:
        centers, _ = kmeans_plusplus(x, k, random_state=seed)
    centers = centers.astype(np.float32)
    iters = cfg.init_iter if cfg.init == "kmeans" else 0
    labels = _nearest(x, centers, cfg.batch_size)
    for _ in range(iters):
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        sums = np.zeros((k, x.shape[1]))
        np.add.at(sums, labels, x) if x.shape[0] < 0 else _scatter_add(sums, labels, x)
        keep = counts > 0
        new = centers.copy()
        new[keep] = (sums[keep] / counts[keep, None]).astype(np.float32)
        if np.allclose(new, centers, atol=1e-6):
            break
        centers = new
        labels = _nearest(x, centers, cfg.batch_size)
    return labels


def _scatter_add(sums: np.ndarray, labels: np.ndarray, x: np.ndarray) -> None:
    onehot = sparse.csr_matrix(
        (np.ones(len(labels), dtype=np.float64), (labels, np.arange(len(labels)))), shape=(sums.shape[0], len(labels))
    )
    sums += onehot @ x.astype(np.float64)


def _nearest(x: np.ndarray, centers: np.ndarray, batch: int) -> np.ndarray:
    c2 = (centers.astype(np.float32) ** 2).sum(axis=1)
    out = np.empty(x.shape[0], dtype=np.int64)
    for start in range(0, x.shape[0], batch):
        xb = x[start : start + batch]
        out[start : start + len(xb)] = (c2 - 2.0 * (xb @ centers.T)).argmin(axis=1)
    return out


def _split(n: int, cfg: GmmConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the training sample and of the validation sample (disjoint)."""
    order = rng.permutation(n)
    n_val = min(cfg.validation_size, n // 5)
    val, rest = order[:n_val], order[n_val:]
    if cfg.sample_size is not None and cfg.sample_size < len(rest):
        rest = rest[: cfg.sample_size]
    return np.sort(rest), np.sort(val)


def fit_gmm(embeddings: np.ndarray, cfg: GmmConfig = GmmConfig()) -> GmmModel:  # noqa: B008
    """Fit a Gaussian mixture on clip embeddings (n, >= cfg.dim), float16/32/64 accepted.

    Deterministic for a given cfg.seed and input. Returns the parameters with the best validation
    log-likelihood (the training LL when validation_size is 0 or the data are too few); `model.info`
    records iterations, timings and the LL trajectory. Limits: see the module docstring.
    """
    t_start = time.perf_counter()
    x_all = np.asarray(embeddings)
    if x_all.ndim != 2:
        raise ValueError(f"embeddings must be 2-d (n, dim), found {x_all.shape}")
    dim = x_all.shape[1] if cfg.dim is None else int(cfg.dim)
    if dim > x_all.shape[1]:
        raise ValueError(f"cfg.dim={dim} but embeddings have {x_all.shape[1]} dimensions")
    rng = np.random.default_rng(cfg.seed)
    train_idx, val_idx = _split(x_all.shape[0], cfg, rng)
    if len(train_idx) < cfg.n_components:
        raise ValueError(f"{len(train_idx)} training clips for {cfg.n_components} components")
    x = np.ascontiguousarray(x_all[train_idx, :dim], dtype=np.float32)
    xv = np.ascontiguousarray(x_all[val_idx, :dim], dtype=np.float32) if len(val_idx) else None
    k = cfg.n_components
    centre = x.mean(axis=0, dtype=np.float64)

    labels = _init_labels(x, cfg, rng)
    t_init = time.perf_counter() - t_start

    def hard(sl):
        r = np.zeros((sl.stop - sl.start, k), dtype=np.float32)
        r[np.arange(r.shape[0]), labels[sl]] = 1.0
        return r

    model = _m_step(x, hard, k, cfg, centre, rng)
    best, best_ll, history = model, -np.inf, []
    prev = -np.inf
    converged = False
    it = 0
    for it in range(1, cfg.max_iter + 1):
        resp, train_ll = _e_step(model, x, cfg.batch_size)
        score = model.mean_log_likelihood(xv, cfg.batch_size) if xv is not None else train_ll
        history.append({"iter": it - 1, "train_ll": train_ll, "score": score, "t": time.perf_counter() - t_start})
        if score > best_ll:
            best, best_ll = model, score
        if score - prev < cfg.tol:
            converged = True
            break
        prev = score
        if cfg.time_budget_s is not None and time.perf_counter() - t_start > cfg.time_budget_s:
            break
        model = _m_step(x, lambda sl, r=resp: r[sl], k, cfg, centre, rng)
    best.info = {
        "config": asdict(cfg),
        "iterations": it,
        "converged": converged,
        "n_train": int(x.shape[0]),
        "n_validation": len(val_idx),
        "best_score": float(best_ll),
        "score_is": "validation_ll" if xv is not None else "train_ll",
        "init_s": round(t_init, 3),
        "fit_s": round(time.perf_counter() - t_start, 3),
        "history": history,
    }
    return best


# ------------------------------------------------------------------------------------------- profiles


def user_soft_profiles(user_item: sparse.spmatrix, posteriors: np.ndarray) -> np.ndarray:
    """Weighted mean posterior per user: (user_item @ posteriors) / row weight sums, float32 (n_users, K).
    Users with no (or zero total) weight get zero rows. user_item is n_users x n_items, nonnegative weights."""
    m = sparse.csr_matrix(user_item)
    if m.shape[1] != posteriors.shape[0]:
        raise ValueError(f"user_item has {m.shape[1]} items but posteriors has {posteriors.shape[0]} rows")
    acc = SoftProfileAccumulator(m.shape[0], posteriors.shape[1])
    acc.add_matrix(m, posteriors)
    return acc.result()


class SoftProfileAccumulator:
    """Accumulates sum_w posterior and sum_w per user chunk by chunk (e.g. one week at a time), then
    normalises. Memory n_users x (K + 1) x 8 bytes."""

    def __init__(self, n_users: int, n_components: int):
        self.sums = np.zeros((n_users, n_components), dtype=np.float64)
        self.weights = np.zeros(n_users, dtype=np.float64)

    def add(self, users: np.ndarray, items: np.ndarray, weights: np.ndarray, posteriors: np.ndarray) -> None:
        """Add interaction rows (dense user index, dense item index into posteriors, weight)."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        w = np.asarray(weights, dtype=np.float64)
        if not (users.shape == items.shape == w.shape):
            raise ValueError(f"users {users.shape}, items {items.shape}, weights {w.shape} must match")
        m = sparse.csr_matrix((w, (users, items)), shape=(self.sums.shape[0], posteriors.shape[0]))
        self.add_matrix(m, posteriors)

    def add_matrix(self, user_item: sparse.spmatrix, posteriors: np.ndarray) -> None:
        """Add a user x item weight matrix (e.g. one week's X_week) against item posteriors (n_items, K)."""
        m = sparse.csr_matrix(user_item, dtype=np.float64)
        if m.shape != (self.sums.shape[0], posteriors.shape[0]):
            raise ValueError(f"user_item {m.shape} does not match ({self.sums.shape[0]}, {posteriors.shape[0]})")
        if m.nnz and m.data.min() < 0:
            raise ValueError("user_item weights must be nonnegative")
        self.sums += m @ np.asarray(posteriors, dtype=np.float64)
        self.weights += np.asarray(m.sum(axis=1)).ravel()

    def result(self) -> np.ndarray:
        out = np.zeros(self.sums.shape, dtype=np.float32)
        has = self.weights > 0
        out[has] = (self.sums[has] / self.weights[has, None]).astype(np.float32)
        return out
