"""Small I/O helpers: atomic writes, so no stage ever leaves a half-written artifact behind."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl


def is_local(path: Any) -> bool:
    """Whether `path` is on this machine (a `pathlib.Path`), not a URL (an fsspec `UPath`)."""
    return isinstance(path, Path)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def file_lock(path: Path, shared: bool = False) -> Iterator[None]:
    """An advisory lock (`fcntl.flock`) on the file `path`, created if absent, held for the block: exclusive,
    or shared with `shared`. A conflicting lock of another process waits. Guards a cache entry that several
    runs build or read at once; POSIX file systems only (flock is not honoured across NFS clients)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def unheld(path: Path) -> bool:
    """True when no process holds a lock on the file `path` (absent: nobody does); checks without waiting."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return True
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """A temporary folder beside `path`, renamed onto it when the block succeeds, removed when it fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_stamp(path: Path) -> list[int]:
    """[size, mtime in ns] of a data file; [size, a digest of its listing] of a remote one (the hub lists a
    file's blob id, so a re-uploaded file gets a new stamp): changes whenever the file is rewritten (a cache
    key part)."""
    if is_local(path):
        stat = Path(path).stat()
        return [stat.st_size, stat.st_mtime_ns]
    info = path.fs.info(path.path)
    listed = {k: str(v) for k, v in sorted(info.items()) if k != "name"}
    return [int(info.get("size") or 0), int(hashlib.sha1(repr(listed).encode()).hexdigest()[:15], 16)]


def write_json(data: Any, path: Path) -> Path:
    """Write JSON atomically (sorted keys, indented), converting paths and tuples on the way."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    return Path(path)


def write_parquet(frame: pl.DataFrame, path: Path, **options: Any) -> Path:
    """Write a polars frame to parquet atomically."""
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, **options)
    return Path(path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
