"""Streaming reads of weekly interaction files: one chunk of one week in memory at a time, only the needed
columns. A chunk is at most `chunk_rows` rows (default 20 million, about 0.5-1 GB of working memory with
the id lookups), so a 1.6-billion-row week of the full dataset streams like a small one."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import polars as pl

from audience import progress as progress_report
from audience.data.ids import IdMap, unique_sorted
from audience.data.location import data_path, parquet_file, resolved, scan_parquet
from audience.data.schema import INTERACTIONS_SCHEMA, check_schema
from audience.errors import DataError
from audience.io import atomic_path, file_stamp

log = logging.getLogger(__name__)
DEFAULT_CHUNK_ROWS = 20_000_000
T = TypeVar("T")


@dataclass
class WeekBatch:
    """Interactions (a whole week or a chunk of one) as dense indices plus the requested columns (numpy)."""

    path: Path
    user: np.ndarray  # int32
    item: np.ndarray  # int32
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.user.shape[0])


def _wanted(columns: Sequence[str]) -> tuple[str, ...]:
    return ("user_id", "item_id", *[c for c in columns if c not in ("user_id", "item_id")])


PACKED_FLAGS = "flags"  # the uint8 column `iter_week_chunks(packed=...)` yields: bit k is packed[k]


def _null_error(path: Path, frame: pl.DataFrame, wanted: Sequence[str]) -> DataError | None:
    for column in wanted:
        nulls = frame[column].null_count()
        if nulls:
            return DataError(f"{path}: column {column!r} has {nulls} null value(s); expected none")
    return None


def _to_batch(
    frame: pl.DataFrame, path: Path, users: IdMap, items: IdMap, columns: Sequence[str]
) -> WeekBatch:
    user = users.index(frame["user_id"].to_numpy(), path, "user_id")
    item = items.index(frame["item_id"].to_numpy(), path, "item_id")
    return WeekBatch(data_path(path), user, item, {c: frame[c].to_numpy() for c in columns})


def _selection(columns: Sequence[str], packed: Sequence[str]) -> tuple[list[pl.Expr], list[str], tuple]:
    """The expressions a week read selects (the plain columns, and `packed` flags as one uint8 column),
    the plain column names and every column read."""
    if len(packed) > 8:
        raise ValueError(f"at most 8 packed flags, got {list(packed)}")
    plain = [c for c in _wanted(columns) if c not in packed]
    select = [pl.col(c) for c in plain]
    if packed:
        bits = [pl.col(f).cast(pl.UInt8) * (1 << k) for k, f in enumerate(packed)]
        select.append(pl.sum_horizontal(bits).cast(pl.UInt8).alias(PACKED_FLAGS))
    return select, plain, _wanted((*columns, *packed))


def _checked_batch(
    rows: pl.LazyFrame,
    path: Path,
    users: IdMap,
    items: IdMap,
    columns: Sequence[str],
    packed: Sequence[str],
) -> WeekBatch:
    """Collect `rows` (a slice of one week) as a WeekBatch; a null names the file and the column."""
    select, plain, wanted = _selection(columns, packed)
    frame = rows.select(select).collect()
    if any(frame[c].null_count() for c in frame.columns):
        full = rows.select(wanted).collect()
        raise _null_error(path, full, wanted) or DataError(f"{path}: null values (expected none)")
    return _to_batch(frame, path, users, items, [*plain[2:], *([PACKED_FLAGS] if packed else [])])


def iter_week_chunks(
    path: Path,
    users: IdMap,
    items: IdMap,
    columns: Sequence[str] = (),
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    packed: Sequence[str] = (),
) -> Iterator[WeekBatch]:
    """Yield one week file (schema-checked) in chunks of at most `chunk_rows` rows, ids mapped to indices.
    `packed` boolean columns come as one uint8 column PACKED_FLAGS (bit k = packed[k], at most 8): one
    zero-copy array instead of a byte per flag unpacked from arrow's bitmaps."""
    _, _, wanted = _selection(columns, packed)
    check_schema(path, INTERACTIONS_SCHEMA, wanted)
    try:
        n_rows = parquet_file(path).metadata.num_rows
        scan = scan_parquet(path)
        for offset in range(0, n_rows, chunk_rows):
            yield _checked_batch(scan.slice(offset, chunk_rows), path, users, items, columns, packed)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read parquet data ({type(exc).__name__}: {exc})") from exc


@dataclass(frozen=True)
class WeekPart:
    """Whole row groups of one week file: the unit of a distributed read (engine/)."""

    path: Path
    row_groups: tuple[int, ...]
    rows: int


def week_parts(path: Path, part_rows: int) -> list[WeekPart]:
    """`path` cut into runs of consecutive row groups of at most `part_rows` rows (a bigger row group is a
    part alone), from the file's footer."""
    meta = parquet_file(path).metadata
    parts: list[WeekPart] = []
    groups: list[int] = []
    rows = 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if groups and rows + n > part_rows:
            parts.append(WeekPart(path, tuple(groups), rows))
            groups, rows = [], 0
        groups.append(g)
        rows += n
    if groups:
        parts.append(WeekPart(path, tuple(groups), rows))
    return parts


