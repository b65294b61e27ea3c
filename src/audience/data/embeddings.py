"""`item_embeddings.npz`: its id array alone, or only the rows a run needs, without loading the whole file.

On the real dataset the file is global (19,627,601 clips x 64 float16, about 2.5 GB) whatever subsample a run
uses. `embedding_ids` reads the `item_id` array only (78 MB); `read_embedding_rows` streams the `embedding`
array out of the zip in chunks of `chunk_rows` rows (about 128 MB of float16 at the default) and keeps the
requested rows, so memory is the chunk plus the rows kept. Works for stored (`np.savez`) and deflated
(`np.savez_compressed`) members; a Fortran-ordered array falls back to a whole load."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from audience.data.ids import unique_sorted
from audience.data.location import data_path, open_binary
from audience.errors import DataError
from audience.io import is_local

EMBEDDING_KEYS = ("item_id", "embedding")
DEFAULT_CHUNK_ROWS = 1 << 20


def _npz(path: Path) -> zipfile.ZipFile:
    path = data_path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        archive = zipfile.ZipFile(path if is_local(path) else open_binary(path))
    except Exception as exc:
        raise DataError(f"{path}: not a readable npz file ({type(exc).__name__}: {exc})") from exc
    found = [name.removesuffix(".npy") for name in archive.namelist()]
    missing = [key for key in EMBEDDING_KEYS if key not in found]
    if missing:
        archive.close()
        raise DataError(f"{path}: missing key(s) {missing} (expected {list(EMBEDDING_KEYS)}, found {found})")
    return archive


def _read_header(member, path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(member)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(member)
    except Exception as exc:
        raise DataError(f"{path}: not a readable npz file ({type(exc).__name__}: {exc})") from exc
    raise DataError(f"{path}: npy format version {version} is not supported (expected 1.0 or 2.0)")


def _embedding_header(member, path: Path) -> tuple[int, int, bool, np.dtype]:
    """(rows, dimensions, Fortran order, dtype) of the `embedding` member, checked to be 2-d."""
    shape, fortran, dtype = _read_header(member, path)
    if len(shape) != 2:
        raise DataError(f"{path}: key 'embedding' must be (n_items, dim) (found shape {shape})")
    return int(shape[0]), int(shape[1]), fortran, dtype


def embedding_ids(path: Path, check_duplicates: bool = True) -> np.ndarray:
    """The file's `item_id` array (uint32), checked: 1-d integers within UInt32, one per `embedding` row
    (from that array's header only) and, with `check_duplicates`, no id twice (a sort of the whole array: a
    run checks only the rows it keeps)."""
    path = data_path(path)
    with _npz(path) as archive, archive.open("item_id.npy") as member:
        try:
            item_id = np.lib.format.read_array(member)
        except Exception as exc:
            raise DataError(f"{path}: key 'item_id' is not readable ({type(exc).__name__}: {exc})") from exc
    if item_id.ndim != 1 or not np.issubdtype(item_id.dtype, np.integer):
        raise DataError(
            f"{path}: key 'item_id' must be a 1-d integer array (found {item_id.dtype}, {item_id.shape})"
        )
    if item_id.size and (int(item_id.min()) < 0 or int(item_id.max()) > np.iinfo(np.uint32).max):
        raise DataError(f"{path}: key 'item_id' has values outside UInt32 (expected clip ids 0..2^32-1)")
    item_id = item_id.astype(np.uint32, copy=False)
    with _npz(path) as archive, archive.open("embedding.npy") as member:
        n_rows = _embedding_header(member, path)[0]
    if n_rows != item_id.shape[0]:
        raise DataError(
            f"{path}: key 'embedding' must be (n_items, dim) with n_items={item_id.shape[0]} "
            f"(found {n_rows} rows)"
        )
    if check_duplicates and unique_sorted(item_id).shape[0] != item_id.shape[0]:
        raise DataError(f"{path}: key 'item_id' has duplicate ids (expected one embedding per clip)")
    return item_id


def read_embedding_rows(
    path: Path,
    rows: np.ndarray | None = None,
    dim: int | None = None,
    row_ids: np.ndarray | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> np.ndarray:
    """Rows `rows` (ascending positions; None = every row) of the `embedding` array, first `dim` dimensions,
    in the file's dtype. Checks shape, dtype and that the rows returned are finite (an error names the
    rows by `row_ids`, their clip ids, when given)."""
    path = data_path(path)
    with _npz(path) as archive, archive.open("embedding.npy") as member:
        n, d, fortran, dtype = _embedding_header(member, path)
        if not np.issubdtype(dtype, np.floating):
            raise DataError(
                f"{path}: key 'embedding' must be floating point, expected float16 (found {dtype})"
            )
        dim = d if dim is None else int(dim)
        if not 1 <= dim <= d:
            raise DataError(f"{path}: embedding_dim={dim} but the file has {d} dimensions")
        rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        if rows.size and (rows[0] < 0 or rows[-1] >= n or (np.diff(rows) <= 0).any()):
            raise ValueError(f"{path}: rows must be ascending positions within 0..{n - 1}")
        out = np.empty((rows.shape[0], dim), dtype=dtype)
        if fortran:  # rows are not contiguous in the file: read it whole (rare; np.save writes C order)
            member.close()
            with np.load(path) as npz:
                out[:] = npz["embedding"][rows, :dim]
        else:
            _stream_rows(member, rows, out, n, d, dtype, chunk_rows, path)
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        named = (
            f"item_id {row_ids[bad][:5].tolist()}"
            if row_ids is not None
            else f"rows {rows[bad][:5].tolist()}"
        )
        raise DataError(
            f"{path}: key 'embedding' has NaN/inf in {int(bad.sum())} row(s), e.g. {named}; "
            "expected finite values"
        )
    return out


def _stream_rows(member, rows, out, n: int, d: int, dtype: np.dtype, chunk_rows: int, path: Path) -> None:
    """Read the array chunk by chunk, copying the wanted rows; stops after the last wanted row."""
    row_bytes = dtype.itemsize * d
    last = int(rows[-1]) + 1 if rows.size else 0
    done = 0
    for start in range(0, last, chunk_rows):
        stop = min(start + chunk_rows, n)
        raw = member.read((stop - start) * row_bytes)
        if len(raw) != (stop - start) * row_bytes:
            raise DataError(f"{path}: key 'embedding' is truncated (expected {n} rows of {d} values)")
        chunk = np.frombuffer(raw, dtype=dtype).reshape(stop - start, d)
        upto = done + int(np.searchsorted(rows[done:], stop))
        out[done:upto] = chunk[rows[done:upto] - start, : out.shape[1]]
        done = upto


def load_embeddings(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The whole file as (item_id uint32 (n,), embedding (n, d) in the file's dtype), checked. For small
    files and tests: a run reads only its own rows (`read_embedding_rows`)."""
    item_id = embedding_ids(path)
    return item_id, read_embedding_rows(path, row_ids=item_id)
