"""Weekly aggregates: each week file reduced once to what the profiles, sources and features need, cached.

A `WeekAggregate` holds, for one week, in the dataset's own ids (so any run's index can use it): views and
positives per user and per clip; per user and profile kind the weighted sum of the clips' embeddings and
the sum of weights; the same sums over the dataset's soft-cluster posteriors (`spaces`, kinds 'all' and
'positive', profiles/dataset_mixture.py) when the store has a mixture; and three per-user count histories
(views and positives per author, positive clips).
A split (validate, submit, every holdout) combines the aggregates of its own weeks (`combine`), applying the
recency weights there: 'recency' is the 'all' sum weighted by week, and the histories are weighted the same
way, so no split re-reads rows an aggregate already holds. Pseudo-new clips of a holdout run are taken out
by subtracting the aggregate of their rows alone (one filtered read).

Cache (`AggregateStore`): a folder of .npy files per week, named by the week and a digest of what shapes it
(the file's size and mtime, the metadata files' stamps, the flags and profile settings, the embedding
dimension, the mixture's parameters and the code of this module, its kernels and the readers), written
atomically; a changed week file, mixture or edited code gives a new digest and the stale folder is removed
when the new one lands. Runs share the cache safely at the same time: one builds the missing weeks while
the others wait (`.build.lock`), and a run holds a shared lock on each entry it reads (`<entry>.lock`), so
a stale entry is swept only when no run holds it.

The Dask engine (engine/) reduces a week by parts of whole row groups (`aggregate_part`, each over its own
users) and merges the parts' aggregates in a tree (`merge_aggregates`): the same aggregate, sums to
float32 rounding.

Operating limits: a week's aggregate costs O(active users x dim x kinds) floats plus its distinct
(user, author) and positive (user, clip) pairs (~370 MB a week on `vk`), and (2, active users, K) floats
for a mixture of K components; building it holds one chunk of rows (~40 bytes a row with the kernels'
scratch) and (kinds, n_users, dim) float32 accumulators over the run's users (plus (2, n_users, K) and the
catalog's posteriors, n_items x K, for the mixture). Combining holds the run's float64 sums, one week at a
time, the growing positive histories, and the user x author views built by blocks of users and pruned
(profiles/author_views.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import groupby
from pathlib import Path

import numpy as np
from numba import get_num_threads
from scipy import sparse

from audience import progress as progress_report
from audience.code_key import code_key
from audience.config import ProfileSettings
from audience.data.catalog import Catalog
from audience.data.ids import unique_sorted
from audience.data.location import data_path, resolved
from audience.data.weeks import (
    PACKED_FLAGS,
    WeekBatch,
    WeekPart,
    count_rows,
    iter_week_chunks,
    prefetched,
    read_week_part,
)
from audience.errors import DataError
from audience.io import atomic_dir, file_lock, file_stamp, unheld
from audience.profiles.author_views import WeekPairs, combine_author_views
from audience.profiles.fit_data import FitData, normalised_profiles, without_items
from audience.profiles.gmm import GmmModel
from audience.profiles.kinds import (
    KIND,
    WEEKLY_KINDS,
    flag_tables,
    packed_flags,
    recency_weight,
    weekly_kinds,
)
from audience.profiles.user_shards import UserShard
from audience.profiles.week_kernels import (
    add_counts,
    group_rows,
    user_histories,
    user_profile_sums,
)

# a week of the up0.01_ip0.01 subsample (~54 M rows) in one chunk: ~2.5 GB of working memory; a bigger week
# (the full dataset's) is reduced chunk by chunk and its histories merged
AGGREGATE_CHUNK_ROWS = 64_000_000
HISTORIES = ("user_author_views", "user_author_positives", "user_item_positives")
SPACE_KINDS = ("all", "positive")  # the profile kinds summed in every other space (soft clusters)
MIXTURE_SPACE = "gmm"  # the soft-cluster space's name: its profiles are 'gmm_all' and 'gmm_positive'
log = logging.getLogger(__name__)
# the week pass's code: this module and everything it imports (a cached aggregate of other code is rebuilt)
AGGREGATE_CODE = code_key(__name__)


@dataclass
class SpaceSums:
    """Per-user sums of one week in another space than the embeddings (one row of a table per clip)."""

    sums: np.ndarray  # float32 (len(SPACE_KINDS), n_u, K)
    totals: np.ndarray  # float64 (len(SPACE_KINDS), n_u)


@dataclass
class WeekAggregate:
    """One week reduced (see the module docstring). Per-user arrays follow `users`; `histories` maps a name
    of HISTORIES to CSR parts over `users` whose column keys are author ids or clip ids; `spaces` maps a
    space's name to its sums over SPACE_KINDS."""

    users: np.ndarray  # uint32 (n_u,)
    user_views: np.ndarray  # int64 (n_u,)
    user_positives: np.ndarray  # int64 (n_u,)
    items: np.ndarray  # uint32 (n_i,)
    item_views: np.ndarray  # int64 (n_i,)
    item_positives: np.ndarray  # int64 (n_i,)
    kinds: tuple[str, ...]
    sums: np.ndarray  # float32 (len(kinds), n_u, dim)
    totals: np.ndarray  # float64 (len(kinds), n_u)
    histories: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    spaces: dict[str, SpaceSums] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.user_views.sum())

    def save(self, path: Path) -> None:
        """One .npy file per array in the folder `path`, written beside it and renamed into place."""
        arrays = {
            name: getattr(self, name)
            for name in ("users", "user_views", "user_positives", "items", "item_views", "item_positives")
        }
        arrays |= {"kinds": np.array(self.kinds), "sums": self.sums, "totals": self.totals}
        for name, parts in self.histories.items():
            for part, values in zip(("indptr", "keys", "data"), parts, strict=True):
                arrays[f"{name}__{part}"] = np.asarray(values)
        for name, space in self.spaces.items():
            arrays |= {f"space__{name}__sums": space.sums, f"space__{name}__totals": space.totals}
        with atomic_dir(path) as tmp:
            for name, values in arrays.items():
                np.save(tmp / f"{name}.npy", values)

    @classmethod
    def load(cls, path: Path, lazy: Sequence[str] = (), mapped: bool = False) -> WeekAggregate:
        """Read a saved aggregate; the keys and data of the histories named in `lazy` stay on disk as
        `NpyRows` readers (sliced on demand); `mapped`: every other array memory-mapped, so a reader of a
        few rows (one user shard's) pages in only those."""
        path = Path(path)

        def read(name: str, lazy_ok: bool = False):
            if lazy_ok:
                return NpyRows(path / f"{name}.npy")
            return np.load(path / f"{name}.npy", mmap_mode="r" if mapped else None)

        histories = {
            name: (read(f"{name}__indptr"), *(read(f"{name}__{p}", name in lazy) for p in ("keys", "data")))
            for name in HISTORIES
            if (path / f"{name}__indptr.npy").is_file()
        }
        plain = ("users", "user_views", "user_positives", "items", "item_views", "item_positives")
        spaces = {
            name: SpaceSums(read(f"space__{name}__sums"), read(f"space__{name}__totals"))
            for name in sorted(p.name.split("__")[1] for p in path.glob("space__*__sums.npy"))
        }
        return cls(
            **{name: read(name) for name in plain},
            kinds=tuple(str(k) for k in read("kinds")),
            sums=read("sums"),
            totals=read("totals"),
            histories=histories,
            spaces=spaces,
        )