def read_week_part(
    part: WeekPart, users: IdMap, items: IdMap, columns: Sequence[str] = (), packed: Sequence[str] = ()
) -> WeekBatch:
    """One part's rows as a WeekBatch (what `iter_week_chunks` yields for the same rows)."""
    _, _, wanted = _selection(columns, packed)
    check_schema(part.path, INTERACTIONS_SCHEMA, wanted)
    try:
        table = parquet_file(part.path).read_row_groups(list(part.row_groups), columns=list(wanted))
        return _checked_batch(pl.from_arrow(table).lazy(), part.path, users, items, columns, packed)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{part.path}: cannot read parquet data ({type(exc).__name__}: {exc})") from exc


_DONE = object()


def prefetched(items: Iterator[T]) -> Iterator[T]:
    """`items` with the next one produced in a background thread while the caller works on the current one
    (two in memory at once): a chunk's parquet read and id mapping overlap the kernels of the one before.
    Exceptions surface in the caller."""
    with ThreadPoolExecutor(1) as pool:
        upcoming = pool.submit(next, items, _DONE)
        while (item := upcoming.result()) is not _DONE:
            upcoming = pool.submit(next, items, _DONE)
            yield item


def read_week(path: Path, users: IdMap, items: IdMap, columns: Sequence[str] = ()) -> WeekBatch:
    """A whole week at once (for small files and tests; the pipeline streams with `iter_weeks`)."""
    chunks = list(iter_week_chunks(path, users, items, columns))
    if not chunks:
        return WeekBatch(
            data_path(path), np.zeros(0, np.int32), np.zeros(0, np.int32), {c: np.zeros(0) for c in columns}
        )
    return WeekBatch(
        data_path(path),
        np.concatenate([c.user for c in chunks]),
        np.concatenate([c.item for c in chunks]),
        {k: np.concatenate([c.columns[k] for c in chunks]) for k in chunks[0].columns},
    )


def count_rows(paths: Sequence[Path]) -> int:
    """Rows of several parquet files from their footers (no data read)."""
    total = 0
    for path in paths:
        check_schema(path, INTERACTIONS_SCHEMA, ("user_id", "item_id"))
        total += parquet_file(path).metadata.num_rows
    return total


def iter_weeks(
    paths: Sequence[Path],
    users: IdMap,
    items: IdMap,
    columns: Sequence[str] = (),
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[WeekBatch]:
    """Yield every week's chunks in week order. An empty week is skipped with a warning (it carries no
    signal); a run whose weeks are all empty stops with an error."""
    n_rows = 0
    for path in paths:
        week_rows = 0
        for batch in iter_week_chunks(path, users, items, columns, chunk_rows):
            week_rows += len(batch)
            if len(batch):
                yield batch
        if week_rows == 0:
            log.warning("%s: week has no rows; skipped", path)
        n_rows += week_rows
    if paths and n_rows == 0:
        raise DataError(f"{data_path(paths[0]).parent}: every week file is empty (expected interactions)")


def distinct_ids(
    paths: Sequence[Path], progress: bool = False, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user_id, item_id) values over `paths` (sorted uint32), reading those two columns only:
    what a run must index. Nulls are left to the streamed pass, which names them. With `cache_dir`, each
    week's ids are kept there, keyed by the file's path and stamp (every run of a dataset shares them)."""
    users, items = [], []
    for path in progress_report.iterate(paths, "index", "week", enabled=progress):
        week_users, week_items = week_ids(data_path(path), cache_dir)
        users.append(week_users)
        items.append(week_items)
    empty = np.zeros(0, dtype=np.uint32)
    return (
        unique_sorted(np.concatenate([empty, *users])).astype(np.uint32),
        unique_sorted(np.concatenate([empty, *items])).astype(np.uint32),
    )


def week_ids(path: Path, cache_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user_id, item_id) values of one week (sorted), cached under `cache_dir` when given."""
    check_schema(path, INTERACTIONS_SCHEMA, ("user_id", "item_id"))
    cached = None
    if cache_dir is not None:
        key = json.dumps([resolved(path), file_stamp(path)]).encode()
        prefix = f"{path.parent.name}-{path.stem}-ids-"
        cached = Path(cache_dir) / f"{prefix}{hashlib.sha1(key).hexdigest()[:12]}.npz"
        if cached.is_file():
            with np.load(cached) as npz:
                return npz["users"], npz["items"]
    scan = scan_parquet(path)
    found = pl.collect_all([scan.select(pl.col(c).drop_nulls().unique()) for c in ("user_id", "item_id")])
    week_users = unique_sorted(found[0]["user_id"].to_numpy())
    week_items = unique_sorted(found[1]["item_id"].to_numpy())
    if cached is not None:
        with atomic_path(cached) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, users=week_users, items=week_items)
        for stale in cached.parent.glob(f"{prefix}*.npz"):
            if stale != cached:
                stale.unlink(missing_ok=True)
    return week_users, week_items


def week_item_ids(path: Path) -> np.ndarray:
    """Distinct item ids of one week (schema-checked), cheap: one column only."""
    check_schema(path, INTERACTIONS_SCHEMA, ("item_id",))
    return scan_parquet(path).select(pl.col("item_id").unique()).collect()["item_id"].to_numpy()
