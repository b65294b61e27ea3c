"""Build, check, write and read the challenge submission: one row per target clip, ``item_id`` (UInt32) and
``user_id`` (List(UInt32), exactly `list_size` distinct users in rank order), no user in more than
`user_cap` lists. The checks are vectorised (one explode of the lists, a sort of the user ids)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from audience.errors import SubmissionError

__all__ = ["read_submission", "to_frame", "validate_submission", "write_submission"]

SUBMISSION_COLUMNS = ("item_id", "user_id")
LIST_DTYPE = pl.List(pl.UInt32)


def to_frame(item_ids: np.ndarray, user_ids: np.ndarray) -> pl.DataFrame:
    """Submission frame from (n_clips,) clip ids and an (n_clips, k) matrix of user ids (rank order):
    ``item_id`` UInt32, ``user_id`` List(UInt32). Ids must fit UInt32 (no negative or -1 padding)."""
    item_ids = np.asarray(item_ids)
    user_ids = np.asarray(user_ids)
    if item_ids.ndim != 1 or user_ids.ndim != 2 or user_ids.shape[0] != item_ids.shape[0]:
        raise ValueError(
            f"to_frame: expected item_ids (n,) and user_ids (n, k); got {item_ids.shape} and {user_ids.shape}"
        )
    for name, arr in (("item_ids", item_ids), ("user_ids", user_ids)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"to_frame: {name} must be integer ids (got dtype {arr.dtype})")
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > np.iinfo(np.uint32).max):
            raise ValueError(f"to_frame: {name} must fit UInt32 (found {int(arr.min())}..{int(arr.max())})")
    n, k = user_ids.shape
    flat = pl.Series("user_id", np.ascontiguousarray(user_ids, dtype=np.uint32).reshape(-1))
    lists = flat.reshape((n, k)).cast(LIST_DTYPE) if k > 0 else pl.Series("user_id", [[]] * n, LIST_DTYPE)
    return pl.DataFrame({"item_id": pl.Series("item_id", item_ids.astype(np.uint32)), "user_id": lists})


def _fail(rule: str, count: int, what: str, example: str) -> SubmissionError:
    return SubmissionError(f"submission rule '{rule}' broken by {count} {what}: {example}")


def _target_series(targets: np.ndarray | pl.Series) -> pl.Series:
    series = targets if isinstance(targets, pl.Series) else pl.Series(np.asarray(targets))
    if series.has_nulls():
        raise ValueError("targets: null clip id")
    try:
        return series.cast(pl.UInt32, strict=True).unique().rename("item_id")
    except Exception as exc:
        raise ValueError(f"targets: clip ids must fit UInt32 ({exc})") from exc


def _lists(df: pl.DataFrame, list_size: int) -> pl.Series:
    """The user_id column as List(UInt32), after the schema checks."""
    missing = [c for c in SUBMISSION_COLUMNS if c not in df.columns]
    extra = [c for c in df.columns if c not in SUBMISSION_COLUMNS]
    if missing or extra:
        raise _fail(
            "schema",
            len(missing) + len(extra),
            "column(s)",
            f"missing {missing}, unexpected {extra}; expected exactly {list(SUBMISSION_COLUMNS)}",
        )
    if df.schema["item_id"] != pl.UInt32:
        raise _fail("schema", 1, "column(s)", f"item_id has dtype {df.schema['item_id']}, expected UInt32")
    dtype = df.schema["user_id"]
    if dtype == LIST_DTYPE:
        return df.get_column("user_id")
    if dtype == pl.Array(pl.UInt32, list_size):
        return df.get_column("user_id").cast(LIST_DTYPE)
    raise _fail(
        "schema",
        1,
        "column(s)",
        f"user_id has dtype {dtype}, expected List(UInt32) or Array(UInt32, {list_size})",
    )


def validate_submission(
    df: pl.DataFrame, targets: np.ndarray | pl.Series, list_size: int = 100, user_cap: int = 100
) -> None:
    """Raise SubmissionError naming the broken rule, how many rows (or users) break it and an example,
    checking in this order: schema (exactly ``item_id`` UInt32 and ``user_id`` List(UInt32) or
    Array(UInt32, list_size)), no nulls (clip id, list or entry), one row per clip, every target present,
    no clip outside the targets, every list exactly `list_size` long, distinct users within each list, no
    user in more than `user_cap` lists."""
    lists = _lists(df, list_size)
    items = df.get_column("item_id")
    target_ids = _target_series(targets)

    if items.has_nulls():
        raise _fail("no nulls", items.null_count(), "row(s)", "item_id is null")
    if lists.has_nulls():
        bad = items.filter(lists.is_null())
        raise _fail("no nulls", bad.len(), "row(s)", f"user_id list is null for item_id {bad[0]}")
    has_null_entry = lists.list.drop_nulls().list.len() != lists.list.len()
    if has_null_entry.any():
        bad = items.filter(has_null_entry)
        raise _fail("no nulls", bad.len(), "row(s)", f"user_id list of item_id {bad[0]} holds null entries")

    if items.n_unique() != items.len():
        dup = items.filter(items.is_duplicated()).unique()
        raise _fail("one row per clip", dup.len(), "clip(s)", f"item_id {dup.sort()[0]} has several rows")

    missing = target_ids.filter(~target_ids.is_in(items.implode()))
    if missing.len():
        raise _fail(
            "every target present", missing.len(), "target clip(s)", f"item_id {missing.sort()[0]} missing"
        )
    extra = items.filter(~items.is_in(target_ids.implode()))
    if extra.len():
        raise _fail("only target clips", extra.len(), "row(s)", f"item_id {extra.sort()[0]} is not a target")

    lengths = lists.list.len()
    wrong = lengths != list_size
    if wrong.any():
        first = int(wrong.arg_max())
        raise _fail(
            "list size",
            int(wrong.sum()),
            "row(s)",
            f"item_id {items[first]} has {lengths[first]} users, expected {list_size}",
        )

    repeated = lists.list.n_unique() != lengths
    if repeated.any():
        first = int(repeated.arg_max())
        row = lists[first]
        user = row.filter(row.is_duplicated())[0]
        raise _fail(
            "distinct users",
            int(repeated.sum()),
            "row(s)",
            f"item_id {items[first]} lists user_id {user} twice",
        )

    flat = lists.explode(empty_as_null=False, keep_nulls=False).to_numpy()
    if flat.size:
        users, counts = np.unique(flat, return_counts=True)
        over = counts > user_cap
        if over.any():
            worst = int(np.argmax(counts))
            user = int(users[worst])
            clip = items[int(np.flatnonzero(flat == user)[0] // list_size)]
            raise _fail(
                "user cap",
                int(over.sum()),
                "user(s)",
                f"user_id {user} is in {int(counts[worst])} lists (cap {user_cap}), e.g. item_id {clip}",
            )


def write_submission(
    df: pl.DataFrame, path: Path, targets: np.ndarray | pl.Series, list_size: int = 100, user_cap: int = 100
) -> Path:
    """Validate `df`, then write it atomically to `path` as parquet (``item_id`` UInt32, ``user_id``
    List(UInt32)): the file is written under a temporary name in the same directory, flushed to disk and
    renamed over `path` with os.replace, so `path` is either the old file or the complete new one; the
    temporary file is removed on any error. Parent directories are created. Returns `path`."""
    validate_submission(df, targets, list_size=list_size, user_cap=user_cap)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = df.select(pl.col("item_id"), pl.col("user_id").cast(LIST_DTYPE))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        frame.write_parquet(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path


def read_submission(path: Path) -> pl.DataFrame:
    """Read a submission parquet; SubmissionError naming the file when it is missing, unreadable or does not
    have exactly ``item_id`` UInt32 and ``user_id`` List(UInt32) (an Array(UInt32, n) column is returned as
    List(UInt32)). The rules themselves are checked by `validate_submission`."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: submission file not found")
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # polars raises several types for truncated/corrupt files
        raise SubmissionError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from exc
    schema = dict(df.schema)
    user_dtype = schema.get("user_id")
    if isinstance(user_dtype, pl.Array) and user_dtype.inner == pl.UInt32:
        df = df.with_columns(pl.col("user_id").cast(LIST_DTYPE))
    if (
        sorted(df.columns) != sorted(SUBMISSION_COLUMNS)
        or df.schema["item_id"] != pl.UInt32
        or df.schema["user_id"] != LIST_DTYPE
    ):
        raise SubmissionError(
            f"{path}: submission schema is {schema}, expected exactly item_id UInt32 and user_id List(UInt32)"
        )
    return df.select(SUBMISSION_COLUMNS)
