"""The VK-LSVD schemas, and checks that stop a run with a message naming file, column, expected and found."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from audience.data.location import data_path, parquet_schema
from audience.errors import DataError

FLAG_COLUMNS: tuple[str, ...] = ("like", "dislike", "share", "bookmark", "click_on_author", "open_comments")
DEFAULT_POSITIVE_FLAGS: tuple[str, ...] = ("like", "share", "bookmark", "click_on_author", "open_comments")

INTERACTIONS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.UInt32(),
    "item_id": pl.UInt32(),
    "place": pl.UInt8(),
    "platform": pl.UInt8(),
    "agent": pl.UInt8(),
    "timespent": pl.UInt8(),
    **{flag: pl.Boolean() for flag in FLAG_COLUMNS},
}

USERS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.UInt32(),
    "age": pl.UInt8(),
    "gender": pl.UInt8(),
    "geo": pl.UInt8(),
    "train_interactions_rank": pl.UInt32(),
}

ITEMS_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.UInt32(),
    "author_id": pl.UInt32(),
    "duration": pl.UInt8(),
    "train_interactions_rank": pl.UInt32(),
}


def read_parquet_schema(path: Path) -> dict[str, pl.DataType]:
    """Schema of a parquet file, or a DataError naming the file when it is missing or unreadable."""
    path = data_path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return parquet_schema(path)
    except Exception as exc:  # polars raises several types for truncated/corrupt files
        raise DataError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from exc


def check_schema(
    path: Path, expected: dict[str, pl.DataType], columns: tuple[str, ...] | None = None
) -> dict[str, pl.DataType]:
    """Check that `path` has every expected column (or the subset `columns`) with the expected dtype."""
    found = read_parquet_schema(path)
    wanted = columns if columns is not None else tuple(expected)
    for column in wanted:
        if column not in found:
            raise DataError(
                f"{path}: missing column {column!r} "
                f"(expected {expected[column]}; found columns {list(found)})"
            )
        if found[column] != expected[column]:
            raise DataError(
                f"{path}: column {column!r} has dtype {found[column]}, expected {expected[column]}"
            )
    return found
