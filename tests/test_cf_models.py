"""Every user -> clips CF model (EASE, SLIM, BPR) passes one shared `recommend` contract, as the clip ->
users generators do in test_candidates.py. Model-specific checks live in test_<model>.py."""

from __future__ import annotations

import numpy as np
import pytest
from cf_data import block_matrix

from audience.arrays import TopK
from audience.models import BPR, EASE, SLIM

MODELS = {
    "ease": lambda: EASE(regularization=10.0),
    "slim": lambda: SLIM(alpha=2e-3, l1_ratio=0.5),
    "bpr": lambda: BPR(factors=16, epochs=30, learning_rate=0.05, n_threads=1, seed=0),
}


@pytest.fixture(scope="module")
def data():
    return block_matrix()


@pytest.fixture(scope="module", params=sorted(MODELS))
def fitted(request, data):
    X, _ = data
    return request.param, MODELS[request.param]().fit(X)


def test_shape_order_and_tie_rule(fitted, data):
    _, model = fitted
    X, _ = data
    top = model.recommend(np.arange(40), X, 30)
    assert isinstance(top, TopK)
    assert top.ids.shape == (40, 30) and top.ids.dtype == np.int32 and top.scores.dtype == np.float32
    valid = top.ids >= 0
    assert valid.all() and np.all(top.ids < X.shape[1])
    assert np.all(np.diff(top.scores, axis=1) <= 0), "scores sorted descending"
    tied = np.diff(top.scores, axis=1) == 0
    assert np.all(np.diff(top.ids, axis=1)[tied] > 0), "equal scores: clip id ascending"
    for row in top.ids:
        assert np.unique(row).size == row.size


def test_held_out_item_comes_back(fitted, data):
    _, model = fitted
    X, held = data
    ids, _ = model.recommend(np.array([0]), X, 10)
    assert held in ids[0]


def test_batch_equals_single_row(fitted, data):
    _, model = fitted
    X, _ = data
    rows = np.array([7, 0, 300, 7, 599])
    ids, scores = model.recommend(rows, X, 12)
    for r, row in enumerate(rows):
        one_ids, one_scores = model.recommend(np.array([row]), X, 12)
        np.testing.assert_array_equal(one_ids[0], ids[r])
        np.testing.assert_allclose(one_scores[0], scores[r], rtol=1e-5, atol=1e-6)


def test_filter_seen(fitted, data):
    _, model = fitted
    X, _ = data
    rows = np.arange(50)
    ids, _ = model.recommend(rows, X, 30)
    for r in rows:
        assert not np.isin(ids[r], X[r].indices).any()
    ids_all, _ = model.recommend(rows, X, 30, filter_seen=False)
    assert any(np.isin(ids_all[r], X[r].indices).any() for r in rows)


def test_whitelist_restricts_without_changing_scores(fitted, data):
    _, model = fitted
    X, _ = data
    rows = np.array([9, 0, 33])
    white = np.array([1, 2, 4, 8, 16, 32, 64, 5000])  # 5000 is not a clip: ignored
    ids_w, scores_w = model.recommend(rows, X, 10, whitelist=white, filter_seen=False)
    assert (ids_w[:, :7] >= 0).all() and np.isin(ids_w[:, :7], white).all()
    assert (ids_w[:, 7:] == -1).all() and np.isneginf(scores_w[:, 7:]).all()
    full_ids, full_scores = model.recommend(rows, X, X.shape[1], filter_seen=False)
    for r in range(rows.size):
        lookup = dict(zip(full_ids[r], full_scores[r], strict=True))
        np.testing.assert_allclose(scores_w[r, :7], [lookup[i] for i in ids_w[r, :7]], rtol=1e-6)


def test_k_beyond_the_catalogue_pads(fitted, data):
    _, model = fitted
    X, _ = data
    ids, scores = model.recommend(np.array([3]), X, X.shape[1] + 10, filter_seen=False)
    assert (ids[0, -10:] == -1).all() and np.isneginf(scores[0, -10:]).all()
    empty = model.recommend(np.array([], dtype=np.int64), X, 5)
    assert empty.ids.shape == (0, 5) and empty.scores.shape == (0, 5)


def test_deterministic_fit(fitted, data):
    name, model = fitted
    X, _ = data
    again = MODELS[name]().fit(X)
    rows = np.arange(20)
    np.testing.assert_array_equal(model.recommend(rows, X, 10).ids, again.recommend(rows, X, 10).ids)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_errors(name, data):
    X, _ = data
    with pytest.raises(RuntimeError):
        MODELS[name]().recommend(np.array([0]), X, 5)
    model = MODELS[name]().fit(X)
    with pytest.raises(ValueError):
        model.recommend(np.array([0]), X[:, :10], 5)
    with pytest.raises(IndexError):
        model.recommend(np.array([X.shape[0]]), X, 5)
    with pytest.raises(ValueError):
        model.recommend(np.array([0]), X, -1)
