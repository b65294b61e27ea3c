"""The clip Gaussian mixture (audience.profiles.gmm): likelihoods and posteriors against sklearn, the EM
update against sklearn's, soft user profiles against a per-user loop, persistence and determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture
from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

from audience.config import GmmConfig
from audience.profiles.gmm import (
    COVARIANCE_TYPES,
    GmmModel,
    SoftProfileAccumulator,
    _FitData,
    _repair,
    fit_gmm,
    user_soft_profiles,
)


def _toy(n_per: int = 400, k: int = 5, d: int = 6, spread: float = 4.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * spread
    scales = rng.uniform(0.3, 0.8, size=(k, d))
    labels = np.repeat(np.arange(k), n_per)
    x = centers[labels] + rng.normal(size=(labels.size, d)) * scales[labels]
    order = rng.permutation(labels.size)
    return x[order].astype(np.float32), labels[order]


@pytest.fixture(scope="module")
def toy():
    return _toy()


@pytest.fixture(scope="module")
def sk_models(toy):
    x, _ = toy
    return {
        ct: GaussianMixture(4, covariance_type=ct, random_state=0, max_iter=20).fit(x.astype(np.float64))
        for ct in COVARIANCE_TYPES
    }


def _from_sklearn(gm: GaussianMixture) -> GmmModel:
    return GmmModel(gm.weights_, gm.means_, gm.covariances_, gm.covariance_type)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_posteriors_and_likelihoods_match_sklearn(toy, sk_models, ct):
    x, _ = toy
    gm = sk_models[ct]
    model = _from_sklearn(gm)
    np.testing.assert_allclose(model.precisions_cholesky, gm.precisions_cholesky_, rtol=1e-10, atol=1e-12)
    proba = model.predict_proba(x, batch=97)  # batches that do not divide n
    assert proba.dtype == np.float32 and proba.shape == (x.shape[0], 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(proba, gm.predict_proba(x.astype(np.float64)), atol=1e-4)
    np.testing.assert_allclose(model.score_samples(x, batch=128), gm.score_samples(x), rtol=1e-4, atol=1e-4)
    assert model.mean_log_likelihood(x) == pytest.approx(gm.score(x), rel=1e-5)
    assert model.bic(x) == pytest.approx(gm.bic(x), rel=1e-5)
    np.testing.assert_array_equal(model.predict(x), proba.argmax(axis=1))
    back = model.to_sklearn()
    np.testing.assert_allclose(back.predict_proba(x), gm.predict_proba(x), atol=1e-10)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_m_step_matches_sklearn(toy, sk_models, ct):
    x, _ = toy
    gm = sk_models[ct]
    resp = gm.predict_proba(x.astype(np.float64)).astype(np.float32)
    cfg = GmmConfig(n_components=4, covariance_type=ct, dim=x.shape[1], batch_size=300)
    centre = x.mean(axis=0, dtype=np.float64)
    model = _FitData(x, centre, cfg).m_step(lambda sl: resp[sl], 4, cfg, centre, np.random.default_rng(0))
    nk, means, cov = _estimate_gaussian_parameters(x.astype(np.float64), resp.astype(np.float64), 1e-6, ct)
    np.testing.assert_allclose(model.weights, nk / nk.sum(), rtol=1e-5)
    np.testing.assert_allclose(model.means, means, atol=1e-4)
    np.testing.assert_allclose(model.covariances, cov, rtol=1e-3, atol=1e-4)


def test_fit_recovers_separated_clusters():
    x, labels = _toy(n_per=600, k=6, d=8, spread=5.0, seed=3)
    model = fit_gmm(x, GmmConfig(n_components=6, dim=None, sample_size=None, validation_size=500, seed=1))
    assert adjusted_rand_score(labels, model.predict(x)) > 0.9
    assert model.info["iterations"] >= 1 and model.info["n_train"] == x.shape[0] - 500


@pytest.mark.parametrize("ct", ["spherical", "diag", "tied"])
def test_fit_other_covariances_recover_clusters(ct):
    x, labels = _toy(n_per=300, k=4, d=5, spread=6.0, seed=5)
    model = fit_gmm(x, GmmConfig(n_components=4, covariance_type=ct, dim=None, sample_size=None, seed=0))
    assert adjusted_rand_score(labels, model.predict(x)) > 0.9


def test_fit_is_deterministic_for_a_seed():
    x, _ = _toy(n_per=300, k=5, d=6, spread=1.5, seed=7)  # overlapping: EM runs several iterations
    cfg = GmmConfig(n_components=8, dim=4, sample_size=1200, validation_size=200, seed=11, init="k-means++")
    a, b = fit_gmm(x, cfg), fit_gmm(x, cfg)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = fit_gmm(x, GmmConfig(**{**cfg.__dict__, "seed": 12}))
    assert not np.array_equal(a.means, c.means)
    assert a.dim == 4 and a.predict_proba(x).shape == (x.shape[0], 8)  # extra columns are ignored


def test_fit_keeps_best_validation_parameters():
    x, _ = _toy(n_per=250, k=4, d=6, spread=1.0, seed=9)
    model = fit_gmm(x, GmmConfig(n_components=12, dim=None, sample_size=600, validation_size=200, tol=-np.inf,
                                 max_iter=8, seed=0))  # fmt: skip
    scores = [h["score"] for h in model.info["history"]]
    assert model.info["best_score"] == pytest.approx(max(scores))


def test_save_load_roundtrip(tmp_path, toy):
    x, _ = toy
    model = fit_gmm(x, GmmConfig(n_components=4, covariance_type="full", dim=None, sample_size=None, seed=0))
    path = model.save(tmp_path / "gmm.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gmm.npz"]  # no temp file left behind
    loaded = GmmModel.load(path)
    assert loaded.covariance_type == "full" and loaded.info["iterations"] == model.info["iterations"]
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_config_is_checked():
    with pytest.raises(ValueError, match="covariance_type"):
        GmmConfig(covariance_type="banana")
    with pytest.raises(ValueError, match="init"):
        GmmConfig(init="nope")
    with pytest.raises(ValueError, match="dim"):
        fit_gmm(np.zeros((50, 4), dtype=np.float32), GmmConfig(n_components=2, dim=8))


def test_repair_replaces_broken_components():
    x, _ = _toy(n_per=100, k=3, d=4, seed=2)
    means = np.zeros((3, 4))
    cov = np.stack([np.eye(4), -np.eye(4), np.eye(4)])  # component 1 is not positive definite
    with pytest.raises(np.linalg.LinAlgError):
        GmmModel(np.full(3, 1 / 3), means, cov, "full")
    w, m, c = _repair(np.array([0.5, 0.0, 0.5]), means, cov, "full", x, np.random.default_rng(0), 1e-6)
    model = GmmModel(w, m, c, "full")
    assert model.weights[1] > 0 and np.isfinite(model.score_samples(x)).all()


def _slow_profiles(dense: np.ndarray, post: np.ndarray) -> np.ndarray:
    out = np.zeros((dense.shape[0], post.shape[1]))
    for u in range(dense.shape[0]):
        total = 0.0
        for i in range(dense.shape[1]):
            if dense[u, i] > 0:
                out[u] += dense[u, i] * post[i]
                total += dense[u, i]
        if total > 0:
            out[u] /= total
    return out


def test_user_soft_profiles_match_loop():
    rng = np.random.default_rng(0)
    n_users, n_items, k = 30, 50, 7
    dense = rng.random((n_users, n_items)) * (rng.random((n_users, n_items)) < 0.15)
    dense[[3, 17]] = 0.0  # users without weight
    post = rng.dirichlet(np.ones(k), size=n_items).astype(np.float32)
    got = user_soft_profiles(sparse.csr_matrix(dense), post)
    assert got.dtype == np.float32 and got.shape == (n_users, k)
    np.testing.assert_allclose(got, _slow_profiles(dense, post), rtol=1e-5, atol=1e-6)
    assert not got[[3, 17]].any()
    has = dense.sum(axis=1) > 0
    np.testing.assert_allclose(got[has].sum(axis=1), 1.0, atol=1e-5)


def test_accumulator_chunks_equal_one_shot():
    rng = np.random.default_rng(1)
    n_users, n_items, k, rows = 40, 60, 5, 500
    users = rng.integers(0, n_users, rows)
    items = rng.integers(0, n_items, rows)
    weights = rng.random(rows).astype(np.float32)
    post = rng.dirichlet(np.ones(k), size=n_items).astype(np.float32)
    acc = SoftProfileAccumulator(post, n_users)
    for chunk in np.array_split(np.arange(rows), 4):  # e.g. one chunk per week
        acc.add(users[chunk], items[chunk], weights[chunk])
    dense = np.zeros((n_users, n_items))
    np.add.at(dense, (users, items), weights)  # repeated (user, item) pairs add up
    np.testing.assert_allclose(acc.result(), _slow_profiles(dense, post), rtol=1e-5, atol=1e-6)
    acc2 = SoftProfileAccumulator(post, n_users)
    acc2.add_matrix(sparse.csr_matrix(dense))
    np.testing.assert_allclose(acc2.result(), acc.result(), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="nonnegative"):
        acc.add_matrix(sparse.csr_matrix(-dense))
