"""Metadata padded to the real dataset's global sizes, around any dataset in the VK-LSVD layout.

The real metadata files are shared by every subsample: 10,000,000 users and 19,627,601 clips (2.5 GB of
float16 embeddings) even when a run uses 20 thousand users. `pad_metadata` reproduces that: it adds users and
clips that never interact (fresh sparse ids, demographics, authors partly shared with the dataset's own, a
duration drawn from the dataset's, float16 embeddings with the dataset's per-dimension mean and spread) and
interleaves them at random positions while the dataset's own rows keep their relative order, so a run that
indexes only what it needs gives exactly the results it gives unpadded.

Memory is bounded: the metadata frames (about 0.4 GB at the real sizes) plus one chunk of embedding rows;
the embedding file is written chunk by chunk straight into the npz (stored, zip64).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import polars as pl

from audience import progress as progress_report
from audience.data.embeddings import load_embeddings
from audience.data.ids import unique_sorted
from audience.data.layout import DatasetLayout
from audience.data.schema import ITEMS_SCHEMA, USERS_SCHEMA
from audience.errors import DataError
from audience.io import atomic_path, write_json, write_parquet

REAL_USERS = 10_000_000
REAL_ITEMS = 19_627_601
CHUNK_ROWS = 1 << 20
AUTHOR_SHARE = 0.5  # share of padding clips by authors the dataset already has (the rest: new authors)
CLIPS_PER_NEW_AUTHOR = 40


def _new_ids(rng: np.random.Generator, existing: np.ndarray, n: int, spread: int = 4) -> np.ndarray:
    """`n` distinct UInt32 ids outside `existing`, scattered over [1, spread x total], in random order."""
    space = spread * (existing.shape[0] + n)
    taken = np.zeros(max(space, int(existing.max(initial=0))) + 1, dtype=bool)
    taken[existing] = True
    found = np.zeros(0, dtype=np.uint32)
    while found.shape[0] < n:
        draw = rng.integers(1, space + 1, size=int((n - found.shape[0]) * 1.2) + 1024, dtype=np.uint32)
        fresh = unique_sorted(draw)
        fresh = fresh[~taken[fresh]]
        taken[fresh] = True
        found = np.concatenate([found, fresh])
    return found[rng.permutation(found.shape[0])[:n]]


def _interleaved(rng: np.random.Generator, n_own: int, n_pad: int) -> np.ndarray:
    """Row order of own rows (0..n_own-1, kept in order) and padding rows (n_own..) at random positions."""
    total = n_own + n_pad
    own_at = np.sort(rng.choice(total, size=n_own, replace=False))
    order = np.empty(total, dtype=np.int64)
    is_own = np.zeros(total, dtype=bool)
    is_own[own_at] = True
    order[own_at] = np.arange(n_own)
    order[~is_own] = n_own + rng.permutation(n_pad)
    return order


def _padding_ranks(rng: np.random.Generator, ranks: pl.Series, n: int) -> np.ndarray:
    """Ranks after the dataset's own (padding rows never interact), in random order."""
    return (int(ranks.max() or 0) + 1 + rng.permutation(n)).astype(np.uint32)


def _pad_users(users: pl.DataFrame, n_users: int, rng: np.random.Generator) -> pl.DataFrame:
    n = n_users - users.height
    pad = pl.DataFrame(
        {
            "user_id": _new_ids(rng, users["user_id"].to_numpy(), n),
            "age": rng.integers(18, 71, size=n, dtype=np.uint8),
            "gender": rng.integers(1, 3, size=n, dtype=np.uint8),
            "geo": rng.integers(0, 80, size=n, dtype=np.uint8),
            "train_interactions_rank": _padding_ranks(rng, users["train_interactions_rank"], n),
        }
    ).cast(USERS_SCHEMA)
    return pl.concat([users.cast(USERS_SCHEMA), pad])[_interleaved(rng, users.height, n)]


