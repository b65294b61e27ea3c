"""Target lists of another shape than "the truth week's new clips": a mixed list of cold and warm clips.

A warm target is a clip of the truth week that already has interactions in the fit weeks (its audience is
known). `mixed_targets` takes every new clip of the truth week plus a seeded sample of its warm clips, so one
run scores both groups; `write_mixed_targets` writes one such file per truth week (validation: fit on the
train weeks; test: fit on train + validation), usable with `--targets` on any dataset in the layout.
Cost: one item_id column read per week."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from audience.data.ids import unique_sorted
from audience.data.layout import DatasetLayout
from audience.data.weeks import week_item_ids
from audience.io import write_parquet


def mixed_targets(fit_weeks: list[Path], truth_week: Path, n_warm: int, seed: int) -> pl.DataFrame:
    """(item_id UInt32, warm bool): every new clip of `truth_week` and up to `n_warm` of its clips that
    appear in `fit_weeks` (uniform sample, seeded), sorted by item_id."""
    seen = unique_sorted(np.concatenate([week_item_ids(p) for p in fit_weeks]))
    week = week_item_ids(truth_week)
    warm_pool = np.intersect1d(week, seen, assume_unique=True)  # week_item_ids: each clip once
    rng = np.random.default_rng([seed, 16])
    warm = rng.choice(warm_pool, size=min(n_warm, warm_pool.size), replace=False)
    new = np.setdiff1d(week, seen, assume_unique=True)
    return pl.DataFrame(
        {
            "item_id": pl.Series(np.concatenate([new, warm]), dtype=pl.UInt32),
            "warm": np.concatenate([np.zeros(new.size, bool), np.ones(warm.size, bool)]),
        }
    ).sort("item_id")


def mixed_targets_path(layout: DatasetLayout, split: str) -> Path:
    suffix = f"-{layout.subsample}" if layout.subsample else ""
    return layout.root / "targets" / f"mixed_{split}{suffix}.parquet"


def write_mixed_targets(layout: DatasetLayout, n_warm: int, seed: int) -> list[Path]:
    """targets/mixed_validation.parquet and (when a test week exists) mixed_test.parquet."""
    train, validation, test = layout.train_weeks(), layout.validation_week(), layout.test_week()
    plans = [("validation", list(train), validation)]
    if test is not None:
        plans.append(("test", [*train, validation], test))
    written = []
    for split, fit_weeks, truth in plans:
        path = mixed_targets_path(layout, split)
        write_parquet(mixed_targets(fit_weeks, truth, n_warm, seed), path)
        written.append(path)
    return written
