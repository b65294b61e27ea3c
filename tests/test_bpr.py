"""BPR: the SGD step against reference values, the samplers (popularity, uniform, adaptive), seeding, and
recommend."""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest
import scipy.sparse as sp
from cf_data import block_matrix
from scipy.stats import chisquare

from audience.models import BPR
from audience.models.bpr import adaptive_negative_table, bpr_step, sample_triplets

STEP_ATOL = 1e-6


def skewed_matrix(n_users=400, n_items=60, seed=0):
    """Random interactions with Zipf-like clip popularity (for the sampler tests)."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    dense = rng.random((n_users, n_items)) < 0.4 * pop[None, :] / pop.max()
    dense[:, :] |= np.eye(n_users, n_items, dtype=bool)  # every clip and most users have an interaction
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_reference_small_values(dtype):
    U = np.array([[-0.004, -0.01, -0.012, 0.038, 0.054], [0.012, 0.038, 0, -0.06, 0.015]], dtype=dtype)
    V = np.array([[0.034, 0.047, 0.061, -0.043, -0.017], [-0.005, 0.065, -0.086, 0.055, -0.013]], dtype=dtype)
    bpr_step(U, V, 0, 0, 1, 0.1, 0.1)
    np.testing.assert_allclose(
        U[0], [-0.00200446, -0.01080256, -0.00450913, 0.03270608, 0.05325943], rtol=0, atol=STEP_ATOL
    )
    np.testing.assert_allclose(
        V,
        [
            [0.03345943, 0.04602858, 0.0597883, -0.04066461, -0.01412233],
            [-0.00474943, 0.06485142, -0.0845383, 0.0525446, -0.01557767],
        ],
        rtol=0,
        atol=STEP_ATOL,
    )
    np.testing.assert_array_equal(U[1], np.array([0.012, 0.038, 0, -0.06, 0.015], dtype=dtype))  # untouched


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_reference_unit_values(dtype):
    U = np.array([[1, 0, 0, 0, 0], [1, 1, -1, -1, 0]], dtype=dtype)
    V = np.array([[0, 1, 0, -1, 1], [-1, 0, 1, 0, -1]], dtype=dtype)
    bpr_step(U, V, 0, 0, 1, 1.0, 0.0)
    np.testing.assert_allclose(
        U[0], [1.2689414, 0.26894143, -0.26894143, -0.26894143, 0.53788286], rtol=0, atol=STEP_ATOL
    )
    np.testing.assert_allclose(
        V, [[0.26894143, 1, 0, -1, 1], [-1.2689414, 0, 1, 0, -1]], rtol=0, atol=STEP_ATOL
    )


@pytest.mark.parametrize("sampling", ["popularity", "uniform"])
def test_sampled_frequencies_match_the_data(sampling):
    X = skewed_matrix()
    n = 200_000
    u, i, j, rejected = sample_triplets(X, n, seed=11, sampling=sampling)
    counts = np.bincount(X.indices, minlength=X.shape[1])
    # positives: (user, clip) is an interaction, clips in proportion to their interactions
    assert (np.asarray(X[u, i]).ravel() != 0).all()
    assert chisquare(np.bincount(i, minlength=X.shape[1]), n * counts / counts.sum()).pvalue > 1e-3
    user_counts = np.diff(X.indptr)
    user_counts = user_counts[user_counts > 0]
    got_users = np.bincount(u, minlength=X.shape[0])[np.diff(X.indptr) > 0]
    assert chisquare(got_users, n * user_counts / user_counts.sum()).pvalue > 1e-3
    # raw negatives (before rejection): popularity or uniform
    expected_neg = counts / counts.sum() if sampling == "popularity" else np.full(X.shape[1], 1 / X.shape[1])
    assert chisquare(np.bincount(j, minlength=X.shape[1]), n * expected_neg).pvalue > 1e-3
    # rejected exactly when the negative is a positive of the user
    np.testing.assert_array_equal(rejected, np.asarray(X[u, j]).ravel() != 0)
    assert 0 < rejected.sum() < n


def test_samples_do_not_depend_on_threads_and_fit_is_reproducible_on_one_thread():
    X = skewed_matrix(seed=1)
    old = nb.get_num_threads()
    try:
        nb.set_num_threads(1)
        one = sample_triplets(X, 100_000, seed=3)
        nb.set_num_threads(min(2, nb.config.NUMBA_NUM_THREADS))
        two = sample_triplets(X, 100_000, seed=3)
    finally:
        nb.set_num_threads(old)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)
    params = {"factors": 8, "epochs": 3, "n_threads": 1, "seed": 5}
    m1, m2 = BPR(**params).fit(X), BPR(**params).fit(X)
    np.testing.assert_array_equal(m1.user_factors, m2.user_factors)
    np.testing.assert_array_equal(m1.item_factors, m2.item_factors)
    m3 = BPR(**{**params, "seed": 6}).fit(X)
    assert not np.array_equal(m1.item_factors, m3.item_factors)
    assert m1.history[0]["false_negatives"] > 0
    assert m1.history[-1]["loss"] < m1.history[0]["loss"]


def test_adaptive_table_invariants():
    X = skewed_matrix(seed=2)
    rng = np.random.default_rng(0)
    U = rng.normal(0, 1, (X.shape[0], 4)).astype(np.float32)
    V = rng.normal(0, 1, (X.shape[1], 4)).astype(np.float32)
    temperature = 2.0
    cand, cum = adaptive_negative_table(U, V, X, n_candidates=16, temperature=temperature, seed=1)
    weights = np.diff(cum, axis=1, prepend=0.0)
    assert (weights >= 0).all()
    is_pos = np.asarray(X[np.repeat(np.arange(X.shape[0]), 16), cand.ravel()]).reshape(cand.shape) != 0
    assert (weights[is_pos] == 0).all()  # a positive never gets negative weight
    has = np.diff(X.indptr) > 0
    valid = has & (~is_pos).any(axis=1)
    assert (cum[valid, -1] > 0).all() and (cum[~has] == 0).all()
    # within a row, weights are proportional to exp(score / T) / popularity
    counts = np.bincount(X.indices, minlength=X.shape[1])
    for u in np.flatnonzero(valid)[:50]:
        ok = ~is_pos[u]
        c = cand[u, ok]
        target = np.exp((U[u] @ V[c].T).astype(np.float64) / temperature) / counts[c]
        # float32 cumulative sums: small weights are exact only to ~1e-7 of the row total
        np.testing.assert_allclose(weights[u, ok] / cum[u, -1], target / target.sum(), rtol=1e-3, atol=1e-6)
    # the training sampler never returns a positive as negative, and positives are always interactions
    u, i, j, rejected = sample_triplets(X, 50_000, seed=4, sampling="adaptive", table=(cand, cum))
    fallback = cum[u, -1] == 0
    assert (np.asarray(X[u, i]).ravel() != 0).all()
    assert (np.asarray(X[u[~fallback], j[~fallback]]).ravel() == 0).all()
    assert not rejected[~fallback].any()


def test_adaptive_tends_to_the_exact_softmax():
    """Sampling-importance-resampling: with many candidates the table's negative distribution approaches
    softmax(score / T) over the user's non-positives (among clips with interactions: the popularity
    proposal never reaches the others)."""
    X = skewed_matrix(n_users=20, n_items=30, seed=3)
    rng = np.random.default_rng(1)
    U = rng.normal(0, 1, (20, 4)).astype(np.float32)
    V = rng.normal(0, 1, (30, 4)).astype(np.float32)
    cand, cum = adaptive_negative_table(U, V, X, n_candidates=40_000, temperature=1.0, seed=2)
    weights = np.diff(cum.astype(np.float64), axis=1, prepend=0.0)
    for u in range(20):
        got = np.bincount(cand[u], weights=weights[u], minlength=30)
        got /= got.sum()
        logits = (U[u] @ V.T).astype(np.float64)
        logits[X[u].indices] = -np.inf
        logits[np.bincount(X.indices, minlength=30) == 0] = -np.inf
        exact = np.exp(logits - logits.max())
        exact /= exact.sum()
        assert 0.5 * np.abs(got - exact).sum() < 0.05  # total variation


@pytest.mark.parametrize("warmup_sampling", ["popularity", "uniform"])
def test_adaptive_fit_draws_no_false_negatives_after_warmup(warmup_sampling):
    X, _ = block_matrix(seed=6)
    model = BPR(
        factors=8,
        epochs=4,
        sampling="adaptive",
        warmup_epochs=2,
        warmup_sampling=warmup_sampling,
        n_threads=1,
    ).fit(X)
    assert [h["adaptive"] for h in model.history] == [False, False, True, True]
    assert model.history[0]["false_negatives"] > 0
    for h in model.history[2:]:
        assert h["false_negatives"] < 0.001 * h["samples"]  # only fallback rows can still draw positives


def test_scores_are_factor_products():
    X, _ = block_matrix()
    model = BPR(factors=16, epochs=30, learning_rate=0.05, n_threads=1, seed=0).fit(X)
    assert model.user_factors.shape == (600, 16) and model.item_factors.shape == (120, 16)
    assert model.n_parameter_bytes == (600 + 120) * 16 * 4
    rows = np.array([7, 0, 300])
    ids, scores = model.recommend(rows, X, 12)
    for r, row in enumerate(rows):
        np.testing.assert_allclose(scores[r], model.item_factors[ids[r]] @ model.user_factors[row], rtol=1e-4)
    with pytest.raises(IndexError):  # BPR's users are fixed at fit time
        model.recommend(np.array([600]), sp.vstack([X, X[:1]]).tocsr(), 5)


def test_bad_arguments():
    with pytest.raises(ValueError):
        BPR(sampling="hard")
    with pytest.raises(ValueError):
        BPR(temperature=0.0)
    with pytest.raises(ValueError):
        BPR(sampling="adaptive", warmup_sampling="adaptive")
