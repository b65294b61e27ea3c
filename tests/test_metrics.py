from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from audience.errors import DataError
from audience.metrics import discount_table, mean_ndcg, ndcg_per_clip, positives, recall_at_depth


def _pred(rows: dict[int, list[int | None] | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": pl.Series(list(rows), dtype=pl.UInt32),
            "user_id": pl.Series(list(rows.values()), dtype=pl.List(pl.UInt32)),
        }
    )


def _truth(pairs: list[tuple[int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": pl.Series([p[0] for p in pairs], dtype=pl.UInt32),
            "user_id": pl.Series([p[1] for p in pairs], dtype=pl.UInt32),
        }
    )


def _reference(rows: dict[int, list[int | None] | None], pairs: list[tuple[int, int]], k: int) -> dict:
    """Plain-Python NDCG@k: {item: (ndcg, hits, n_relevant)} over every clip with a relevant user."""
    relevant: dict[int, set[int]] = {}
    for item, user in pairs:
        relevant.setdefault(item, set()).add(user)
    out = {}
    for item, users in relevant.items():
        ranked = rows.get(item) or []
        dcg, hits, credited = 0.0, 0, set()
        for rank, user in enumerate(ranked[:k], start=1):
            if user is not None and user in users and user not in credited:
                credited.add(user)
                dcg += 1.0 / math.log2(rank + 1)
                hits += 1
        idcg = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(users), k) + 1))
        out[item] = (dcg / idcg, hits, len(users))
    return out


def _random_case(rng: np.random.Generator):
    k = int(rng.choice([1, 3, 10, 100]))
    n_users = int(rng.choice([5, 40, 400]))
    n_items = int(rng.integers(1, 30))
    items = rng.choice(10_000, n_items, replace=False).tolist()
    rows: dict[int, list[int | None] | None] = {}
    for item in items:
        if rng.random() < 0.15:
            continue  # a clip of truth missing from the predictions
        if rng.random() < 0.05:
            rows[item] = None
            continue
        length = int(rng.integers(0, k + 6))
        ranked: list[int | None] = rng.integers(0, n_users, length).tolist()
        if length and rng.random() < 0.2:
            ranked[int(rng.integers(0, length))] = None
        rows[item] = ranked
    pairs = []
    for item in items:
        n_pos = int(rng.choice([0, 1, 5, 50, 150]))
        pairs += [(item, int(u)) for u in rng.integers(0, n_users, n_pos)]
    pairs += pairs[: int(rng.integers(0, 10))]  # duplicate pairs
    rng.shuffle(pairs)
    return rows, pairs, k


def test_ndcg_matches_reference_on_random_cases():
    rng = np.random.default_rng(7)
    for _ in range(300):
        rows, pairs, k = _random_case(rng)
        got = ndcg_per_clip(_pred(rows), _truth(pairs), k=k)
        ref = _reference(rows, pairs, k)
        assert got.get_column("item_id").to_list() == sorted(ref)
        for item, ndcg, hits, n_rel in got.iter_rows():
            assert abs(ndcg - ref[item][0]) <= 1e-12
            assert (hits, n_rel) == ref[item][1:]
        expected_mean = np.mean([v[0] for v in ref.values()]) if ref else math.nan
        got_mean = mean_ndcg(_pred(rows), _truth(pairs), k=k)
        assert (math.isnan(got_mean) and math.isnan(expected_mean)) or abs(got_mean - expected_mean) <= 1e-12


def test_hand_computed_cases():
    # hits at ranks 1 and 3, 2 relevant users
    out = ndcg_per_clip(_pred({1: [10, 11, 12, 13]}), _truth([(1, 10), (1, 12)]))
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert out.row(0) == (1, pytest.approx(expected, abs=1e-15), 2, 2)
    # perfect list; relevant users beyond k do not count; missing clip scores 0
    truth = _truth([(1, 10), (2, 20), (2, 21), (3, 30)])
    preds = _pred({1: [10, 99], 2: [98, 97, 20]})
    out = ndcg_per_clip(preds, truth, k=2)
    assert out.get_column("item_id").to_list() == [1, 2, 3]
    assert out.get_column("ndcg").to_list() == [1.0, 0.0, 0.0]
    assert out.get_column("hits").to_list() == [1, 0, 0]
    assert out.get_column("n_relevant").to_list() == [1, 2, 1]
    assert mean_ndcg(preds, truth, k=2) == pytest.approx(1 / 3)


