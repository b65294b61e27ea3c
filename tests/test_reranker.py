import numpy as np
import polars as pl
import pytest
import xgboost as xgb

from audience.config import RerankerConfig
from audience.rank._booster import LocalBoosting
from audience.rank.reranker import Reranker, permute_rows
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


def _weeks_on_disk(tmp_path, n_weeks: int, n_clips: int, extra_in: int, row_group_size=None) -> StackedFrames:
    """Label weeks as parquet scans, clip ids apart per week, week `extra_in` with an `extra` column (null in
    the others)."""
    parts = []
    for week in range(n_weeks):
        part = _frame(seed=week, n_clips=n_clips).with_columns(pl.col("clip") + week * 1000)
        if week == extra_in:
            part = part.with_columns(extra=pl.lit(1.0, pl.Float32))
        part.write_parquet(tmp_path / f"week{week}.parquet", row_group_size=row_group_size)
        parts.append(pl.scan_parquet(tmp_path / f"week{week}.parquet"))
    return StackedFrames(tuple(parts))


def test_a_stack_read_part_by_part_trains_the_model_its_concatenation_trains(tmp_path):
    # three label weeks as parquet scans, one with an extra column (null in the others): the stack's sampled
    # rows and the boosters equal those of the concatenated frame
    stack = _weeks_on_disk(tmp_path, n_weeks=3, n_clips=30, extra_in=1)
    whole = pl.concat([p.collect() for p in stack.parts], how="diagonal_relaxed")
    assert stack.columns() == whole.columns
    assert stack.collect().equals(whole)
    cfg = RerankerConfig(n_estimators=30, early_stopping_rounds=5, negative_keep=0.5, bag_seeds=2)
    from_stack = Reranker(cfg, n_threads=1, seed=2).fit(stack)
    from_frame = Reranker(cfg, n_threads=1, seed=2).fit(whole)
    assert from_stack.features == from_frame.features == ["signal", "noise", "extra"]
    untimed = [{k: v for k, v in m.report.items() if k != "fit_s"} for m in (from_stack, from_frame)]
    assert untimed[0] == untimed[1]
    np.testing.assert_array_equal(from_stack.predict(whole), from_frame.predict(whole))


class _RecordingBoosting(LocalBoosting):
    """LocalBoosting that keeps a copy of every matrix it is handed (the split as XGBoost receives it)."""

    def __init__(self):
        super().__init__(1)
        self.matrices = []

    def matrix(self, data, label, qid, features):
        self.matrices.append((data.copy(), label.copy(), qid.copy()))
        return super().matrix(data, label, qid, features)


def test_each_seeds_split_hands_xgboost_the_sampled_rows_of_its_clips_in_clip_order(tmp_path):
    # an unsorted frame, every negative kept: the sample is the rows of clips with a positive, stably sorted
    # by clip; each seed's train and stopping matrices are its rows of the other clips / of its stopping clips
    frame = _frame(seed=4, n_clips=40).sample(fraction=1.0, shuffle=True, seed=9)
    boosting = _RecordingBoosting()
    cfg = RerankerConfig(n_estimators=10, early_stopping_rounds=3, negative_keep=1.0, bag_seeds=3)
    model = Reranker(cfg, n_threads=1, seed=2, boosting=boosting).fit(frame, ["signal", "noise"])
    positive = frame.group_by("clip").agg(pl.col("label").max()).filter(pl.col("label") > 0)["clip"]
    sample = frame.filter(pl.col("clip").is_in(positive.implode())).sort("clip", maintain_order=True)
    data = sample.select(pl.col("signal", "noise")).to_numpy().astype(np.float32)
    clip, label = sample["clip"].to_numpy(), sample["label"].to_numpy()
    assert len(boosting.matrices) == 2 * cfg.bag_seeds
    for seed, (train, valid) in enumerate(zip(boosting.matrices[::2], boosting.matrices[1::2], strict=True)):
        is_valid = np.isin(clip, np.unique(valid[2]))
        for (got_data, got_label, got_clip), rows in ((train, ~is_valid), (valid, is_valid)):
            np.testing.assert_array_equal(got_data, data[rows])
            np.testing.assert_array_equal(got_label, label[rows])
            np.testing.assert_array_equal(got_clip, clip[rows])
        assert model.report["seeds"][seed]["valid_rows"] == is_valid.sum()


def test_filtered_blocks_equal_the_filtered_stack_for_any_block_size(tmp_path):
    stack = _weeks_on_disk(tmp_path, n_weeks=2, n_clips=7, extra_in=0, row_group_size=50)
    keep = np.random.default_rng(3).random(stack.collect().height) < 0.3
    expected = stack.collect().filter(pl.Series(keep)).select("clip", "extra", "signal")
    for block_rows in (1, 33, 280, 10_000):
        blocks = list(stack.filtered_blocks(keep, ["clip", "extra", "signal"], block_rows))
        assert all(0 < b.height <= block_rows for b in blocks)
        assert pl.concat(blocks, how="diagonal_relaxed").equals(expected)
    with pytest.raises(ValueError, match="rows"):
        list(stack.filtered_blocks(keep[:-1], ["clip"], 100))
    with pytest.raises(ValueError, match="rows"):
        list(stack.filtered_blocks(np.r_[keep, True], ["clip"], 100))


def test_permute_rows_in_place_equals_fancy_indexing():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(101, 19)).astype(np.float32)
    order = rng.permutation(101)
    expected = matrix[order]
    permute_rows(matrix, order, columns_at_once=4)
    np.testing.assert_array_equal(matrix, expected)
    permute_rows(matrix, np.argsort(order))
    np.testing.assert_array_equal(matrix[order], expected)
