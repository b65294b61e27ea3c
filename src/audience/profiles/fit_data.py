"""One streamed pass over the fit weeks: user/clip activity counts and averaged clip-embedding profiles.

Each week is read alone (only the columns needed), turned into a sparse user x clip weight matrix and
multiplied by the clip embedding matrix, so memory is O(n_users x dim + one week), whatever the number of
weeks. A profile is the weighted mean embedding of the clips a user watched, L2-normalised for cosine search.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from audience import progress as progress_report
from audience.config import ProfileSettings
from audience.data.catalog import Catalog
from audience.data.location import data_path
from audience.data.weeks import DEFAULT_CHUNK_ROWS, WeekBatch, count_rows, iter_weeks
from audience.io import atomic_path
from audience.profiles.author_views import prune_author_views
from audience.profiles.gmm import GmmModel


@dataclass
class RowContext:
    """What a profile weight may look at for each row of a chunk."""

    batch: WeekBatch
    positive: np.ndarray  # bool: any positive flag
    duration: np.ndarray  # float32 seconds of the row's clip (>= 1)
    week_age: int  # 0 for the last fit week, 1 for the one before, ...
    settings: ProfileSettings


def _all_views(ctx: RowContext) -> np.ndarray:
    return np.ones(len(ctx.batch), dtype=np.float32)


def _positive_views(ctx: RowContext) -> np.ndarray:
    weight = np.zeros(len(ctx.batch), dtype=np.float32)
    for flag, value in ctx.settings.flag_weights.items():
        weight += np.float32(value) * ctx.batch.columns[flag]
    return weight


def _negative_views(ctx: RowContext) -> np.ndarray:
    """Dislikes and skips (watched less than `skip_share` of the clip) that carry no positive flag."""
    timespent = ctx.batch.columns["timespent"].astype(np.float32)
    skip = timespent < ctx.settings.skip_share * ctx.duration
    return ((ctx.batch.columns["dislike"] | skip) & ~ctx.positive).astype(np.float32)


def _timespent_views(ctx: RowContext) -> np.ndarray:
    """Share of the clip watched, capped (rewatches can exceed 1)."""
    share = ctx.batch.columns["timespent"].astype(np.float32) / ctx.duration
    return np.minimum(share, np.float32(ctx.settings.watch_cap))


def _recent_views(ctx: RowContext) -> np.ndarray:
    """Every view, halving in weight every `recency_half_life` weeks back from the last fit week."""
    weight = 0.5 ** (ctx.week_age / ctx.settings.recency_half_life)
    return np.full(len(ctx.batch), weight, dtype=np.float32)


PROFILE_WEIGHTS: dict[str, Callable[[RowContext], np.ndarray]] = {
    "all": _all_views,
    "positive": _positive_views,
    "negative": _negative_views,
    "timespent": _timespent_views,
    "recency": _recent_views,
}


def profile_columns(settings: ProfileSettings, positive_flags: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*positive_flags, *settings.flag_weights, "dislike", "timespent")))


@dataclass
class FitData:
    """What the generators learn from: counts, mean-embedding profiles and recency-weighted sparse histories.

    Sparse histories (recency-weighted with the profiles' half-life, so last week counts 1):
    user_author_views / user_author_positives: (n_users, n_authors) CSR, views and positives per author;
    item_user_positives: (n_items, n_users) CSR, who engaged with each clip. Their size is bounded by the
    distinct (user, author) and positive (clip, user) pairs, not by the number of interactions."""

    user_views: np.ndarray  # int64 (n_users,)
    user_positives: np.ndarray  # int64 (n_users,)
    item_views: np.ndarray  # int64 (n_items,)
    item_positives: np.ndarray  # int64 (n_items,)
    profiles: dict[str, np.ndarray] = field(default_factory=dict)  # name -> float32 (n_users, dim), unit rows
    profile_weight: dict[str, np.ndarray] = field(default_factory=dict)  # name -> float64 (n_users,)
    histories: dict[str, sparse.csr_matrix] = field(default_factory=dict)
    gmm: GmmModel | None = None  # the soft-cluster mixture, when one was fitted (saved beside as .gmm.npz)

    @property
    def n_users(self) -> int:
        return int(self.user_views.shape[0])

    def save(self, path: Path) -> None:
        arrays = {
            "user_views": self.user_views,
            "user_positives": self.user_positives,
            "item_views": self.item_views,
            "item_positives": self.item_positives,
        }
        for name in self.profiles:
            arrays[f"profile__{name}"] = self.profiles[name]
            arrays[f"weight__{name}"] = self.profile_weight[name]
        for name, matrix in self.histories.items():
            for part in ("data", "indices", "indptr"):
                arrays[f"sparse__{name}__{part}"] = getattr(matrix, part)
            arrays[f"sparse__{name}__shape"] = np.asarray(matrix.shape)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        if self.gmm is not None:
            self.gmm.save(Path(path).with_suffix(".gmm.npz"))

    @classmethod
    def load(cls, path: Path) -> FitData:
        with np.load(path) as npz:
            profiles = {k.split("__", 1)[1]: npz[k] for k in npz.files if k.startswith("profile__")}
            weights = {k.split("__", 1)[1]: npz[k] for k in npz.files if k.startswith("weight__")}
            names = {k.split("__")[1] for k in npz.files if k.startswith("sparse__")}
            matrices = {
                name: sparse.csr_matrix(
                    tuple(npz[f"sparse__{name}__{p}"] for p in ("data", "indices", "indptr")),
                    shape=tuple(npz[f"sparse__{name}__shape"]),
                )
                for name in names
            }
            gmm_path = Path(path).with_suffix(".gmm.npz")
            gmm = GmmModel.load(gmm_path) if gmm_path.is_file() else None
            return cls(
                npz["user_views"],
                npz["user_positives"],
                npz["item_views"],
                npz["item_positives"],
                profiles,
                weights,
                matrices,
                gmm,
            )


def without_items(batch: WeekBatch, hidden: np.ndarray | None) -> WeekBatch:
    """The chunk without the rows of hidden clips (`hidden`: bool per clip index; None hides nothing)."""
    if hidden is None:
        return batch
    keep = ~hidden[batch.item]
    if keep.all():
        return batch
    return WeekBatch(
        batch.path, batch.user[keep], batch.item[keep], {k: v[keep] for k, v in batch.columns.items()}
    )


def positive_mask(batch: WeekBatch, flags: Sequence[str]) -> np.ndarray:
    mask = np.zeros(len(batch), dtype=bool)
    for flag in flags:
        mask |= batch.columns[flag]
    return mask


def build_fit_data(
    weeks: Sequence[Path],
    catalog: Catalog,
    positive_flags: Sequence[str],
    settings: ProfileSettings | None = None,
    progress: bool = True,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    posteriors: np.ndarray | None = None,
    hidden_items: np.ndarray | None = None,
) -> FitData:
    """Stream `weeks` once, chunk by chunk, and accumulate counts and profile sums (float64), then normalise.
    Memory: O(n_users x dim + n_items x dim + one chunk).

    `posteriors` (n_items, K), e.g. GMM soft-cluster memberships of every clip, adds soft-cluster profiles
    'gmm_all' and 'gmm_positive': the same weighted means, over posteriors instead of embeddings.

    `hidden_items` (bool, n_items): rows of these clips are dropped from every chunk as it streams, so the
    result is what the weeks would give without them (pseudo-new clips; no copy of the data is written)."""
    settings = settings or ProfileSettings()
    profiles = settings.kinds
    unknown = [p for p in profiles if p not in PROFILE_WEIGHTS]
    if unknown:
        raise ValueError(f"unknown profile type(s) {unknown}; known: {sorted(PROFILE_WEIGHTS)}")
    duration = np.maximum(catalog.item_duration.astype(np.float32), 1.0)
    week_number = {data_path(p): k for k, p in enumerate(weeks)}
    n_users, n_items = catalog.n_users, catalog.n_items
    user_views = np.zeros(n_users, dtype=np.int64)
    user_positives = np.zeros(n_users, dtype=np.int64)
    item_views = np.zeros(n_items, dtype=np.int64)
    item_positives = np.zeros(n_items, dtype=np.int64)
    n_authors = len(catalog.authors)
    history = {
        "user_author_views": sparse.csr_matrix((n_users, n_authors), dtype=np.float32),
        "user_author_positives": sparse.csr_matrix((n_users, n_authors), dtype=np.float32),
        "item_user_positives": sparse.csr_matrix((n_items, n_users), dtype=np.float32),
    }
    spaces = {name: (name, catalog.embedding) for name in profiles}
    if posteriors is not None:
        for kind in ("all", "positive"):
            spaces[f"gmm_{kind}"] = (kind, posteriors.astype(np.float32, copy=False))
    sums = {
        name: np.zeros((n_users, space.shape[1]), dtype=np.float64) for name, (_, space) in spaces.items()
    }
    weights = {name: np.zeros(n_users, dtype=np.float64) for name in spaces}
    has_embedding = catalog.has_embedding.astype(np.float32)
    bar = progress_report.bar("profiles", count_rows(weeks), "rows", enabled=progress)
    columns = profile_columns(settings, positive_flags)
    for batch in iter_weeks(weeks, catalog.users, catalog.items, columns, chunk_rows):
        batch = without_items(batch, hidden_items)
        positive = positive_mask(batch, positive_flags)
        ctx = RowContext(
            batch, positive, duration[batch.item], len(weeks) - 1 - week_number[batch.path], settings
        )
        user_views += np.bincount(batch.user, minlength=n_users)
        user_positives += np.bincount(batch.user, weights=positive, minlength=n_users).astype(np.int64)
        item_views += np.bincount(batch.item, minlength=n_items)
        item_positives += np.bincount(batch.item, weights=positive, minlength=n_items).astype(np.int64)
        author = catalog.item_author[batch.item]
        views = _recent_views(ctx)  # every view of this week, recency-weighted
        history["user_author_views"] += sparse.csr_matrix(
            (views, (batch.user, author)), shape=(n_users, n_authors)
        )
        pos = np.flatnonzero(positive)
        history["user_author_positives"] += sparse.csr_matrix(
            (views[pos], (batch.user[pos], author[pos])), shape=(n_users, n_authors)
        )
        history["item_user_positives"] += sparse.csr_matrix(
            (views[pos], (batch.item[pos], batch.user[pos])), shape=(n_items, n_users)
        )
        usable = has_embedding[batch.item]
        for kind in profiles:
            w = PROFILE_WEIGHTS[kind](ctx) * usable
            rows = np.flatnonzero(w)  # only weighted rows enter the sparse product (positives are few)
            matrix = sparse.csr_matrix(
                (w[rows], (batch.user[rows], batch.item[rows])), shape=(n_users, n_items)
            )
            user_weight = np.bincount(batch.user[rows], weights=w[rows], minlength=n_users)
            for name, (space_kind, space) in spaces.items():
                if space_kind == kind:
                    sums[name] += matrix @ space
                    weights[name] += user_weight
        bar.update(len(batch))
    bar.close()
    for matrix in history.values():
        matrix.sum_duplicates()
        matrix.sort_indices()
    history["user_author_views"] = prune_author_views(
        history["user_author_views"], history["user_author_positives"], settings.max_user_authors
    )
    profiles = normalised_profiles(sums, weights)
    return FitData(user_views, user_positives, item_views, item_positives, profiles, weights, history)


def normalised_profiles(sums: dict[str, np.ndarray], weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weighted means (sum / weight per user), L2-normalised, float32; zero rows where a user has none."""
    normalised = {}
    for name, total in sums.items():
        mean = total / np.maximum(weights[name], 1e-12)[:, None]
        norm = np.linalg.norm(mean, axis=1, keepdims=True)
        normalised[name] = np.where(norm > 0, mean / np.maximum(norm, 1e-12), 0.0).astype(np.float32)
    return normalised
