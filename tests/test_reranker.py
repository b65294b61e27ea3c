import numpy as np
import polars as pl
import pytest
import xgboost as xgb

from audience.config import RerankerConfig
from audience.rank.reranker import Reranker
from audience.rank.stacked import StackedFrames


def _frame(seed: int = 0, n_clips: int = 60, per_clip: int = 40) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_clips * per_clip
    signal = rng.normal(size=n)
    label = (signal + rng.normal(size=n) * 0.8 > 1.5).astype(np.int8)
    return pl.DataFrame(
        {
            "clip": np.repeat(np.arange(n_clips), per_clip).astype(np.int32),
            "user": np.tile(np.arange(per_clip), n_clips).astype(np.int32),
            "label": label,
            "signal": signal.astype(np.float32),
            "noise": rng.normal(size=n).astype(np.float32),
        }
    )


@pytest.mark.parametrize("scale", [0.0, 1.5])
def test_refit_boosts_again_on_every_clip_for_scaled_rounds(scale, tmp_path):
    frame = _frame()
    cfg = RerankerConfig(
        n_estimators=60, early_stopping_rounds=10, negative_keep=1.0, refit_scale=scale, bag_seeds=1
    )
    model = Reranker(cfg, n_threads=1, seed=3).fit(frame, ["signal", "noise"])
    best_trees = model.report["best_iteration"] + 1
    expected = [best_trees] if scale == 0 else [best_trees, round(best_trees * scale)]
    assert model.n_trees == model.report["n_trees"] == expected
    assert model.report["refit_on_all_clips"] is (scale > 0)
    # the early-stopped booster keeps its extra rounds (used up to the best); the refit holds exactly its own
    assert model.boosters[0].num_boosted_rounds() >= best_trees
    if scale > 0:
        assert model.boosters[1].num_boosted_rounds() == expected[1]
    scores = model.predict(frame)
    assert np.corrcoef(scores, frame["signal"].to_numpy())[0, 1] > 0.5
    model.save(tmp_path / "ranker")
    loaded = Reranker.load(tmp_path / "ranker")
    assert loaded.n_trees == expected
    np.testing.assert_allclose(loaded.predict(frame), scores, rtol=1e-6)


def test_bag_averages_one_model_per_seed(tmp_path):
    frame = _frame(n_clips=80)
    cfg = RerankerConfig(n_estimators=40, early_stopping_rounds=8, refit_scale=1.25, bag_seeds=3)
    model = Reranker(cfg, n_threads=1, seed=5).fit(frame, ["signal", "noise"])
    seeds = model.report["seeds"]
    assert [s["seed"] for s in seeds] == [5, 6, 7]
    assert len(model.boosters) == len(model.n_trees) == 6  # early-stopped + refit per seed
    assert model.n_trees[1::2] == [round((s["best_iteration"] + 1) * 1.25) for s in seeds]
    # each seed holds out its own stopping clips
    assert len({s["valid_rows"] for s in seeds} | {s["train_rows"] for s in seeds}) > 2
    matrix = xgb.DMatrix(frame.select("signal", "noise").to_numpy(), feature_names=["signal", "noise"])
    pairs = zip(model.boosters, model.n_trees, strict=True)
    each = [b.predict(matrix, iteration_range=(0, n)) for b, n in pairs]
    assert not np.allclose(each[0], each[2])  # the seeds differ
    scores = model.predict(frame)
    np.testing.assert_allclose(scores, np.mean(each, axis=0), rtol=1e-5)
    single_cfg = RerankerConfig(n_estimators=40, early_stopping_rounds=8, refit_scale=1.25, bag_seeds=1)
    single = Reranker(single_cfg, 1, 5)
    single.fit(frame, ["signal", "noise"])
    assert single.report["seeds"][0] == seeds[0]  # the first seed draws what a single model draws
    model.save(tmp_path / "ranker")
    loaded = Reranker.load(tmp_path / "ranker")
    assert loaded.n_trees == model.n_trees
    np.testing.assert_allclose(loaded.predict(frame), scores, rtol=1e-6)
    assert abs(sum(loaded.importance().values()) - 1) < 1e-9


def test_bag_seeds_must_be_positive():
    with pytest.raises(ValueError, match="bag_seeds"):
        RerankerConfig(bag_seeds=0)


def test_prediction_in_blocks_equals_each_boosters_dmatrix_prediction():
    # missing values and blocks that cut clips: the in-place prediction is the DMatrix one, bit for bit
    frame = _frame(seed=2, n_clips=50)
    noise = frame["noise"].to_numpy().copy()
    noise[::7] = np.nan
    frame = frame.with_columns(pl.Series("noise", noise))
    cfg = RerankerConfig(n_estimators=30, early_stopping_rounds=6, bag_seeds=2, predict_block_rows=333)
    model = Reranker(cfg, n_threads=1, seed=1).fit(frame, ["signal", "noise"])
    matrix = xgb.DMatrix(frame.select("signal", "noise").to_numpy(), feature_names=["signal", "noise"])
    total = np.zeros(frame.height)
    for booster, n_trees in zip(model.boosters, model.n_trees, strict=True):
        total += booster.predict(matrix, iteration_range=(0, n_trees))
    np.testing.assert_array_equal(model.predict(frame), (total / len(model.boosters)).astype(np.float32))


def test_a_stack_read_part_by_part_trains_the_model_its_concatenation_trains(tmp_path):
    # three label weeks as parquet scans, one with an extra column (null in the others): the stack's sampled
    # rows and the boosters equal those of the concatenated frame
    parts = []
    for week in range(3):
        part = _frame(seed=week, n_clips=30).with_columns(pl.col("clip") + week * 1000)
        if week == 1:
            part = part.with_columns(extra=pl.lit(1.0, pl.Float32))
        part.write_parquet(tmp_path / f"week{week}.parquet")
        parts.append(pl.scan_parquet(tmp_path / f"week{week}.parquet"))
    stack = StackedFrames(tuple(parts))
    whole = pl.concat([p.collect() for p in parts], how="diagonal_relaxed")
    assert stack.columns() == whole.columns
    assert stack.collect().equals(whole)
    keep = np.random.default_rng(1).random(whole.height) < 0.4
    assert stack.filter(keep).equals(whole.filter(pl.Series(keep)))
    with pytest.raises(ValueError, match="rows"):
        stack.filter(keep[:-1])
    cfg = RerankerConfig(n_estimators=30, early_stopping_rounds=5, negative_keep=0.5, bag_seeds=2)
    from_stack = Reranker(cfg, n_threads=1, seed=2).fit(stack)
    from_frame = Reranker(cfg, n_threads=1, seed=2).fit(whole)
    assert from_stack.features == from_frame.features == ["signal", "noise", "extra"]
    untimed = [{k: v for k, v in m.report.items() if k != "fit_s"} for m in (from_stack, from_frame)]
    assert untimed[0] == untimed[1]
    np.testing.assert_array_equal(from_stack.predict(whole), from_frame.predict(whole))