class NpyRows:
    """A 1-d .npy file read slice by slice (`reader[lo:hi]`), without mapping or loading the whole array."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(fh)
            self.offset = fh.tell()
        if len(shape) != 1:
            raise DataError(f"{self.path}: expected a 1-d array, got shape {shape}")
        self.shape, self.dtype = shape, dtype

    def __getitem__(self, part: slice) -> np.ndarray:
        lo, hi, _ = part.indices(self.shape[0])
        count = max(hi - lo, 0)
        return np.fromfile(
            self.path, dtype=self.dtype, count=count, offset=self.offset + lo * self.dtype.itemsize
        )


def week_chunks(
    weeks: Sequence[Path],
    catalog: Catalog,
    positive_flags: Sequence[str],
    settings: ProfileSettings,
    chunk_rows: int = AGGREGATE_CHUNK_ROWS,
) -> Iterator[WeekBatch]:
    """The chunks of `weeks` in order, as the week pass reads them (timespent and the packed flags)."""
    packed = packed_flags(positive_flags, settings)
    for week in weeks:
        yield from iter_week_chunks(week, catalog.users, catalog.items, ("timespent",), chunk_rows, packed)


def aggregate_week(
    path: Path,
    catalog: Catalog,
    positive_flags: Sequence[str],
    settings: ProfileSettings,
    kinds: Sequence[str] = WEEKLY_KINDS,
    spaces: Mapping[str, np.ndarray] | None = None,
    rows_of: np.ndarray | None = None,
    histories: bool = True,
    chunk_rows: int = AGGREGATE_CHUNK_ROWS,
    bar=None,
    chunks: Iterable[WeekBatch] | None = None,
    users: np.ndarray | None = None,
) -> WeekAggregate:
    """Reduce one week file: the `kinds` over the catalog's embeddings, and SPACE_KINDS over each table of
    `spaces` (name -> float32 (n_items, K), zero rows where a clip has no embedding); `rows_of` (bool per
    clip): keep only the rows of these clips (None keeps every row);
    `chunks`: the week's chunks already being read (`week_chunks`), else they are read here; `users`
    (sorted catalog user indices, every chunk's users among them): accumulate over these users only.
    Memory: one chunk of rows (~40 bytes a row with the kernels' scratch) plus (kinds, n_users, d) float32
    accumulators over the catalog's users (or `users`), and (2, n_users, K) per space."""
    spaces = dict(spaces or {})
    n_items, n_authors = catalog.n_items, len(catalog.authors)
    n_users = catalog.n_users if users is None else len(users)
    user_ids = catalog.users.ids if users is None else catalog.users.ids[users]
    # (codes, table, sums, totals) per space, the embeddings' first
    summed = {
        name: (
            np.array([KIND[k].code for k in space_kinds], dtype=np.int64),
            table,
            np.zeros((len(space_kinds), n_users, table.shape[1]), dtype=np.float32),
            np.zeros((len(space_kinds), n_users), dtype=np.float64),
        )
        for name, space_kinds, table in (
            ("", kinds, catalog.embedding),
            *((name, SPACE_KINDS, table) for name, table in spaces.items()),
        )
    }
    counts = {k: np.zeros(n, dtype=np.int64) for k, n in (("user", n_users), ("item", n_items))}
    positives = {k: np.zeros(n, dtype=np.int64) for k, n in (("user", n_users), ("item", n_items))}
    parts: dict[str, list[sparse.csr_matrix]] = {name: [] for name in HISTORIES}
    packed = packed_flags(positive_flags, settings)
    tables = flag_tables(packed, positive_flags, settings)
    duration = np.maximum(catalog.item_duration.astype(np.float32), 1.0)
    settings_f32 = np.float32(settings.skip_share), np.float32(settings.watch_cap)
    hidden = None if rows_of is None else ~rows_of
    position = None  # catalog user index -> row in `users`
    if chunks is None:
        chunks = prefetched(week_chunks([path], catalog, positive_flags, settings, chunk_rows))
    for batch in chunks:
        n_read = len(batch)
        batch = without_items(batch, hidden)
        if users is not None:
            if position is None:
                position = np.full(catalog.n_users, -1, dtype=np.int32)
                position[users] = np.arange(users.size, dtype=np.int32)
            batch = replace(batch, user=position[batch.user])
        flags = batch.columns[PACKED_FLAGS]
        starts, order = group_rows(batch.user, n_users)
        for codes, table, sums, totals in summed.values():
            user_profile_sums(
                starts,
                order,
                batch.item,
                batch.columns["timespent"],
                flags,
                codes,
                tables,
                duration,
                catalog.has_embedding,
                *settings_f32,
                table,
                sums,
                totals,
            )
        positive = tables[1][flags]
        add_counts(batch.item, positive, counts["item"], positives["item"])
        counts["user"] += np.diff(starts)
        if histories:
            *pairs, user_positives = user_histories(
                starts, order, batch.item, flags, tables[1], catalog.item_author, n_authors, get_num_threads()
            )
            positives["user"] += user_positives
            for name, (indptr, indices, data), n_keys in zip(
                HISTORIES, pairs, (n_authors, n_authors, n_items), strict=True
            ):
                parts[name].append(sparse.csr_matrix((data, indices, indptr), shape=(n_users, n_keys)))
        else:
            positives["user"] += np.bincount(batch.user[positive], minlength=n_users)
        if bar is not None:
            bar.update(n_read)
    active = np.flatnonzero(counts["user"])
    items = np.flatnonzero(counts["item"])
    key_ids = {"user_author_views": catalog.authors.ids, "user_author_positives": catalog.authors.ids}
    key_ids["user_item_positives"] = catalog.items.ids
    merged = {}
    for name, chunk_parts in parts.items():
        if chunk_parts:
            matrix = chunk_parts[0] if len(chunk_parts) == 1 else sum(chunk_parts[1:], chunk_parts[0])
            matrix = matrix[active]
            merged[name] = (
                matrix.indptr.astype(np.int64),
                key_ids[name][matrix.indices],
                _counts(matrix.data),
            )
    _, _, sums, totals = summed.pop("")
    return WeekAggregate(
        users=user_ids[active],
        user_views=counts["user"][active],
        user_positives=positives["user"][active],
        items=catalog.items.ids[items],
        item_views=counts["item"][items],
        item_positives=positives["item"][items],
        kinds=tuple(kinds),
        sums=np.ascontiguousarray(sums[:, active]),
        totals=totals[:, active],
        histories=merged,
        spaces={
            name: SpaceSums(np.ascontiguousarray(space_sums[:, active]), space_totals[:, active])
            for name, (_, _, space_sums, space_totals) in summed.items()
        },
    )


def aggregate_part(
    part: WeekPart,
    catalog: Catalog,
    positive_flags: Sequence[str],
    settings: ProfileSettings,
    kinds: Sequence[str] = WEEKLY_KINDS,
    spaces: Mapping[str, np.ndarray] | None = None,
    rows_of: np.ndarray | None = None,
    histories: bool = True,
) -> WeekAggregate:
    """The aggregate of one part of a week (whole row groups), accumulated over the part's own users
    only: the unit task of the Dask engine. Memory: the part's rows (~40 bytes each) plus
    (kinds, users in the part, d) float32."""
    packed = packed_flags(positive_flags, settings)
    batch = read_week_part(part, catalog.users, catalog.items, ("timespent",), packed)
    users = np.flatnonzero(np.bincount(batch.user, minlength=catalog.n_users))
    return aggregate_week(
        part.path,
        catalog,
        positive_flags,
        settings,
        kinds,
        spaces,
        rows_of,
        histories,
        chunks=[batch],
        users=users,
    )


def merge_aggregates(parts: Sequence[WeekAggregate], catalog: Catalog | None = None) -> WeekAggregate:
    """One aggregate of the rows of every part (parts of one week, or weeks summed with equal weight):
    counts and histories exactly, sums in float32 in the parts' order. Its users follow `catalog`'s index
    order, as `aggregate_week`'s do and `combine` needs (user shards are slices of it), or, without a
    catalog, their ids' order. Cost: the parts' users x kinds x d additions, and one linear merge of
    sorted CSR rows per history and part (scipy's sparse addition)."""
    if len(parts) == 1:
        return parts[0]
    kinds = parts[0].kinds
    if any(p.kinds != kinds for p in parts):
        raise ValueError(f"cannot merge aggregates of different kinds: {[p.kinds for p in parts]}")
    if catalog is None:
        users = unique_sorted(np.concatenate([p.users for p in parts]))
        at_user = [np.searchsorted(users, p.users) for p in parts]
    else:
        dense = [catalog.users.index(p.users, "week aggregate part", "users") for p in parts]
        union = unique_sorted(np.concatenate(dense))
        users = catalog.users.ids[union]
        at_user = [np.searchsorted(union, d) for d in dense]
    items = unique_sorted(np.concatenate([p.items for p in parts]))
    at_item = [np.searchsorted(items, p.items) for p in parts]

    def summed(values: str, positions: list[np.ndarray], n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int64)
        for part, pos in zip(parts, positions, strict=True):
            out[pos] += getattr(part, values)  # positions are distinct within a part
        return out

    if any(p.spaces.keys() != parts[0].spaces.keys() for p in parts):
        raise ValueError(f"cannot merge aggregates of different spaces: {[list(p.spaces) for p in parts]}")
    sums, totals = _merged_sums([(p.sums, p.totals) for p in parts], at_user, users.size)
    spaces = {
        name: SpaceSums(
            *_merged_sums([(p.spaces[name].sums, p.spaces[name].totals) for p in parts], at_user, users.size)
        )
        for name in parts[0].spaces
    }
    merged = {}
    for name in parts[0].histories:
        width = 1 + max(int(np.asarray(p.histories[name][1][:]).max(initial=0)) for p in parts)
        total = None
        for part, pos in zip(parts, at_user, strict=True):
            matrix = _history_rows(part.histories[name], pos, users.size, width)
            total = matrix if total is None else total + matrix  # sorted rows merged, duplicates summed
        total.sort_indices()
        merged[name] = (total.indptr.astype(np.int64), total.indices.astype(np.uint32), _counts(total.data))
    return WeekAggregate(
        users=users.astype(np.uint32),
        user_views=summed("user_views", at_user, users.size),
        user_positives=summed("user_positives", at_user, users.size),
        items=items.astype(np.uint32),
        item_views=summed("item_views", at_item, items.size),
        item_positives=summed("item_positives", at_item, items.size),
        kinds=kinds,
        sums=sums,
        totals=totals,
        histories=merged,
        spaces=spaces,
    )


def _merged_sums(
    parts: Sequence[tuple[np.ndarray, np.ndarray]], positions: Sequence[np.ndarray], n_users: int
) -> tuple[np.ndarray, np.ndarray]:
    """(sums, totals) of parts over their users' `positions` among `n_users`, added in the parts' order."""
    sums = np.zeros((parts[0][0].shape[0], n_users, parts[0][0].shape[2]), dtype=np.float32)
    totals = np.zeros((parts[0][1].shape[0], n_users), dtype=np.float64)
    for (part_sums, part_totals), pos in zip(parts, positions, strict=True):
        sums[:, pos] += part_sums
        totals[:, pos] += part_totals
    return sums, totals


def _history_rows(
    history: tuple[np.ndarray, np.ndarray, np.ndarray], rows: np.ndarray, n_rows: int, width: int
) -> sparse.csr_matrix:
    """A part's history (CSR over its users) as rows `rows` of an (n_rows x width) CSR, keys as columns."""
    indptr, keys, data = (np.asarray(a[:]) for a in history)
    keys = keys.astype(np.int64 if width > np.iinfo(np.int32).max else np.int32)  # ids span all of UInt32
    if rows.size > 1 and np.any(np.diff(rows) < 0):  # place the part's rows in the merged users' order
        order = np.argsort(rows, kind="stable")
        part = sparse.csr_matrix((data.astype(np.int64), keys, indptr), shape=(rows.size, width))[order]
        rows, indptr, keys, data = rows[order], part.indptr, part.indices, part.data
    counts = np.zeros(n_rows, dtype=np.int64)
    counts[rows] = np.diff(indptr)
    full = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=full[1:])
    matrix = sparse.csr_matrix((data.astype(np.int64), keys, full), shape=(n_rows, width))
    rising = np.diff(keys.astype(np.int64)) > 0
    starts = full[1:-1]
    rising[starts[(starts > 0) & (starts < keys.size)] - 1] = True  # a row's first key follows anything
    if not rising.all():
        matrix.sort_indices()
    # a part's row holds each key once: sorted rows are canonical, and scipy then adds two matrices by a
    # linear merge of their rows (its general path allocates width-long buffers: 34 GB at UInt32 ids)
    matrix.has_canonical_format = True
    return matrix


def _counts(values: np.ndarray) -> np.ndarray:
    """Whole counts in the narrowest unsigned type that holds them (most are 1: uint16 halves the file)."""
    top = values.max() if values.size else 0
    return values.astype(np.uint16 if top < 1 << 16 else np.uint32)


@dataclass
class AggregateStore:
    """Weekly aggregates on disk under `folder`, one per week and shaping key (see the module docstring)."""

    folder: Path
    catalog: Catalog
    positive_flags: tuple[str, ...]
    settings: ProfileSettings
    metadata: tuple[Path, ...]  # the metadata files whose content the aggregates read (authors, embeddings)
    chunk_rows: int = AGGREGATE_CHUNK_ROWS
    mixture: GmmModel | None = None  # the dataset's soft-cluster mixture: its sums are cached per week too

    @property
    def kinds(self) -> tuple[str, ...]:
        return weekly_kinds(self.settings.kinds)

    @cached_property
    def spaces(self) -> dict[str, np.ndarray]:
        """The tables of the spaces summed besides the embeddings: the mixture's posteriors of the catalog's
        clips (zero rows where a clip has no embedding), n_items x K float32, each clip's computed alone so
        that any run's catalog gives it the same values."""
        if self.mixture is None:
            return {}
        catalog = self.catalog
        posteriors = self.mixture.row_posteriors(catalog.embedding)
        posteriors *= catalog.has_embedding[:, None]
        return {MIXTURE_SPACE: posteriors}

    def key(self, week: Path) -> dict:
        s = self.settings
        return {
            "week": resolved(week),
            "stamp": file_stamp(week),
            "metadata": [file_stamp(p) for p in self.metadata],
            "positive_flags": list(self.positive_flags),
            "kinds": list(self.kinds),
            "flag_weights": sorted(s.flag_weights.items()),
            "skip_share": s.skip_share,
            "watch_cap": s.watch_cap,
            "dim": int(self.catalog.embedding.shape[1]),
            "mixture": None if self.mixture is None else self.mixture.digest(),
            "code": AGGREGATE_CODE,
        }

    def path(self, week: Path) -> Path:
        digest = hashlib.sha1(json.dumps(self.key(week), sort_keys=True).encode()).hexdigest()[:12]
        return self.folder / f"{week_name(week)}-{digest}"

    @contextmanager
    def reading(self, weeks: Sequence[Path]) -> Iterator[None]:
        """Hold the entries of `weeks` for the block: a shared lock on each, so no run sweeps them."""
        with ExitStack() as held:
            for week in weeks:
                held.enter_context(file_lock(_lock_of(self.path(week)), shared=True))
            yield

    def building(self):
        """Held while a run builds missing weeks: one run builds, the others wait, then find them built."""
        return file_lock(self.folder / ".build.lock")

    def build_missing(self, weeks: Sequence[Path], progress: bool = True) -> None:
        """Build (and cache) the aggregates of `weeks` that are not on disk yet, under one progress bar; the
        next chunk (of this week or the next) is read while the current one is reduced."""
        missing = [w for w in weeks if not self.path(w).is_dir()]
        if not missing:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        bar = progress_report.bar("week aggregates", count_rows(missing), "rows", enabled=progress)
        reads = prefetched(
            week_chunks(missing, self.catalog, self.positive_flags, self.settings, self.chunk_rows)
        )
        for week, chunks in groupby(reads, key=lambda batch: batch.path):
            self.build(week, chunks, bar)
        for week in missing:  # weeks without rows yield no chunk
            if not self.path(week).is_dir():
                self.build(week, iter(()), bar)
        bar.close()

    def load(self, week: Path, mapped: bool = False) -> WeekAggregate:
        return WeekAggregate.load(self.path(week), lazy=("user_author_views",), mapped=mapped)

    def build(self, week: Path, chunks: Iterable[WeekBatch], bar=None) -> None:
        """The aggregate of `week` from its `chunks` (none: an empty week), saved in place of stale ones."""
        aggregate = aggregate_week(
            week,
            self.catalog,
            self.positive_flags,
            self.settings,
            self.kinds,
            self.spaces,
            bar=bar,
            chunks=chunks,
        )
        aggregate.save(self.path(week))
        self.drop_stale(week)

    def drop_stale(self, week: Path) -> None:
        """Remove the aggregates of `week` built under another key (an older file or code)."""
        target = self.path(week)
        for stale in self.folder.glob(f"{week_name(week)}-*"):
            if stale != target and stale.is_dir() and unheld(_lock_of(stale)):  # held: swept another time
                shutil.rmtree(stale, ignore_errors=True)
                _lock_of(stale).unlink(missing_ok=True)


def _lock_of(entry: Path) -> Path:
    return entry.with_name(f".{entry.name}.lock")


def week_name(week: Path) -> str:
    week = data_path(week)
    return f"{week.parent.name}-{week.stem}"


def combine(
    weeks: Iterable[tuple[WeekAggregate, int, float]],
    catalog: Catalog,
    settings: ProfileSettings,
    progress: bool = True,
    shard: UserShard | None = None,
) -> FitData:
    """FitData of a split from its weeks' aggregates: (aggregate, week age (0 = last fit week), sign) each;
    sign -1 subtracts (the rows of pseudo-new clips). The aggregates' other spaces give the profiles
    '<space>_<kind>' (not recency-weighted). `shard`: only these users' state (their rows of every
    aggregate, a contiguous slice each), local user index u - shard.start; the clip-side counts stay whole.
    The shards' FitData are the unsharded one's rows (and item_user_positives' columns), bit for bit."""
    shard = UserShard(0, catalog.n_users) if shard is None else shard
    n_users, n_items = len(shard), catalog.n_items
    user_views = np.zeros(n_users, dtype=np.int64)
    user_positives = np.zeros(n_users, dtype=np.int64)
    item_views = np.zeros(n_items, dtype=np.int64)
    item_positives = np.zeros(n_items, dtype=np.int64)
    shapes = {
        "user_author_views": (n_users, len(catalog.authors)),
        "user_author_positives": (n_users, len(catalog.authors)),
        "user_item_positives": (n_users, n_items),
    }
    history = {name: sparse.csr_matrix(shape, dtype=np.float32) for name, shape in shapes.items()}
    key_maps = {"user_author_views": catalog.authors, "user_author_positives": catalog.authors}
    key_maps["user_item_positives"] = catalog.items
    profile_sums = _ProfileSums(n_users)
    author_weeks: list[WeekPairs] = []
    for aggregate, age, sign in progress_report.iterate(weeks, "combine weeks", "part", enabled=progress):
        recency = recency_weight(age, settings)
        dense = catalog.users.index(aggregate.users, "week aggregate", "users")
        if dense.size > 1 and np.any(np.diff(dense) <= 0):
            raise DataError(
                f"the week aggregate {age} weeks before the split's last fit week: its users are not in the "
                "run's index order (made by older code, or the metadata was rewritten?)"
            )
        mine = shard.rows_of(dense)  # the shard's rows: one slice (an aggregate's users are in index order)
        all_users = dense - shard.start
        users = all_users[mine]
        items = catalog.items.index(aggregate.items, "week aggregate", "items")
        user_views[users] += int(sign) * aggregate.user_views[mine]
        user_positives[users] += int(sign) * aggregate.user_positives[mine]
        item_views[items] += int(sign) * aggregate.item_views
        item_positives[items] += int(sign) * aggregate.item_positives
        for kind in settings.kinds:
            factor = 1.0 if KIND[kind].code >= 0 else recency  # a derived kind: its base, recency-weighted
            base = aggregate.kinds.index(KIND[kind].base)
            sums, totals = aggregate.sums[base][mine], aggregate.totals[base][mine]
            profile_sums.add(kind, users, sums, totals, sign * factor)
        for prefix, space in aggregate.spaces.items():
            for k, kind in enumerate(SPACE_KINDS):
                profile_sums.add(f"{prefix}_{kind}", users, space.sums[k][mine], space.totals[k][mine], sign)
        for name, (indptr, keys, data) in aggregate.histories.items():
            if name == "user_author_views":  # combined by blocks of users below (profiles/author_views.py)
                # every row, indices shifted: the blocks read only the shard's [0, n_users)
                author_weeks.append(WeekPairs(all_users, indptr, keys, data, sign * recency))
                continue
            first, last = int(indptr[mine.start]), int(indptr[mine.stop])
            indptr, keys, data = indptr[mine.start : mine.stop + 1], keys[first:last], data[first:last]
            rows = np.repeat(users, np.diff(indptr))
            cols = key_maps[name].index(keys, "week aggregate", f"{name} keys")
            history[name] = history[name] + sparse.csr_matrix(
                ((sign * recency) * data, (rows, cols)), shape=shapes[name], dtype=np.float32
            )
    for matrix in history.values():
        matrix.eliminate_zeros()
        matrix.sort_indices()
    history["user_author_views"] = combine_author_views(
        author_weeks, catalog.authors, n_users, history["user_author_positives"], settings.max_user_authors
    )
    item_users = history["user_item_positives"].T.tocsr()
    item_users.sort_indices()
    histories = {name: history[name] for name in ("user_author_views", "user_author_positives")}
    histories["item_user_positives"] = item_users
    sums, totals = profile_sums.result(user_views)
    profiles = normalised_profiles(sums, totals)
    return FitData(user_views, user_positives, item_views, item_positives, profiles, totals, histories)


class _ProfileSums:
    """float64 per-user sums of weighted embeddings and of weights, per profile; subtracted rows (pseudo-new
    clips) can leave rounding residue, so a weight below 1e-9 of what was added and removed counts as zero."""

    def __init__(self, n_users: int):
        self.n_users = n_users
        self.sums: dict[str, np.ndarray] = {}
        self.totals: dict[str, np.ndarray] = {}
        self.moved: dict[str, np.ndarray] = {}

    def add(self, name: str, users: np.ndarray, sums: np.ndarray, totals: np.ndarray, factor: float) -> None:
        """Add `factor` x one week's (n_u, d) `sums` and (n_u,) `totals` of `users` to profile `name`."""
        if name not in self.sums:
            self.sums[name] = np.zeros((self.n_users, sums.shape[1]))
            self.totals[name] = np.zeros(self.n_users)
            self.moved[name] = np.zeros(self.n_users)
        self.sums[name][users] += factor * sums.astype(np.float64)
        self.totals[name][users] += factor * totals
        self.moved[name][users] += abs(factor) * np.abs(totals)

    def result(self, user_views: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        for name, total in self.totals.items():
            empty = (total <= 1e-9 * self.moved[name]) | (user_views <= 0)
            total[empty] = 0.0
            self.sums[name][empty] = 0.0
        return self.sums, self.totals


class LocalAggregation:
    """The weekly passes in this process: builds the store's missing aggregates and streams uncached ones.
    The engines (engine/) offer the same two calls; the Dask engine runs them as tasks."""

    def build_aggregates(self, store: AggregateStore, weeks: Sequence[Path], progress: bool = True) -> None:
        store.build_missing(weeks, progress)

    def aggregate_weeks(
        self,
        weeks: Sequence[Path],
        catalog: Catalog,
        positive_flags: Sequence[str],
        settings: ProfileSettings,
        bar=None,
        **options,
    ) -> Iterator[WeekAggregate]:
        """Uncached aggregates of `weeks` (aggregate_week's `options`), one week at a time."""
        for week in weeks:
            yield aggregate_week(week, catalog, positive_flags, settings, bar=bar, **options)


def fit_from_aggregates(
    store: AggregateStore,
    weeks: Sequence[Path],
    hidden_items: np.ndarray | None = None,
    progress: bool = True,
    engine: LocalAggregation | None = None,
    shard: UserShard | None = None,
) -> FitData:
    """What `build_fit_data` computes, from the cached weekly aggregates (one in memory at a time), with the
    soft-cluster profiles ('gmm_all', 'gmm_positive') of the store's mixture when it has one: the
    pseudo-new clips' (`hidden_items`, bool per clip) rows subtracted by one filtered read of the weeks.
    `engine` builds the missing aggregates and runs the filtered read (LocalAggregation, or an engine of
    engine/ with its two calls); default this process. `shard`: only these users' state (`combine`)."""
    engine = LocalAggregation() if engine is None else engine
    weeks = [data_path(w) for w in weeks]
    with store.reading(weeks):
        with store.building():
            engine.build_aggregates(store, weeks, progress)
        return _combine_weeks(store, weeks, hidden_items, progress, engine, shard)


def build_aggregates(
    store: AggregateStore,
    weeks: Sequence[Path],
    progress: bool = True,
    engine: LocalAggregation | None = None,
) -> None:
    """The weeks' missing aggregates built into the store (by `engine`, default this process), as
    `fit_from_aggregates` builds them first: for passes that combine them elsewhere (user shards' workers)."""
    engine = LocalAggregation() if engine is None else engine
    weeks = [data_path(w) for w in weeks]
    with store.reading(weeks), store.building():
        engine.build_aggregates(store, weeks, progress)


def _combine_weeks(
    store: AggregateStore,
    weeks: list[Path],
    hidden_items: np.ndarray | None,
    progress: bool,
    engine: LocalAggregation,
    shard: UserShard | None,
) -> FitData:
    """fit_from_aggregates once the weeks' aggregates are built and held."""
    rows = count_rows(weeks)
    if weeks and rows == 0:
        raise DataError(f"{weeks[0].parent}: every week file is empty (expected interactions)")
    hide = hidden_items is not None and bool(hidden_items.any())
    bar = progress_report.bar("hidden clips", rows if hide else 0, "rows", enabled=progress and hide)
    # the pseudo-new clips' rows, read week by week as the combination reaches them
    hidden = (
        engine.aggregate_weeks(
            weeks,
            store.catalog,
            store.positive_flags,
            store.settings,
            bar=bar,
            kinds=store.kinds,
            spaces=store.spaces,
            rows_of=hidden_items,
        )
        if hide
        else iter([None] * len(weeks))
    )

    def entries() -> Iterator[tuple[WeekAggregate, int, float]]:
        for k, (week, subtracted) in enumerate(zip(weeks, hidden, strict=True)):
            aggregate = store.load(week, mapped=shard is not None)
            if aggregate.rows == 0:
                log.warning("%s: week has no rows; skipped", week)
            yield aggregate, len(weeks) - 1 - k, 1.0
            if subtracted is not None:
                yield subtracted, len(weeks) - 1 - k, -1.0

    fit = combine(entries(), store.catalog, store.settings, progress, shard)
    bar.close()
    return fit
