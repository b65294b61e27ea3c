"""Users and clips of a dataset: metadata and content embeddings aligned to dense indices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from audience.data.ids import IdMap
from audience.data.layout import DatasetLayout
from audience.data.schema import ITEMS_SCHEMA, USERS_SCHEMA, check_schema, load_embeddings
from audience.errors import DataError


@dataclass
class Catalog:
    """Every known user and clip. Users and clips are indexed in metadata order.

    `embedding` is float32 (n_items, dim) with zero rows where a clip has no embedding (`has_embedding`)."""

    users: IdMap
    items: IdMap
    authors: IdMap
    item_author: np.ndarray  # int32 author index per clip
    item_duration: np.ndarray  # uint8 seconds
    embedding: np.ndarray
    has_embedding: np.ndarray
    users_frame: pl.DataFrame
    embedding_ids: IdMap  # clips that have an embedding, possibly beyond items_metadata

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)


def _read_metadata(path, schema: dict) -> pl.DataFrame:
    check_schema(path, schema)
    frame = pl.read_parquet(path, columns=list(schema))
    if frame.height == 0:
        raise DataError(f"{path}: no rows (expected one row per {'user' if 'age' in schema else 'clip'})")
    return frame


def load_catalog(layout: DatasetLayout, embedding_dim: int | None = None) -> Catalog:
    """Load and check the three metadata files; keep the first `embedding_dim` embedding dimensions."""
    layout.check_metadata_present()
    users = _read_metadata(layout.users_metadata, USERS_SCHEMA)
    items = _read_metadata(layout.items_metadata, ITEMS_SCHEMA)
    user_map = IdMap(users["user_id"].to_numpy(), f"{layout.users_metadata} (user_id)")
    item_map = IdMap(items["item_id"].to_numpy(), f"{layout.items_metadata} (item_id)")
    author_ids = items["author_id"].to_numpy()
    authors = IdMap(np.unique(author_ids), "authors of items_metadata")
    emb_ids, emb = load_embeddings(layout.item_embeddings)
    dim = emb.shape[1] if embedding_dim is None else int(embedding_dim)
    if not 1 <= dim <= emb.shape[1]:
        raise DataError(
            f"{layout.item_embeddings}: embedding_dim={dim} but the file has {emb.shape[1]} dimensions"
        )
    embedding = np.zeros((len(item_map), dim), dtype=np.float32)
    pos = item_map.lookup(emb_ids)
    known = pos >= 0
    embedding[pos[known]] = emb[known, :dim]
    has_embedding = np.zeros(len(item_map), dtype=bool)
    has_embedding[pos[known]] = True
    return Catalog(
        users=user_map,
        items=item_map,
        authors=authors,
        item_author=authors.lookup(author_ids),
        item_duration=items["duration"].to_numpy(),
        embedding=embedding,
        has_embedding=has_embedding,
        users_frame=users,
        embedding_ids=IdMap(emb_ids, f"{layout.item_embeddings} (item_id)"),
    )
