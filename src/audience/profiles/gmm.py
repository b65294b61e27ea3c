"""Soft "interest bubbles": a Gaussian mixture over clip content embeddings, and users as mean posteriors.

A mixture of K Gaussians is fitted on (a sample of) the clip embeddings, first `dim` dimensions. A clip is
described by its posterior over the K components, a user by the weighted mean posterior of the clips they
watched, and a new clip is matched against users by the inner product of posteriors.

Fit (`fit_gmm`): our own EM in float32 numpy instead of sklearn's float64 per-component loops:
  * log w_k + log N(x | k) = const_k + phi(x) @ W[:, k] with phi(x) = [x_i x_j (i <= j), x] (full) or
    [x^2, x] (diag, spherical), so the E-step is one GEMM per batch; the M-step's sufficient statistics are
    one GEMM R^T phi(X) per batch, accumulated in float64. phi of the training clips is computed once.
    Data are centred on their mean first so the float32 expansions lose little (posteriors agree with
    sklearn's to ~1e-5, mean log-likelihood to ~1e-6 relative);
  * it runs on a seeded sample of the clips (`sample_size`) and stops as soon as the log-likelihood of a
    separate validation sample (`validation_size`, carved out of the clips) gains less than `tol` nats per
    clip in an iteration, keeping the best parameters seen. A 128-component full-covariance mixture on ~200k
    clips overfits after a few EM iterations: held-out LL peaks early and then falls while the training LL
    keeps rising, so early stopping is both faster and better than running EM to convergence;
  * init "k-means++" (default, as sklearn's init_params="k-means++"): k-means++ seeding on `init_sample`
    clips, then hard assignment of every clip; "kmeans" adds `init_iter` Lloyd iterations; "random_from_data"
    picks random clips as means.

Operating limits (measured on a 2-core AMD EPYC, one BLAS thread; benchmarks/results/gmm.md):
  * 128 full components, dim 32 (the notebook's) on the 200k-clip medium preset (170k fit + 10k validation):
    7-9 s per fit, held-out LL 20.47 vs 20.29 for sklearn's notebook configuration run to convergence
    (45 EM iterations, 1057 s); one EM iteration costs ~1-1.5 s per 170k clips at K=128 full, and time grows
    ~linearly in sample_size x K x dim^2 (full) or x K x dim (diag, spherical);
  * fit memory: phi of the sample, n x (d(d+1)/2 + d) x 4 bytes (170k x 560 x 4 = 381 MB at dim 32, full),
    responsibilities n x K x 4 bytes (87 MB), plus batch temporaries (batch_size x K x 4 bytes);
  * posteriors of all clips are dense float32: n_items x K x 4 bytes (200k x 128: 98 MiB; 10M x 128: 4.8 GiB)
    -- compute them in batches (`predict_proba(batch=...)`) or only for the clips needed; predict_proba
    itself holds one batch x (d(d+1)/2 + d) float32 feature block;
  * user profiles are n_users x K x 4 bytes (float32); `SoftProfileAccumulator` holds float64 sums
    (n_users x (K + 1) x 8 bytes) beside the posteriors it references.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from numba import njit, prange
from scipy import sparse
from scipy.special import logsumexp

from audience.config import COVARIANCE_TYPES, GmmConfig
from audience.io import atomic_path

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------- kernels


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


def _features(x: np.ndarray, covariance_type: str) -> np.ndarray:
    """[x_i x_j (i <= j), x] (full) or [x^2, x] (diag, spherical) per row, float32; x already centred."""
    n, d = x.shape
    if covariance_type == "full":
        out = np.empty((n, d * (d + 1) // 2 + d), dtype=np.float32)
        off = 0
        for i in range(d):
            np.multiply(x[:, i : i + 1], x[:, i:], out=out[:, off : off + d - i])
            off += d - i
    else:
        out = np.empty((n, 2 * d), dtype=np.float32)
        np.multiply(x, x, out=out[:, :d])
    out[:, -d:] = x
    return out


@njit(parallel=True, cache=True)
def _rows_times(a: np.ndarray, w: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """a @ w in float64, each row summed alone in a fixed order (a BLAS product may round a row differently
    with its place in the batch)."""
    n, p = a.shape
    out = np.zeros((n, w.shape[1]), dtype=np.float64)
    for i in prange(n):
        row = out[i]
        for j in range(p):
            f = np.float64(a[i, j])
            for k in range(w.shape[1]):
                row[k] += f * w[j, k]
    return out


@njit(parallel=True, cache=True)
def _softmax_rows(scores: np.ndarray, const: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """out[i] = softmax(scores[i] + const), float32, row by row."""
    for i in prange(scores.shape[0]):
        row = scores[i] + const
        row = np.exp(row - row.max())
        out[i] = row / row.sum()


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
        self._prepare(self.means.T @ self.weights)  # centred on the mixture mean

    # -- derived float32 arrays used by the E-step; data are shifted by `centre` to keep float32 accurate.
    # full/diag/spherical: log w_k + log N(x | k) = const_k + features(x) @ W[:, k], with features
    # [x_i x_j (i <= j), x] (full) or [x^2, x] (diag, spherical): one GEMM per batch.
    def _prepare(self, centre: np.ndarray) -> None:
        d = self.means.shape[1]
        ct = self.covariance_type
        self.centre = np.asarray(centre, dtype=np.float64)
        mu = self.means - self.centre
        pc = self.precisions_cholesky
        const = np.log(np.maximum(self.weights, np.finfo(np.float64).tiny)) - 0.5 * d * _LOG_2PI
        const = const + _log_det_chol(pc, ct, d)
        if ct == "tied":
            self._proj = np.ascontiguousarray(pc, dtype=np.float32)
            b = mu @ pc  # (K, d)
            self._shift = np.ascontiguousarray(b.T, dtype=np.float32)  # (d, K)
            const = const - 0.5 * (b**2).sum(axis=1)
        else:
            if ct == "full":
                prec = np.einsum("kij,klj->kil", pc, pc)  # (K, d, d) precision matrices
                iu = np.triu_indices(d)
                quad = prec[:, iu[0], iu[1]] * np.where(iu[0] == iu[1], 1.0, 2.0)  # (K, d(d+1)/2)
                lin = np.einsum("kij,kj->ki", prec, mu)
            else:
                p = pc**2 if ct == "diag" else np.repeat((pc**2)[:, None], d, axis=1)
                quad, lin = p, mu * p
            const = const - 0.5 * (mu * lin).sum(axis=1)
            self._w = np.ascontiguousarray(np.concatenate([-0.5 * quad, lin], axis=1).T, dtype=np.float32)
        self._const = const.astype(np.float32)

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def digest(self) -> str:
        """A short content hash of the parameters: a cache key part for what the mixture shapes."""
        h = hashlib.sha1(self.covariance_type.encode())
        for values in (self.weights, self.means, self.covariances):
            h.update(np.ascontiguousarray(values).tobytes())
        return h.hexdigest()[:12]

    def n_parameters(self) -> int:
        k, d = self.means.shape
        cov = {"spherical": k, "diag": k * d, "tied": d * (d + 1) // 2, "full": k * d * (d + 1) // 2}
        return cov[self.covariance_type] + k * d + k - 1

    def _as_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] < self.dim:
            raise ValueError(f"embeddings must be (n, >= {self.dim}), found {x.shape}")
        return x[:, : self.dim]

    def _centred(self, xb: np.ndarray) -> np.ndarray:
        return np.asarray(xb, dtype=np.float32) - self.centre.astype(np.float32)

    def _weighted_log_prob(self, xb: np.ndarray, feats: np.ndarray | None = None) -> np.ndarray:
        """log w_k + log N(x | k) for one batch, float32 (n, K); `feats` = _features(centred batch)."""
        if self.covariance_type == "tied":
            y = self._centred(xb) @ self._proj
            sq = (y * y).sum(axis=1, keepdims=True) - 2.0 * (y @ self._shift)
            return self._const - np.float32(0.5) * sq
        if feats is None:
            feats = _features(self._centred(xb), self.covariance_type)
        out = feats @ self._w
        out += self._const
        return out

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

    def row_posteriors(self, embeddings: np.ndarray, batch: int = 65_536) -> np.ndarray:
        """predict_proba computed row by row in float64 in a fixed order: a clip's posterior does not depend
        on the other clips of the call, so sums cached from one run's catalog equal another's. float32
        (n, K); cost n x features x K multiply-adds (64 x 128 a clip for 32 diagonal dimensions)."""
        x = self._as_input(embeddings)
        out = np.empty((x.shape[0], self.n_components), dtype=np.float32)
        const = self._const.astype(np.float64)
        for sl in self._batches(x.shape[0], batch):
            xc = self._centred(x[sl])
            if self.covariance_type == "tied":  # the squared norm of y is the same for every component
                scores = _rows_times(_rows_times(xc, self._proj), self._shift)
            else:
                scores = _rows_times(_features(xc, self.covariance_type), self._w)
            _softmax_rows(scores, const, out[sl])
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


def _m_step_params(stats: np.ndarray, nk: np.ndarray, xtx: np.ndarray | None, cfg: GmmConfig, d: int):
    """(weights, means, covariances) in centred coordinates from R^T features (K, p), float64."""
    k = stats.shape[0]
    ct = cfg.covariance_type
    nk = nk + 10 * np.finfo(np.float64).eps
    mu = stats[:, -d:] / nk[:, None]
    if ct == "full":
        iu = np.triu_indices(d)
        sxx = np.zeros((k, d, d))
        sxx[:, iu[0], iu[1]] = stats[:, :-d]
        sxx[:, iu[1], iu[0]] = stats[:, :-d]
        cov = sxx / nk[:, None, None] - mu[:, :, None] * mu[:, None, :]
        cov[:, np.arange(d), np.arange(d)] += cfg.reg_covar
    elif ct == "tied":
        cov = (xtx - (nk[:, None] * mu).T @ mu) / nk.sum()
        cov.flat[:: d + 1] += cfg.reg_covar
    else:
        var = stats[:, :d] / nk[:, None] - mu**2 + cfg.reg_covar
        cov = var if ct == "diag" else var.mean(axis=1)
    return nk / nk.sum(), mu, cov


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


class _FitData:
    """Training (or validation) clips centred on `centre`, with their features precomputed once:
    n x (d(d+1)/2 + d) x 4 bytes for full covariance (180k x 560 x 4 = 403 MB), n x 2d x 4 for diag."""

    def __init__(self, x: np.ndarray, centre: np.ndarray, cfg: GmmConfig):
        self.n, self.d = x.shape
        self.batch = cfg.batch_size
        xc = (x - centre).astype(np.float32)
        self.feats = xc if cfg.covariance_type == "tied" else _features(xc, cfg.covariance_type)
        self.xtx = xc.T.astype(np.float64) @ xc if cfg.covariance_type == "tied" else None
        self.xc = xc

    def slices(self):
        for start in range(0, self.n, self.batch):
            yield slice(start, min(start + self.batch, self.n))

    def e_step(self, model: GmmModel, resp: np.ndarray | None) -> float:
        """Mean log-likelihood; fills `resp` (n, K) float32 with the posteriors when given."""
        total = 0.0
        for sl in self.slices():
            wlp = model._weighted_log_prob(self.xc[sl], self.feats[sl])
            m = wlp.max(axis=1, keepdims=True)
            wlp -= m
            np.exp(wlp, out=wlp)
            s = wlp.sum(axis=1, keepdims=True)
            total += float(np.log(s.astype(np.float64)).sum() + m.astype(np.float64).sum())
            if resp is not None:
                wlp /= s
                resp[sl] = wlp
        return total / max(self.n, 1)

    def m_step(self, resp_fn, k: int, cfg: GmmConfig, centre: np.ndarray, rng) -> GmmModel:
        stats = np.zeros((k, self.feats.shape[1]))
        nk = np.zeros(k)
        for sl in self.slices():
            r = resp_fn(sl)
            nk += r.sum(axis=0, dtype=np.float64)
            stats += r.T @ self.feats[sl]
        weights, mu, cov = _m_step_params(stats, nk, self.xtx, cfg, self.d)
        try:
            model = GmmModel(weights, mu + centre, cov, cfg.covariance_type)
        except np.linalg.LinAlgError:
            weights, mu, cov = _repair(weights, mu, cov, cfg.covariance_type, self.xc, rng, cfg.reg_covar)
            model = GmmModel(weights, mu + centre, cov, cfg.covariance_type)
        model._prepare(centre)  # the features are centred on the data mean (= mixture mean up to rounding)
        return model


def _init_labels(x: np.ndarray, cfg: GmmConfig, rng: np.random.Generator) -> np.ndarray:
    """Hard assignments for the first M-step."""
    from sklearn.cluster import kmeans_plusplus

    k = cfg.n_components
    seed = int(rng.integers(2**31 - 1))
    if cfg.init == "random_from_data":
        centers = x[rng.choice(x.shape[0], size=k, replace=False)]
    else:
        pool = x
        if cfg.init_sample is not None and cfg.init_sample < x.shape[0]:
            pool = x[np.sort(rng.choice(x.shape[0], size=max(cfg.init_sample, k), replace=False))]
        centers, _ = kmeans_plusplus(pool, k, random_state=seed)
    centers = centers.astype(np.float32)
    iters = cfg.init_iter if cfg.init == "kmeans" else 0
    labels = _nearest(x, centers, cfg.batch_size)
    for _ in range(iters):
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        sums = np.zeros((k, x.shape[1]))
        _scatter_add(sums, labels, x)
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
        (np.ones(len(labels), dtype=np.float64), (labels, np.arange(len(labels)))),
        shape=(sums.shape[0], len(labels)),
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


DEFAULT_GMM = GmmConfig()


def fit_gmm(embeddings: np.ndarray, cfg: GmmConfig = DEFAULT_GMM) -> GmmModel:
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

    data = _FitData(x, centre, cfg)
    val = _FitData(xv, centre, cfg) if xv is not None else None
    model = data.m_step(hard, k, cfg, centre, rng)
    resp = np.empty((x.shape[0], k), dtype=np.float32)
    best, best_ll, best_iter, history = model, -np.inf, 0, []
    prev = -np.inf
    converged = False
    it = 0
    for it in range(1, cfg.max_iter + 1):
        train_ll = data.e_step(model, resp)
        score = val.e_step(model, None) if val is not None else train_ll
        history.append(
            {"iter": it - 1, "train_ll": train_ll, "score": score, "t": time.perf_counter() - t_start}
        )
        if score > best_ll:
            best, best_ll, best_iter = model, score, it - 1
        if score - prev < cfg.tol:
            converged = True
            break
        prev = score
        if cfg.time_budget_s is not None and time.perf_counter() - t_start > cfg.time_budget_s:
            break
        model = data.m_step(lambda sl: resp[sl], k, cfg, centre, rng)
    best._prepare(best.means.T @ best.weights)  # canonical centring: identical to the model after save/load
    best.info = {
        "config": asdict(cfg),
        "iterations": len(history) - 1,  # EM updates after the init's M-step whose result was scored
        "best_iter": best_iter,
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
    Users with no (or zero total) weight get zero rows; user_item is n_users x n_items, weights >= 0."""
    m = sparse.csr_matrix(user_item)
    acc = SoftProfileAccumulator(posteriors, m.shape[0])
    acc.add_matrix(m)
    return acc.result()