def _pad_items(
    items: pl.DataFrame, n_items: int, rng: np.random.Generator
) -> tuple[pl.DataFrame, np.ndarray]:
    """The padded items frame and the padding clips' ids."""
    n = n_items - items.height
    own_authors = unique_sorted(items["author_id"].to_numpy())
    new_authors = _new_ids(rng, own_authors, max(n // CLIPS_PER_NEW_AUTHOR, 1))
    shared = rng.random(n) < AUTHOR_SHARE
    author = new_authors[rng.zipf(1.6, size=n) % new_authors.shape[0]]
    author[shared] = rng.choice(own_authors, size=int(shared.sum()))
    pad = pl.DataFrame(
        {
            "item_id": _new_ids(rng, items["item_id"].to_numpy(), n),
            "author_id": author,
            "duration": rng.choice(items["duration"].to_numpy(), size=n),
            "train_interactions_rank": _padding_ranks(rng, items["train_interactions_rank"], n),
        }
    ).cast(ITEMS_SCHEMA)
    return pl.concat([items.cast(ITEMS_SCHEMA), pad])[_interleaved(rng, items.height, n)], pad[
        "item_id"
    ].to_numpy()


def _write_embeddings(
    path: Path,
    own_ids: np.ndarray,
    own: np.ndarray,
    pad_ids: np.ndarray,
    rng: np.random.Generator,
    progress: bool,
) -> None:
    """npz with the dataset's rows (in order) and padding rows interleaved, written chunk by chunk."""
    order = _interleaved(rng, own_ids.shape[0], pad_ids.shape[0])
    ids = np.concatenate([own_ids, pad_ids])[order]
    is_own = order < own_ids.shape[0]
    mean = own.astype(np.float32).mean(axis=0)
    std = own.astype(np.float32).std(axis=0)
    n, dim = ids.shape[0], own.shape[1]
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype("<f2")),
        "fortran_order": False,
        "shape": (n, dim),
    }
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        with archive.open("item_id.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, ids.astype(np.uint32))
        with archive.open("embedding.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            taken = 0
            for start in progress_report.iterate(
                range(0, n, CHUNK_ROWS), "padding embeddings", "chunk", progress
            ):
                mask = is_own[start : start + CHUNK_ROWS]
                chunk = rng.standard_normal((mask.shape[0], dim), dtype=np.float32)
                chunk *= std
                chunk += mean
                k = int(mask.sum())
                chunk[mask] = own[taken : taken + k]
                taken += k
                member.write(chunk.astype("<f2").tobytes())


def pad_metadata(
    layout: DatasetLayout,
    n_users: int = REAL_USERS,
    n_items: int = REAL_ITEMS,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Rewrite the three metadata files of `layout` padded to `n_users` users and `n_items` clips (each at
    least the dataset's own count); returns (and records in the truth folder) what was added."""
    layout.check_metadata_present()
    users = pl.read_parquet(layout.users_metadata)
    items = pl.read_parquet(layout.items_metadata)
    for what, have, want in (("users", users.height, n_users), ("clips", items.height, n_items)):
        if want < have:
            raise DataError(f"{layout.metadata_dir}: cannot pad to {want} {what}, the metadata has {have}")
    rng = np.random.default_rng([seed, 7])
    padded_users = _pad_users(users, n_users, rng)
    padded_items, pad_ids = _pad_items(items, n_items, rng)
    own_ids, own = load_embeddings(layout.item_embeddings)
    _write_embeddings(layout.item_embeddings, own_ids, own, pad_ids, rng, progress)
    write_parquet(padded_users, layout.users_metadata)
    write_parquet(padded_items, layout.items_metadata)
    record = {
        "users": {"own": users.height, "padded_to": n_users},
        "items": {"own": items.height, "padded_to": n_items},
        "embeddings": {"own": int(own_ids.shape[0]), "padded_to": int(own_ids.shape[0] + pad_ids.shape[0])},
        "seed": seed,
    }
    write_json(record, layout.truth_dir / "metadata_padding.json")
    return record