def test_duplicates_in_list_count_once_at_first_rank():
    out = ndcg_per_clip(_pred({1: [5, 10, 10, 11]}), _truth([(1, 10), (1, 11)]))
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert out.get_column("ndcg")[0] == pytest.approx(expected, abs=1e-15)
    assert out.get_column("hits")[0] == 2


def test_more_than_k_relevant_caps_ideal_dcg():
    users = list(range(200))
    out = ndcg_per_clip(_pred({4: users[:100]}), _truth([(4, u) for u in users]))
    assert out.row(0) == (4, pytest.approx(1.0, abs=1e-12), 100, 200)


def test_predicted_clip_without_positives_is_left_out_and_empty_truth_is_nan():
    preds = _pred({1: [1, 2], 2: [3]})
    out = ndcg_per_clip(preds, _truth([(2, 3)]))
    assert out.get_column("item_id").to_list() == [2]
    assert math.isnan(mean_ndcg(preds, _truth([])))


def test_array_lists_and_duplicate_clip_rows():
    preds = pl.DataFrame(
        {
            "item_id": pl.Series([1], dtype=pl.UInt32),
            "user_id": pl.Series([[3, 4]], dtype=pl.Array(pl.UInt32, 2)),
        }
    )
    assert ndcg_per_clip(preds, _truth([(1, 4)])).get_column("ndcg")[0] == pytest.approx(1 / math.log2(3))
    with pytest.raises(ValueError, match="duplicate clips"):
        ndcg_per_clip(_pred({1: [1]}).vstack(_pred({1: [2]})), _truth([(1, 1)]))


def test_empty_inputs_and_extreme_ids():
    empty = _pred({})
    assert ndcg_per_clip(empty, _truth([])).height == 0
    assert math.isnan(mean_ndcg(empty, _truth([])))
    assert ndcg_per_clip(empty, _truth([(1, 2)])).rows() == [(1, 0.0, 0, 1)]
    top = 2**32 - 1
    out = ndcg_per_clip(_pred({top: [top, 0]}), _truth([(top, 0), (top, top)]))
    assert out.rows() == [(top, 1.0, 2, 2)]


def test_discount_table():
    disc, ideal = discount_table(3)
    assert disc[0] == 0.0 and disc[1] == 1.0
    assert ideal[3] == pytest.approx(1 + 1 / math.log2(3) + 0.5)


def _reference_recall(cands, pairs, depths, scope):
    best = {}
    for item, user, rank in cands:
        best[(item, user)] = min(rank, best.get((item, user), rank))
    truth = {(i, u) for i, u in pairs if i in scope}
    if not truth:
        return {d: math.nan for d in depths}
    return {d: sum(1 for p in truth if best.get(p, 10**9) <= d) / len(truth) for d in depths}


def test_recall_at_depth_matches_reference():
    rng = np.random.default_rng(3)
    for _ in range(100):
        n = int(rng.integers(0, 200))
        cands = list(
            zip(
                rng.integers(0, 6, n).tolist(),
                rng.integers(0, 30, n).tolist(),
                rng.integers(1, 50, n).tolist(),
                strict=True,
            )
        )
        pairs = list(zip(rng.integers(0, 8, 80).tolist(), rng.integers(0, 30, 80).tolist(), strict=True))
        frame = pl.DataFrame(
            cands, schema={"item_id": pl.UInt32, "user_id": pl.UInt32, "rank": pl.Int64}, orient="row"
        )
        depths = [1, 5, 20, 100]
        got = recall_at_depth(frame, _truth(pairs), depths)
        ref = _reference_recall(cands, pairs, depths, {c[0] for c in cands})
        targets = np.arange(8)
        got_t = recall_at_depth(frame, _truth(pairs), depths, targets=targets)
        ref_t = _reference_recall(cands, pairs, depths, set(targets.tolist()))
        for g, r in ((got, ref), (got_t, ref_t)):
            for d in depths:
                assert (math.isnan(g[d]) and math.isnan(r[d])) or g[d] == pytest.approx(r[d], abs=1e-12)


