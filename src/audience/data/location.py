"""Where a dataset lives: a local folder, or an fsspec URL of the same layout (`hf://datasets/deepvk/VK-LSVD`
read in place from the Hugging Face hub through huggingface_hub's filesystem, `s3://...`, any protocol
fsspec knows). URLs become universal_pathlib `UPath`s, which walk and open like `pathlib.Path`; the
readers here give polars and pyarrow what each needs for either kind.

Remote reads project columns (a week's user_id and item_id are read without its flags) but a filter reads
the columns it needs in full: a run on a remote dataset reads the week files it scans once more than a
local run's cache would; the Dask engine's workers read the weeks themselves, so the client only reads
footers, the metadata and the truth week.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from audience.io import is_local

DataPath = Any  # pathlib.Path, or upath.UPath for a URL


def is_url(value: object) -> bool:
    return "://" in str(value) and not str(value).startswith("file://")


def data_path(value: str | Path | DataPath) -> DataPath:
    """`value` as a path: a `Path` for a local folder, a `UPath` for a URL (kept as given when already
    one of them)."""
    if isinstance(value, Path) or type(value).__module__.startswith("upath"):
        return value
    if is_url(value):
        from upath import UPath

        return UPath(str(value))
    return Path(str(value).removeprefix("file://"))


def _fs(path: DataPath):
    return path.fs, path.path


def parquet_file(path: DataPath) -> pq.ParquetFile:
    if is_local(path):
        return pq.ParquetFile(path)
    fs, inner = _fs(path)
    return pq.ParquetFile(inner, filesystem=fs)


def scan_parquet(path: DataPath) -> pl.LazyFrame:
    """A lazy scan: polars' own for a local file; for a URL a pyarrow dataset over fsspec (columns
    projected at the source, filters applied after the read)."""
    if is_local(path):
        return pl.scan_parquet(path)
    import pyarrow.dataset as ds

    fs, inner = _fs(path)
    return pl.scan_pyarrow_dataset(ds.dataset(inner, filesystem=fs, format="parquet"))


def read_parquet(path: DataPath, columns: list[str] | None = None) -> pl.DataFrame:
    if is_local(path):
        return pl.read_parquet(path, columns=columns)
    fs, inner = _fs(path)
    return pl.from_arrow(pq.read_table(inner, columns=columns, filesystem=fs))


def parquet_schema(path: DataPath) -> dict[str, pl.DataType]:
    if is_local(path):
        return dict(pl.read_parquet_schema(path))
    schema = parquet_file(path).schema_arrow
    return dict(pl.from_arrow(schema.empty_table()).schema)


def open_binary(path: DataPath):
    """A seekable binary file object (npz archives are read member by member)."""
    return open(path, "rb") if is_local(path) else path.open("rb")


def resolved(path: DataPath) -> str:
    """The path as a cache key part: absolute for a local file, the URL for a remote one."""
    return str(Path(path).resolve()) if is_local(path) else str(path)