class SoftProfileAccumulator:
    """Accumulates sum_w posterior and sum_w per user chunk by chunk (e.g. one week at a time), then
    normalises to the weighted mean posterior. Memory n_users x (K + 1) x 8 bytes beside the posteriors
    (n_items x K float32, kept by reference)."""

    def __init__(self, posteriors: np.ndarray, n_users: int):
        self.posteriors = np.asarray(posteriors, dtype=np.float32)
        if self.posteriors.ndim != 2:
            raise ValueError(f"posteriors must be (n_items, K), found {self.posteriors.shape}")
        self.sums = np.zeros((int(n_users), self.posteriors.shape[1]), dtype=np.float64)
        self.weights = np.zeros(int(n_users), dtype=np.float64)

    def add(self, users: np.ndarray, items: np.ndarray, weights: np.ndarray) -> None:
        """Add interaction rows: dense user index, dense item index (row of posteriors), nonnegative weight.
        Repeated (user, item) pairs add up."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        w = np.asarray(weights, dtype=np.float32)
        if not (users.shape == items.shape == w.shape) or users.ndim != 1:
            raise ValueError(f"users {users.shape}, items {items.shape}, weights {w.shape} must be equal 1-d")
        m = sparse.csr_matrix((w, (users, items)), shape=self.shape)
        self.add_matrix(m)

    @property
    def shape(self) -> tuple[int, int]:
        return self.sums.shape[0], self.posteriors.shape[0]

    def add_matrix(self, user_item: sparse.spmatrix) -> None:
        """Add a user x item weight matrix (e.g. one week's X_week): sums += X @ posteriors."""
        m = sparse.csr_matrix(user_item, dtype=np.float32)
        if m.shape != self.shape:
            raise ValueError(f"user_item is {m.shape}, expected (n_users, n_items) = {self.shape}")
        if m.nnz and m.data.min() < 0:
            raise ValueError("user_item weights must be nonnegative")
        self.sums += m @ self.posteriors
        self.weights += np.asarray(m.sum(axis=1, dtype=np.float64)).ravel()

    def result(self) -> np.ndarray:
        """Weighted mean posteriors, float32 (n_users, K); zero rows for users with no weight."""
        out = np.zeros(self.sums.shape, dtype=np.float32)
        has = self.weights > 0
        out[has] = (self.sums[has] / self.weights[has, None]).astype(np.float32)
        return out
