"""Which weeks a run fits on, which week is the truth, and which clips are the targets.

validate: fit on the train weeks; targets are the validation week's clips that never appear in a train
          week; truth is the validation week's positives.
submit:   fit on train + validation weeks; targets come from --targets (an `item_id` column, like the
          challenge's template) or, by default, the test week's clips unseen in the fit weeks; the test
          week's positives are the truth when that file holds interactions.
The truth week is never read by anything that fits or ranks; only its clip list defines default targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from audience.data.layout import WEEK_PATTERN, DatasetLayout
from audience.data.location import data_path, read_parquet
from audience.data.schema import check_schema, read_parquet_schema
from audience.data.weeks import week_item_ids
from audience.errors import DataError, TooLittleData


@dataclass(frozen=True)
class Split:
    mode: str
    fit_weeks: tuple[Path, ...]  # weeks everything is fitted on (never the truth week)
    truth_week: Path | None
    targets_from: str  # where the target list came from

    @property
    def truth_week_number(self) -> int | None:
        if self.truth_week is None:
            return None
        match = WEEK_PATTERN.match(self.truth_week.name)
        return int(match.group(1)) if match else None


def make_split(layout: DatasetLayout, mode: str, targets: Path | None = None, holdout: int = 0) -> Split:
    """The run's split; `holdout` > 0 shifts it back that many weeks (the ranker's training split: fit on
    the weeks before the last `holdout` fit weeks, truth = the first of them, targets = its new clips)."""
    split = _split(layout, mode, targets)
    if holdout <= 0:
        return split
    if holdout >= len(split.fit_weeks):
        raise DataError(f"{layout.split_dir('train')}: holdout={holdout} needs more than {holdout} fit weeks")
    fit = split.fit_weeks[:-holdout]
    truth = split.fit_weeks[-holdout]
    return Split(mode, fit, truth, f"clips of {truth.name} unseen in the weeks before it")


def _split(layout: DatasetLayout, mode: str, targets: Path | None) -> Split:
    train = layout.train_weeks()
    if mode == "validate":
        return Split(mode, tuple(train), layout.validation_week(), "validation week clips unseen in train")
    if mode == "submit":
        test = layout.test_week()
        if targets is None and test is None:
            raise DataError(
                f"{layout.split_dir('test')}: no test week and no --targets file; submit mode needs one"
            )
        origin = str(targets) if targets is not None else "test week clips unseen in train+validation"
        return Split(mode, (*train, layout.validation_week()), test, origin)
    raise ValueError(f"unknown mode {mode!r}")


def read_targets_file(path: Path) -> np.ndarray:
    """Target clip ids from a parquet file with an `item_id` column (UInt32 or another integer type)."""
    schema = read_parquet_schema(path)
    if "item_id" not in schema:
        raise DataError(f"{path}: missing column 'item_id' (expected UInt32 clip ids; found {list(schema)})")
    if not schema["item_id"].is_integer():
        raise DataError(f"{path}: column 'item_id' has dtype {schema['item_id']}, expected UInt32")
    ids = read_parquet(data_path(path), columns=["item_id"])["item_id"]
    if ids.null_count():
        raise DataError(f"{path}: column 'item_id' has {ids.null_count()} null value(s)")
    if ids.min() is not None and (ids.min() < 0 or ids.max() > np.iinfo(np.uint32).max):
        raise DataError(f"{path}: column 'item_id' has values outside UInt32")
    dup = ids.is_duplicated()
    if dup.any():
        examples = ids.filter(dup).unique().head(5).to_list()
        raise DataError(
            f"{path}: column 'item_id' has {int(dup.sum())} duplicate row(s), e.g. {examples}; "
            "expected each target clip once"
        )
    if ids.len() == 0:
        raise DataError(f"{path}: no target clips (column 'item_id' is empty)")
    return ids.cast(pl.UInt32).to_numpy()


def default_targets(split: Split, seen_item_ids: np.ndarray) -> np.ndarray:
    """Clips of the truth week that never appear in the fit weeks, in ascending id order."""
    assert split.truth_week is not None
    check_schema(split.truth_week, {"item_id": pl.UInt32()})
    week_items = week_item_ids(split.truth_week)
    new = np.setdiff1d(week_items, seen_item_ids)
    if new.size == 0:
        raise TooLittleData(f"{split.truth_week}: no clip in this week is new (all appear in the fit weeks)")
    return new.astype(np.uint32)
