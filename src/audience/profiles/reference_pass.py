"""The reference pass: `build_fit_data` streams the raw weekly files once and builds `FitData` directly,
with scipy sparse products and no weekly cache. It is the slow, simple twin of the week pass
(profiles/aggregates.py), which the pipeline uses; tests compare the two and benchmarks time them.
Memory: O(n_users x dim + n_items x dim + one chunk); time: one sparse product per chunk and kind."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import sparse

from audience import progress as progress_report
from audience.config import ProfileSettings
from audience.data.catalog import Catalog
from audience.data.location import data_path
from audience.data.weeks import DEFAULT_CHUNK_ROWS, WeekBatch, count_rows, iter_weeks
from audience.profiles.author_views import prune_author_views
from audience.profiles.fit_data import FitData, normalised_profiles, without_items
from audience.profiles.kinds import (
    KIND,
    check_kinds,
    flag_tables,
    packed_flags,
    profile_columns,
    recency_weight,
    view_weights,
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
    check_kinds(profiles)
    packed = packed_flags(positive_flags, settings)
    tables = flag_tables(packed, positive_flags, settings)
    skip_share, watch_cap = np.float32(settings.skip_share), np.float32(settings.watch_cap)
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
        week_age = len(weeks) - 1 - week_number[batch.path]
        flags = np.zeros(len(batch), dtype=np.uint8)
        for bit, flag in enumerate(packed):
            flags |= batch.columns[flag].astype(np.uint8) << np.uint8(bit)
        timespent, row_duration = batch.columns["timespent"], duration[batch.item]
        user_views += np.bincount(batch.user, minlength=n_users)
        user_positives += np.bincount(batch.user, weights=positive, minlength=n_users).astype(np.int64)
        item_views += np.bincount(batch.item, minlength=n_items)
        item_positives += np.bincount(batch.item, weights=positive, minlength=n_items).astype(np.int64)
        author = catalog.item_author[batch.item]
        views = np.full(len(batch), recency_weight(week_age, settings), dtype=np.float32)
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
            if KIND[kind].code >= 0:
                w = view_weights(
                    KIND[kind].code, flags, timespent, row_duration, tables, skip_share, watch_cap
                )
            else:  # recency: every view, weighted by its week's age
                w = views.copy()
            w = w * usable
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
