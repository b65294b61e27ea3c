"""The reranker's training data through its public interface: holdout runs shared by content across modes,
label weeks' pools stacked without sharing a clip id. (Rebuilds on rewritten data or edited code, and reuse
on a rerun, are tested on whole runs in test_pipeline.py.)"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from conftest import tiny_config

from audience.data.layout import DatasetLayout
from audience.errors import DataError
from audience.rank.features import pool_counts
from audience.rank.protocol import training_plans
from audience.split import make_split
from audience.stages.holdout_runs import holdout_dir, holdout_key, holdout_run
from audience.stages.training_data import (
    HOLDOUT_CLIP_OFFSET,
    first_stage_weights,
    hidden_audience,
    labelled_blocks,
    pool_sources,
    shift_clips,
)


def test_submit_mode_shares_validate_modes_holdout_run(tiny_dir, tmp_path):
    """Submit mode fits on train + validation: its second holdout split is validate mode's first, so both
    modes key and name the same holdout run; the next holdout week gets another folder."""
    layout = DatasetLayout(tiny_dir)
    validate = tiny_config(tiny_dir, tmp_path / "validate", mode="validate")
    submit = tiny_config(tiny_dir, tmp_path / "submit", mode="submit")

    def folder(cfg, holdout):
        return holdout_dir(cfg, holdout_key(cfg, make_split(layout, cfg.mode, None, holdout)))

    assert holdout_key(validate, make_split(layout, "validate", None, 1)) == holdout_key(
        submit, make_split(layout, "submit", None, 2)
    )
    assert folder(validate, 1) == folder(submit, 2) != folder(validate, 2)
    assert folder(validate, 1).parent == tmp_path / f"{validate.dataset_name}-holdout"


def test_the_holdout_key_holds_the_settings_marked_as_shaping_the_candidates(tiny_dir, tmp_path):
    """A source's settings, the index settings and the sources shape a holdout run; the reranker's and the
    assignment's settings do not (its pools are keyed apart, its lists never cached there)."""
    split = make_split(DatasetLayout(tiny_dir), "validate", None, 1)
    cfg = tiny_config(tiny_dir, tmp_path / "run")
    key = holdout_key(cfg, split)
    source = replace(cfg.source, coengagement=replace(cfg.source.coengagement, n_neighbours=7))
    assert holdout_key(replace(cfg, source=source), split) != key
    assert holdout_key(replace(cfg, hnsw=replace(cfg.hnsw, ef=99)), split) != key
    assert holdout_key(replace(cfg, reranker=replace(cfg.reranker, max_depth=2)), split) == key
    assert holdout_key(replace(cfg, assignment="slots"), split) == key


def test_label_weeks_pools_stack_apart_and_an_oversized_pool_is_refused():
    pool = pl.DataFrame({"clip": pl.Series([0, 0, 3], dtype=pl.Int32), "user": [5, 6, 5]})
    stacked = pl.concat([shift_clips(pool, h) for h in (1, 2)])
    assert stacked["clip"].to_list() == [c + h * HOLDOUT_CLIP_OFFSET for h in (1, 2) for c in (0, 0, 3)]
    assert stacked.select("clip", "user").n_unique() == 2 * pool.height
    assert shift_clips(pool.clear(), 1).height == 0
    too_many = pool.with_columns(pl.lit(HOLDOUT_CLIP_OFFSET, dtype=pl.Int32).alias("clip"))
    with pytest.raises(DataError, match=r"pool\.parquet: 10000001 target clips exceed HOLDOUT_CLIP_OFFSET"):
        shift_clips(too_many, 1, "pool.parquet")


def test_the_pool_read_by_blocks_of_clips_is_the_whole_pool(tiny_run):
    """The rank stage reads its pool one block of clips at a time from the sources' files: the blocks, end to
    end, are the whole pool row for row, and their cap-pressure counts add up to the whole pool's."""
    run = tiny_run
    sources = pool_sources(run)
    whole = sources.pool()
    n_clips, n_users = len(run.queries()), run.catalog.n_users
    blocks = [sources.pool((lo, min(lo + 37, n_clips))) for lo in range(0, n_clips, 37)]
    assert whole.height > 1_000 and sum(b.height > 0 for b in blocks) > 2
    assert pl.concat(blocks).equals(whole)
    np.testing.assert_array_equal(sum(pool_counts(b, n_users) for b in blocks), pool_counts(whole, n_users))


@pytest.mark.parametrize("fixture", ["tiny_run", "tiny_stocked_run"])
def test_a_labelled_pool_built_by_blocks_of_clips_is_the_whole_pools(fixture, request, monkeypatch):
    """A holdout run's labelled pool is built one block of clips at a time (the hidden audience of its
    pseudo-new clips dropped and the labels joined per block): the same frame, row for row, as one block."""
    run = request.getfixturevalue(fixture)
    n_warm = int(run.targets()["warm"].sum()) if "warm" in run.targets().columns else 0
    plan = next(p for p in training_plans(run.split().fit_weeks, run.cfg.reranker, n_warm) if p.weeks)
    first_stage = first_stage_weights(run, plan)
    train_run = holdout_run(run, plan.weeks[-1])
    monkeypatch.setattr(train_run.engine, "feature_block_clips", None)
    whole = pl.concat(labelled_blocks(train_run, first_stage))
    monkeypatch.setattr(train_run.engine, "feature_block_clips", 7)
    blocked = pl.concat(labelled_blocks(train_run, first_stage))
    assert whole.height > 1_000 and whole["label"].sum() > 0
    assert blocked.equals(whole)
    hidden = hidden_audience(
        train_run.targets()["item_id"].to_numpy(), train_run.split(), train_run.cfg, train_run.catalog
    )
    if fixture == "tiny_stocked_run":  # pseudo-new clips: their hidden audience is left out
        assert hidden is not None and hidden.height > 0
        kept = whole.join(hidden.cast({"clip": pl.Int32, "user": pl.Int32}), on=["clip", "user"])
        assert kept.height == 0
