import numba
import numpy as np
import pytest
from scipy import sparse

from audience.rank.similar_authors import author_neighbours, neighbour_affinity, top_per_row


def _random_history(seed: int, n_users: int = 60, n_authors: int = 25, density: float = 0.3):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_authors)) * (rng.random((n_users, n_authors)) < density) * 5
    return sparse.csr_matrix(dense.astype(np.float32)), dense


def test_top_per_row_keeps_each_rows_largest_entries():
    matrix, dense = _random_history(0)
    top = top_per_row(matrix, 3).toarray()
    for u in range(dense.shape[0]):
        row = dense[u]
        kept = np.flatnonzero(top[u])
        expected = np.argsort(-row, kind="stable")[: min(3, np.count_nonzero(row))]
        assert set(kept) == set(expected)
        np.testing.assert_allclose(top[u, kept], row[kept])


@pytest.mark.parametrize("block", [1, 4, 512])
def test_author_neighbours_match_brute_force_cosine(block):
    matrix, dense = _random_history(1)
    per_user, k = 6, 4
    kept = top_per_row(matrix, per_user).toarray()
    audience = np.log1p(kept)
    norm = np.linalg.norm(audience, axis=0)
    cos = (audience.T @ audience) / np.maximum(np.outer(norm, norm), 1e-12)
    np.fill_diagonal(cos, 0.0)
    authors = np.array([3, 0, 17, 24, 9])
    found = author_neighbours(matrix, authors, k=k, per_user=per_user, block=block).toarray()
    assert found.shape == (authors.size, dense.shape[1])
    for i, a in enumerate(authors):
        assert found[i, a] == 0.0
        expected = np.argsort(-cos[a], kind="stable")[:k]
        expected = expected[cos[a, expected] > 0]
        assert set(np.flatnonzero(found[i])) == set(expected)
        np.testing.assert_allclose(found[i, expected], cos[a, expected], rtol=1e-4)


@pytest.mark.parametrize("threads", [1, 2])
def test_neighbour_affinity_matches_a_slow_loop(threads):
    history, dense = _random_history(2)
    neighbours = author_neighbours(history, np.arange(dense.shape[1]), k=5, per_user=8)
    rng = np.random.default_rng(3)
    # users with many pairs and users with none, so that the blocks of users are uneven
    pair_user = np.concatenate([rng.integers(0, dense.shape[0] // 2, 300), np.full(40, 3)])
    pair_row = rng.integers(-1, dense.shape[1], pair_user.size)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        got = neighbour_affinity(history, neighbours, pair_user, pair_row)
    finally:
        numba.set_num_threads(previous)
    nb = neighbours.toarray()
    for i in range(pair_user.size):
        if pair_row[i] < 0:
            assert np.isnan(got[i])
        else:
            assert got[i] == pytest.approx(float(dense[pair_user[i]] @ nb[pair_row[i]]), rel=1e-4, abs=1e-5)
    assert neighbour_affinity(history, neighbours, pair_user[:0], pair_row[:0]).shape == (0,)


def test_the_budget_cut_does_not_depend_on_the_target_authors():
    # a budget that binds: one author's neighbours are the same whether the run has 1 or 25 target authors,
    # so a label week with few new clips and a test week with many read the feature on one scale
    matrix, _ = _random_history(4, n_users=200, n_authors=25, density=0.6)
    seen = np.diff(matrix.indptr).astype(np.float64)
    budget = float((np.minimum(seen, 6) ** 2).sum())  # every author's neighbours with 6 authors a user
    every = author_neighbours(matrix, np.arange(25), k=4, pair_budget=budget).toarray()
    one = author_neighbours(matrix, np.array([7]), k=4, pair_budget=budget).toarray()
    np.testing.assert_array_equal(one[0], every[7])
    cut = author_neighbours(matrix, np.array([7]), k=4, per_user=6).toarray()
    np.testing.assert_array_equal(one[0], cut[0])
    uncut = author_neighbours(matrix, np.array([7]), k=4, per_user=25).toarray()
    assert not np.array_equal(uncut[0], cut[0])  # the budget binds here
