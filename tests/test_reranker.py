import numpy as np
import polars as pl
import pytest

from audience.config import RerankerConfig
from audience.rank.reranker import Reranker


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
    cfg = RerankerConfig(n_estimators=60, early_stopping_rounds=10, negative_keep=1.0, refit_scale=scale)
    model = Reranker(cfg, n_threads=1, seed=3).fit(frame, ["signal", "noise"])
    best = model.report["best_iteration"]
    expected = best + 1 if scale == 0 else round((best + 1) * scale)
    assert model.n_trees == model.report["n_trees"] == expected
    assert model.report["refit_on_all_clips"] is (scale > 0)
    if scale > 0:  # the refit booster holds exactly the scaled tree count, all of them used
        assert model.booster.num_boosted_rounds() == expected
    scores = model.predict(frame)
    assert np.corrcoef(scores, frame["signal"].to_numpy())[0, 1] > 0.5
    model.save(tmp_path / "ranker")
    loaded = Reranker.load(tmp_path / "ranker")
    assert loaded.n_trees == expected
    np.testing.assert_allclose(loaded.predict(frame), scores, rtol=1e-6)
