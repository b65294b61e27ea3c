"""The target clips' fit-week history: warm targets are target clips that already have interactions in the
fit weeks. `target_history.parquet` (written by the profiles stage) holds one row per fit-week interaction
with a warm target; `seen_pairs` turns it into (target row, user index) pairs.
Limits: the history pass reads the user_id/item_id/flag columns of every fit week filtered to the warm
targets (polars pushes the filter into the scan)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from audience.data.catalog import Catalog
from audience.data.location import scan_parquet
from audience.data.schema import INTERACTIONS_SCHEMA, check_schema
from audience.io import write_parquet

HISTORY_SCHEMA = {"item_id": pl.UInt32, "user_id": pl.UInt32, "positive": pl.Boolean, "weeks_ago": pl.Int32}


def target_history(
    fit_weeks: Sequence[Path], warm_ids: np.ndarray, positive_flags: Sequence[str]
) -> pl.DataFrame:
    """Every fit-week interaction with the `warm_ids` clips: item_id, user_id, positive, weeks_ago (0 for
    the last fit week)."""
    if len(warm_ids) == 0:
        return pl.DataFrame(schema=HISTORY_SCHEMA)
    wanted = pl.Series(np.asarray(warm_ids, dtype=np.uint32), dtype=pl.UInt32).implode()
    parts = []
    for k, path in enumerate(fit_weeks):
        check_schema(path, INTERACTIONS_SCHEMA, ("user_id", "item_id", *positive_flags))
        parts.append(
            scan_parquet(path)
            .filter(pl.col("item_id").is_in(wanted))
            .select(
                "item_id",
                "user_id",
                pl.any_horizontal(*positive_flags).alias("positive"),
                pl.lit(len(fit_weeks) - 1 - k, pl.Int32).alias("weeks_ago"),
            )
        )
    return pl.concat(parts).collect().cast(HISTORY_SCHEMA)


def write_target_history(
    path: Path,
    fit_weeks: Sequence[Path],
    target_ids: np.ndarray,
    seen_ids: np.ndarray,
    positive_flags: Sequence[str],
) -> None:
    """The history of the targets seen in the fit weeks (an empty file for an all-cold target list)."""
    warm_ids = np.intersect1d(target_ids, seen_ids, assume_unique=True)  # both hold each clip once
    write_parquet(target_history(fit_weeks, warm_ids, positive_flags), path)


def read_target_history(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path) if Path(path).is_file() else pl.DataFrame(schema=HISTORY_SCHEMA)


def seen_pairs(
    history: pl.DataFrame, item_ids: np.ndarray, catalog: Catalog
) -> tuple[np.ndarray, np.ndarray]:
    """(row in `item_ids`, user index) of every user who interacted with a target in the fit weeks."""
    rows = pl.DataFrame({"item_id": pl.Series(item_ids, dtype=pl.UInt32)}).with_row_index("row")
    pairs = history.select("item_id", "user_id").unique().join(rows, on="item_id")
    users = catalog.users.lookup(pairs["user_id"].to_numpy())
    known = users >= 0
    return pairs["row"].to_numpy()[known].astype(np.int64), users[known].astype(np.int64)
