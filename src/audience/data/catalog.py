"""Users and clips of a run: metadata and content embeddings aligned to dense indices.

The real metadata files are global (10,000,000 users, 19,627,601 clips, 2.5 GB of embeddings) whatever
subsample a run uses, so a run indexes only what it needs (`RunNeeds`): the users and clips of its fit
weeks, its target clips, and, only when the fit users cannot fill every list under the cap, the metadata's
most active other users (by `train_interactions_rank`) as the assignment's last resort. Every array of a
run is sized by this index, never by the metadata's row count. Rows keep the metadata's order, so padding
the metadata with users and clips a run does not need changes nothing downstream.

Cost of a load: the metadata's columns (about 0.4 GB for the global files), the embedding file's id array
and one pass over its embedding array in chunks (`audience.data.embeddings`); memory is that plus the
index's own rows. The profiles stage saves the run's catalog (`Catalog.save`) so later stages load only it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from audience.data.embeddings import embedding_ids, read_embedding_rows
from audience.data.ids import IdMap, unique_sorted
from audience.data.layout import DatasetLayout
from audience.data.location import read_parquet
from audience.data.schema import ITEMS_SCHEMA, USERS_SCHEMA, check_schema
from audience.errors import DataError
from audience.io import atomic_path

USER_COLUMNS = ("age", "gender", "geo", "train_interactions_rank")


@dataclass(frozen=True)
class RunNeeds:
    """What a run must index: distinct users of its fit weeks, clips of its fit weeks and its targets, and
    how many users it needs in all (metadata users without history are added by activity rank up to it)."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    min_users: int = 0


@dataclass
class Catalog:
    """The run's users and clips, in metadata order.

    `embedding` is float32 (n_items, dim) with zero rows where a clip has no embedding (`has_embedding`).
    `index_counts` says how the index was chosen (fit users, added users, metadata sizes)."""

    users: IdMap
    items: IdMap
    authors: IdMap
    item_author: np.ndarray  # int32 author index per clip
    item_duration: np.ndarray  # uint8 seconds
    embedding: np.ndarray
    has_embedding: np.ndarray
    users_frame: pl.DataFrame  # user_id, age, gender, geo, train_interactions_rank, one row per user
    index_counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def save(self, path: Path) -> Path:
        """Write every array (sized by the index) to one npz, atomically."""
        arrays = {
            "user_ids": self.users.ids,
            "item_ids": self.items.ids,
            "author_ids": self.authors.ids,
            "item_author": self.item_author,
            "item_duration": self.item_duration,
            "embedding": self.embedding,
            "has_embedding": self.has_embedding,
            **{f"user_{c}": self.users_frame[c].to_numpy() for c in USER_COLUMNS},
        }
        meta = {
            "what": [self.users.what, self.items.what, self.authors.what],
            "index_counts": self.index_counts,
        }
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> Catalog:
        with np.load(path) as npz:
            meta = json.loads(str(npz["meta"]))
            users_what, items_what, authors_what = meta["what"]
            user_ids = npz["user_ids"]
            users_frame = pl.DataFrame(
                {"user_id": user_ids, **{c: npz[f"user_{c}"] for c in USER_COLUMNS}}
            ).cast(USERS_SCHEMA)
            return cls(
                users=IdMap(user_ids, users_what),
                items=IdMap(npz["item_ids"], items_what),
                authors=IdMap(npz["author_ids"], authors_what),
                item_author=npz["item_author"],
                item_duration=npz["item_duration"],
                embedding=npz["embedding"],
                has_embedding=npz["has_embedding"],
                users_frame=users_frame,
                index_counts=meta["index_counts"],
            )


def _read_metadata(path: Path, schema: dict) -> pl.DataFrame:
    check_schema(path, schema)
    frame = read_parquet(path, columns=list(schema))
    if frame.height == 0:
        raise DataError(f"{path}: no rows (expected one row per {'user' if 'age' in schema else 'clip'})")
    return frame


def _user_rows(users: pl.DataFrame, needs: RunNeeds | None) -> tuple[np.ndarray, dict[str, int]]:
    """Metadata rows of the run's users: those with history, then the most active others up to min_users."""
    n = users.height
    if needs is None:
        return np.arange(n), {"metadata_users": n, "users_with_history": -1, "users_added": 0}
    ids = users["user_id"].to_numpy()
    keep = IdMap(needs.user_ids, "users of the fit weeks").lookup(ids) >= 0
    n_fit = int(keep.sum())
    n_added = min(max(needs.min_users - n_fit, 0), n - n_fit)
    if n_added:
        others = np.flatnonzero(~keep)
        by_activity = np.lexsort((others, users["train_interactions_rank"].to_numpy()[others]))
        keep[others[by_activity[:n_added]]] = True
    counts = {"metadata_users": n, "users_with_history": n_fit, "users_added": n_added}
    return np.flatnonzero(keep), counts


def load_catalog(
    layout: DatasetLayout, embedding_dim: int | None = None, needs: RunNeeds | None = None
) -> Catalog:
    """Load and check the metadata and embeddings of the users and clips in `needs` (None: every row, for
    exploration on small data); keep the first `embedding_dim` embedding dimensions."""
    layout.check_metadata_present()
    users = _read_metadata(layout.users_metadata, USERS_SCHEMA)
    items = _read_metadata(layout.items_metadata, ITEMS_SCHEMA)
    user_rows, counts = _user_rows(users, needs)
    users = users[user_rows]
    counts |= {"metadata_items": items.height}
    if needs is not None:
        items = items.filter(
            pl.Series(IdMap(needs.item_ids, "clips of the run").lookup(items["item_id"].to_numpy()) >= 0)
        )
    user_map = IdMap(users["user_id"].to_numpy(), f"{layout.users_metadata} (user_id)")
    item_map = IdMap(items["item_id"].to_numpy(), f"{layout.items_metadata} (item_id)")
    author_ids = items["author_id"].to_numpy()
    authors = IdMap(unique_sorted(author_ids), "authors of items_metadata")
    embedding, has_embedding = _embeddings(layout.item_embeddings, item_map, embedding_dim)
    return Catalog(
        users=user_map,
        items=item_map,
        authors=authors,
        item_author=authors.lookup(author_ids),
        item_duration=items["duration"].to_numpy(),
        embedding=embedding,
        has_embedding=has_embedding,
        users_frame=users,
        index_counts=counts,
    )


def _embeddings(path: Path, items: IdMap, dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    """float32 embeddings of the indexed clips (zero rows, has_embedding False, where the file has none)."""
    file_ids = embedding_ids(path, check_duplicates=False)
    position = items.lookup(file_ids)
    wanted = np.flatnonzero(position >= 0)
    if unique_sorted(position[wanted]).shape[0] != wanted.shape[0]:
        raise DataError(f"{path}: key 'item_id' has duplicate ids (expected one embedding per clip)")
    rows = read_embedding_rows(path, wanted, dim, row_ids=file_ids[wanted])
    embedding = np.zeros((len(items), rows.shape[1]), dtype=np.float32)
    embedding[position[wanted]] = rows
    has_embedding = np.zeros(len(items), dtype=bool)
    has_embedding[position[wanted]] = True
    return embedding, has_embedding
