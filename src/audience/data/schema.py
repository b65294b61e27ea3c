"""The VK-LSVD schemas, and checks that stop a run with a message naming file, column, expected and found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

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

EMBEDDING_KEYS = ("item_id", "embedding")


def read_parquet_schema(path: Path) -> dict[str, pl.DataType]:
    """Schema of a parquet file, or a DataError naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return dict(pl.read_parquet_schema(path))
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


def load_embeddings(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Load `item_embeddings.npz` as (item_id uint32 (n,), embedding float16 (n, d)), checking keys, dtypes,
    shapes, duplicate ids and non-finite values."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with np.load(path) as npz:
            missing = [key for key in EMBEDDING_KEYS if key not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: missing key(s) {missing} (expected {list(EMBEDDING_KEYS)}, found {npz.files})"
                )
            item_id = npz["item_id"]
            embedding = npz["embedding"]
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable npz file ({type(exc).__name__}: {exc})") from exc
    if item_id.ndim != 1 or not np.issubdtype(item_id.dtype, np.integer):
        raise DataError(
            f"{path}: key 'item_id' must be a 1-d integer array (found {item_id.dtype}, {item_id.shape})"
        )
    if item_id.size and (int(item_id.min()) < 0 or int(item_id.max()) > np.iinfo(np.uint32).max):
        raise DataError(f"{path}: key 'item_id' has values outside UInt32 (expected clip ids 0..2^32-1)")
    if embedding.ndim != 2 or embedding.shape[0] != item_id.shape[0]:
        raise DataError(
            f"{path}: key 'embedding' must be (n_items, dim) with n_items={item_id.shape[0]} "
            f"(found {embedding.shape})"
        )
    if not np.issubdtype(embedding.dtype, np.floating):
        raise DataError(
            f"{path}: key 'embedding' must be floating point, expected float16 (found {embedding.dtype})"
        )
    bad_rows = ~np.isfinite(embedding).all(axis=1)
    if bad_rows.any():
        examples = item_id[bad_rows][:5].tolist()
        raise DataError(
            f"{path}: key 'embedding' has NaN/inf in {int(bad_rows.sum())} row(s), e.g. item_id {examples}; "
            "expected finite values"
        )
    if np.unique(item_id).shape[0] != item_id.shape[0]:
        raise DataError(f"{path}: key 'item_id' has duplicate ids (expected one embedding per clip)")
    return item_id.astype(np.uint32, copy=False), embedding