def test_recall_of_parts_equals_recall_of_their_concatenation():
    rng = np.random.default_rng(5)
    schema = {"item_id": pl.UInt32, "user_id": pl.UInt32, "rank": pl.Int64}
    truth = _truth(list(zip(rng.integers(0, 8, 90).tolist(), rng.integers(0, 25, 90).tolist(), strict=True)))
    for _ in range(30):
        parts = [
            pl.DataFrame(
                {
                    "item_id": rng.integers(0, 7, n),
                    "user_id": rng.integers(0, 25, n),
                    "rank": rng.integers(1, 40, n),
                },
                schema=schema,
            )
            for n in rng.integers(0, 120, int(rng.integers(1, 5)))
        ]
        whole = pl.concat(parts)
        for targets in (None, np.arange(8)):
            got = recall_at_depth(iter(parts), truth, [1, 10, 40], targets=targets)
            want = recall_at_depth(whole, truth, [1, 10, 40], targets=targets)
            assert got.keys() == want.keys()
            for d in got:
                assert (math.isnan(got[d]) and math.isnan(want[d])) or got[d] == want[d]


def test_recall_hand_case():
    frame = pl.DataFrame(
        {"item_id": [1, 1, 1, 2], "user_id": [10, 11, 10, 20], "rank": [3, 1, 1, 2]},
        schema={"item_id": pl.UInt32, "user_id": pl.UInt32, "rank": pl.UInt32},
    )
    truth = _truth([(1, 10), (1, 12), (2, 20), (2, 20), (3, 30)])
    assert recall_at_depth(frame, truth, [1, 2]) == {1: 1 / 3, 2: 2 / 3}
    assert recall_at_depth(frame, truth, [2], targets=pl.Series([1, 2, 3])) == {2: 0.5}
    with pytest.raises(ValueError, match="1-based"):
        recall_at_depth(frame.with_columns(pl.lit(0, dtype=pl.UInt32).alias("rank")), truth, [1])


def test_positives():
    week = pl.DataFrame(
        {
            "user_id": [1, 1, 2, 3, 4, 1],
            "item_id": [9, 9, 8, 8, 7, 5],
            "like": [True, True, False, None, False, False],
            "share": [False, False, True, False, None, False],
            "dislike": [False, False, False, True, True, True],
        },
        schema_overrides={"user_id": pl.UInt32, "item_id": pl.UInt32},
    )
    out = positives(week.lazy(), ["like", "share"])
    assert out.schema == pl.Schema({"item_id": pl.UInt32, "user_id": pl.UInt32})
    assert out.rows() == [(8, 2), (9, 1)]
    assert positives(week, ["dislike"]).rows() == [(5, 1), (7, 4), (8, 3)]
    with pytest.raises(DataError, match="bookmark"):
        positives(week, ["bookmark"])
    with pytest.raises(DataError, match="Boolean"):
        positives(week, ["user_id"])
    with pytest.raises(ValueError):
        positives(week, [])


def test_novelty_and_diversity_match_a_loop():
    from audience.metrics import diversity_at_k, novelty_at_k

    rng = np.random.default_rng(4)
    popularity = rng.integers(1, 50, 40)
    group = rng.integers(0, 6, 40)
    rec = rng.integers(-1, 40, (30, 12))
    k = 10
    share = popularity / popularity.sum()
    info = [-np.log2(share[i]) for row in rec for i in row[:k] if i >= 0]
    assert novelty_at_k(rec, popularity, k) == pytest.approx(np.mean(info))
    ratios = []
    for row in rec:
        items = [i for i in row[:k] if i >= 0]
        if items:
            ratios.append(len({group[i] for i in items}) / len(items))
    assert diversity_at_k(rec, group, k) == pytest.approx(np.mean(ratios))
    assert diversity_at_k(np.array([[1, 1, 1]]), np.array([0, 7]), 3) == pytest.approx(1 / 3)
