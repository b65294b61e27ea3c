"""Offline metrics of the VK RecSys Challenge: NDCG@100 per clip, candidate recall, positives of a week, and
the NDCG and recall of a merged candidate list on a labelled pool (`pool_ndcg`, `pool_recall`).

The challenge metric, as implemented here:

* every target clip gets an ordered list of users; the gain of rank ``r`` (1-based) is ``1/log2(r + 1)`` when
  the user is relevant (binary relevance) and 0 otherwise; only the first ``k`` positions count;
* the ideal DCG of a clip with ``n`` relevant users is the DCG of hits at ranks ``1..min(n, k)``;
* NDCG = DCG / IDCG per clip, averaged over the clips that have at least one relevant user.

Keys: a relevant pair is joined on the single ``uint64`` key ``item_id << 32 | user_id``; the truth keys are
sorted once (numpy's SIMD sort) and every predicted clip looks its users up inside its own small slice of the
sorted keys (numba), so no hash join of millions of rows is needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numba as nb
import numpy as np
import polars as pl

from audience.data.location import scan_parquet
from audience.data.schema import INTERACTIONS_SCHEMA, check_schema
from audience.errors import DataError

__all__ = ["discount_table", "mean_ndcg", "ndcg_per_clip", "positives", "recall_at_depth", "truth_positives"]

_HIGH = np.uint64(32)
_LOW_MASK = np.uint64(0xFFFFFFFF)


def discount_table(k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(disc, ideal)``: ``disc[r] = 1/log2(r + 1)`` for ranks ``r = 1..k`` (``disc[0] = 0``) and
    ``ideal[n] = disc[1] + ... + disc[n]`` for ``n = 0..k`` (the IDCG of a clip with ``n`` relevant users)."""
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    disc = np.zeros(k + 1, dtype=np.float64)
    disc[1:] = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    return disc, np.cumsum(disc)


def _pair_keys(item: np.ndarray, user: np.ndarray) -> np.ndarray:
    return (item.astype(np.uint64) << _HIGH) | user.astype(np.uint64)


def sorted_pair_keys(item: np.ndarray, user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, order): the distinct (item, user) pairs' uint64 keys sorted, and the order that sorts the
    pairs (keys = key of pair order[i]); what `pair_positions` searches. Ids must fit 32 bits."""
    keys = _pair_keys(np.asarray(item), np.asarray(user))
    order = np.argsort(keys, kind="stable")
    return keys[order], order


def pair_positions(item: np.ndarray, user: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Position of each (item, user) pair in `sorted_keys` (`sorted_pair_keys`, each pair once), or -1; pairs
    grouped by item search only their item's slice (`_lookup_kernel`)."""
    return _lookup_kernel(_pair_keys(np.asarray(item), np.asarray(user)), sorted_keys)


def _id_column(frame: pl.DataFrame, name: str, what: str) -> np.ndarray:
    """Column `name` of `frame` as a uint32 numpy array; a ValueError naming `what` on nulls or bad dtype."""
    if name not in frame.columns:
        raise ValueError(f"{what}: missing column {name!r} (found {frame.columns})")
    column = frame.get_column(name)
    if not column.dtype.is_integer():
        raise ValueError(f"{what}: column {name!r} must be an integer id column (found {column.dtype})")
    if column.has_nulls():
        raise ValueError(f"{what}: column {name!r} has {column.null_count()} null(s)")
    try:
        column = column.cast(pl.UInt32, strict=True)
    except Exception as exc:  # negative or > 2**32 - 1
        raise ValueError(f"{what}: column {name!r} does not fit UInt32 ({exc})") from exc
    return column.to_numpy()


def _sorted_truth_keys(truth: pl.DataFrame) -> np.ndarray:
    """Distinct relevant pairs of `truth` as sorted unique uint64 keys ``item << 32 | user``."""
    keys = np.sort(_pair_keys(_id_column(truth, "item_id", "truth"), _id_column(truth, "user_id", "truth")))
    if keys.size > 1:
        keep = np.empty(keys.size, dtype=np.bool_)
        keep[0] = True
        np.not_equal(keys[1:], keys[:-1], out=keep[1:])
        keys = keys[keep]
    return keys


def _clip_slices(keys: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each clip id in `items`, the slice ``[lo, hi)`` of the sorted pair keys that belong to it."""
    order = np.argsort(items, kind="stable")  # sorted queries walk the keys in order: far fewer cache misses
    start = items[order].astype(np.uint64) << _HIGH
    lo = np.empty(items.size, dtype=np.int64)
    hi = np.empty(items.size, dtype=np.int64)
    lo[order] = np.searchsorted(keys, start, side="left")
    hi[order] = np.searchsorted(keys, start | _LOW_MASK, side="right")
    return lo, hi


def _flatten_lists(predictions: pl.DataFrame, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users uint32, valid bool, offsets int64) of the first `k` entries of each list (null list = empty)."""
    if "user_id" not in predictions.columns:
        raise ValueError(f"predictions: missing column 'user_id' (found {predictions.columns})")
    lists = predictions.get_column("user_id")
    if isinstance(lists.dtype, pl.Array):
        lists = lists.cast(pl.List(lists.dtype.inner))
    if not isinstance(lists.dtype, pl.List) or not lists.dtype.inner.is_integer():
        raise ValueError(f"predictions: column 'user_id' must be List(UInt32) (found {lists.dtype})")
    lists = lists.list.head(k)
    lengths = lists.list.len().fill_null(0).to_numpy().astype(np.int64)
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = lists.explode(empty_as_null=False, keep_nulls=False)
    valid = flat.is_not_null().to_numpy()
    try:
        users = flat.fill_null(0).cast(pl.UInt32, strict=True).to_numpy()
    except Exception as exc:
        raise ValueError(f"predictions: column 'user_id' has ids that do not fit UInt32 ({exc})") from exc
    return users, valid, offsets


@nb.njit(cache=True, nogil=True)
def _dcg_kernel(users, valid, offsets, item_keys, lo, hi, truth_keys, disc):  # pragma: no cover - numba
    """DCG and hit count of every predicted list. Each list is looked up (binary search) only inside the
    slice of truth keys of its own clip; a user repeated inside one list counts once, at its first rank."""
    n_rows = offsets.size - 1
    dcg = np.zeros(n_rows, dtype=np.float64)
    hits = np.zeros(n_rows, dtype=np.int64)
    last_row = np.full(truth_keys.size, -1, dtype=np.int64)
    for row in range(n_rows):
        a = lo[row]
        b = hi[row]
        if a == b:
            continue
        total = 0.0
        count = 0
        for pos in range(offsets[row], offsets[row + 1]):
            if not valid[pos]:
                continue
            key = item_keys[row] | np.uint64(users[pos])
            left = a
            right = b
            while left < right:
                mid = (left + right) >> 1
                if truth_keys[mid] < key:
                    left = mid + 1
                else:
                    right = mid
            if left < b and truth_keys[left] == key and last_row[left] != row:
                last_row[left] = row
                total += disc[pos - offsets[row] + 1]
                count += 1
        dcg[row] = total
        hits[row] = count
    return dcg, hits


@nb.njit(cache=True, nogil=True)
def _lookup_kernel(query_keys, truth_keys):  # pragma: no cover - numba
    """Position of every query key in the sorted unique `truth_keys`, or -1. Queries of one clip that come
    one after the other share the clip's slice of truth keys, so clip-grouped queries search tiny ranges."""
    n = truth_keys.size
    out = np.full(query_keys.size, -1, dtype=np.int64)
    high = np.uint64(0xFFFFFFFF00000000)
    low = np.uint64(0xFFFFFFFF)
    have = False
    prev = np.uint64(0)
    a = 0
    b = 0
    for i in range(query_keys.size):
        key = query_keys[i]
        start = key & high
        if not have or start != prev:
            have = True
            prev = start
            left = 0
            right = n
            while left < right:
                mid = (left + right) >> 1
                if truth_keys[mid] < start:
                    left = mid + 1
                else:
                    right = mid
            a = left
            stop = start | low
            right = n
            while left < right:
                mid = (left + right) >> 1
                if truth_keys[mid] <= stop:
                    left = mid + 1
                else:
                    right = mid
            b = left
        left = a
        right = b
        while left < right:
            mid = (left + right) >> 1
            if truth_keys[mid] < key:
                left = mid + 1
            else:
                right = mid
        if left < b and truth_keys[left] == key:
            out[i] = left
    return out


def ndcg_per_clip(predictions: pl.DataFrame, truth: pl.DataFrame, k: int = 100) -> pl.DataFrame:
    """NDCG@k of every clip that has at least one relevant user.

    predictions: one row per clip, ``item_id`` (UInt32) and ``user_id`` (List(UInt32), or Array, in rank
    order). Lists may be shorter than `k` (missing positions earn nothing) or longer (only the first `k`
    count). A null list counts as empty; a null entry occupies its rank and earns nothing. A user repeated
    inside one list counts once, at its first (best) rank; the later copies occupy their ranks and earn
    nothing (the submission validator rejects such lists; the metric does not raise). A clip that appears
    twice in `predictions` raises ValueError.

    truth: one row per relevant (``item_id``, ``user_id``) pair; duplicate pairs are counted once. The clips
    of `truth` are the evaluated clips: restrict it to the target clips first.

    Returns one row per clip of `truth` (every such clip has >= 1 relevant user), sorted by ``item_id``:
    ``item_id`` (UInt32), ``ndcg`` (Float64), ``hits`` (UInt32: relevant users among the first `k` ranks)
    and ``n_relevant`` (UInt32: distinct relevant users, before the cut at `k`). A clip of `truth` that is
    absent from `predictions` gets ``ndcg = 0`` and ``hits = 0``: the challenge scores every target clip
    that has positives, so a missing list costs the full clip. Predicted clips without relevant users are
    left out (they are not in the challenge average).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    pred_items = _id_column(predictions, "item_id", "predictions")
    if np.unique(pred_items).size != pred_items.size:
        raise ValueError("predictions: column 'item_id' has duplicate clips (expected one list per clip)")
    users, valid, offsets = _flatten_lists(predictions, k)
    truth_keys = _sorted_truth_keys(truth)
    disc, ideal = discount_table(k)

    lo, hi = _clip_slices(truth_keys, pred_items)
    item_keys = pred_items.astype(np.uint64) << _HIGH
    dcg, hits = _dcg_kernel(users, valid, offsets, item_keys, lo, hi, truth_keys, disc)
    n_rel = hi - lo

    # every clip of truth with its number of distinct relevant users
    truth_items = (truth_keys >> _HIGH).astype(np.uint32)
    if truth_items.size:
        starts = np.flatnonzero(np.r_[True, truth_items[1:] != truth_items[:-1]])
        all_items = truth_items[starts]
        all_counts = np.diff(np.r_[starts, truth_items.size])
    else:
        all_items = np.zeros(0, dtype=np.uint32)
        all_counts = np.zeros(0, dtype=np.int64)
    missing = ~np.isin(all_items, pred_items, assume_unique=True)

    scored = n_rel > 0
    item_out = np.concatenate([pred_items[scored], all_items[missing]])
    rel_out = np.concatenate([n_rel[scored], all_counts[missing]])
    hits_out = np.concatenate([hits[scored], np.zeros(int(missing.sum()), dtype=np.int64)])
    dcg_out = np.concatenate([dcg[scored], np.zeros(int(missing.sum()), dtype=np.float64)])
    ndcg_out = dcg_out / ideal[np.minimum(rel_out, k)] if rel_out.size else dcg_out
    order = np.argsort(item_out, kind="stable")
    return pl.DataFrame(
        {
            "item_id": pl.Series(item_out[order], dtype=pl.UInt32),
            "ndcg": pl.Series(ndcg_out[order], dtype=pl.Float64),
            "hits": pl.Series(hits_out[order], dtype=pl.UInt32),
            "n_relevant": pl.Series(rel_out[order], dtype=pl.UInt32),
        }
    )


def mean_ndcg(predictions: pl.DataFrame, truth: pl.DataFrame, k: int = 100) -> float:
    """The challenge score: mean NDCG@k over the clips of `truth` (see `ndcg_per_clip`; clips missing from
    `predictions` count as 0). Returns ``nan`` when `truth` has no relevant pair (no clip to average)."""
    per_clip = ndcg_per_clip(predictions, truth, k)
    if per_clip.height == 0:
        return math.nan
    return float(per_clip.get_column("ndcg").mean())


def _target_ids(targets: np.ndarray | pl.Series | Sequence[int]) -> np.ndarray:
    series = targets if isinstance(targets, pl.Series) else pl.Series(np.asarray(targets))
    if series.has_nulls():
        raise ValueError("targets: null clip id")
    try:
        return np.unique(series.cast(pl.UInt32, strict=True).to_numpy())
    except Exception as exc:
        raise ValueError(f"targets: clip ids must fit UInt32 ({exc})") from exc


def recall_at_depth(
    candidates: pl.DataFrame | Iterable[pl.DataFrame],
    truth: pl.DataFrame,
    depths: Sequence[int],
    targets: np.ndarray | pl.Series | None = None,
) -> dict[int, float]:
    """Micro-averaged candidate recall: for each depth ``d``, the share of relevant (clip, user) pairs that
    appear in `candidates` with ``rank <= d``.

    candidates: ``item_id``, ``user_id``, ``rank`` (1-based; a pair listed twice counts at its best rank),
    as one frame or as parts read one at a time (a union of pools, a pool by blocks): the recall of their
    concatenation, holding one part at a time.
    truth: relevant pairs (duplicates counted once). The denominator is every distinct truth pair of the
    evaluated clips: `targets` when given, else the clips present in `candidates` (so a target clip with no
    candidates at all is only penalised when `targets` is passed). Micro-average: clips with many positives
    weigh more. Returns ``{d: recall}`` (``nan`` for every depth when there is no truth pair to recover).
    """
    depth_list = [int(d) for d in depths]
    if any(d < 1 for d in depth_list):
        raise ValueError(f"depths must be >= 1 (got {depth_list})")
    truth_keys = _sorted_truth_keys(truth)
    best = np.full(truth_keys.size, np.iinfo(np.int64).max, dtype=np.int64)
    seen_items = []
    for part in [candidates] if isinstance(candidates, pl.DataFrame) else candidates:
        cand_items = _id_column(part, "item_id", "candidates")
        cand_users = _id_column(part, "user_id", "candidates")
        ranks = _rank_column(part)
        if targets is None:
            seen_items.append(np.unique(cand_items))
        pos = pair_positions(cand_items, cand_users, truth_keys)
        is_hit = pos >= 0
        np.minimum.at(best, pos[is_hit], ranks[is_hit])
    if targets is not None:
        scope = _target_ids(targets)
    else:
        scope = np.unique(np.concatenate(seen_items)) if seen_items else np.zeros(0, np.uint32)
    in_scope = np.isin((truth_keys >> _HIGH).astype(np.uint32), scope)
    if not in_scope.any():
        return {d: math.nan for d in depth_list}
    best = best[in_scope]
    found = np.sort(best[best != np.iinfo(np.int64).max])
    total = float(best.size)
    return {d: float(np.searchsorted(found, d, side="right")) / total for d in depth_list}


def _rank_column(candidates: pl.DataFrame) -> np.ndarray:
    """The candidates' 1-based ``rank`` column as int64, checked."""
    if "rank" not in candidates.columns:
        raise ValueError(f"candidates: missing column 'rank' (found {candidates.columns})")
    rank_col = candidates.get_column("rank")
    if rank_col.has_nulls() or not rank_col.dtype.is_integer():
        raise ValueError(
            f"candidates: column 'rank' must be a non-null integer column (found {rank_col.dtype})"
        )
    ranks = rank_col.cast(pl.Int64).to_numpy()
    if ranks.size and int(ranks.min()) < 1:
        raise ValueError(f"candidates: column 'rank' must be 1-based (found {int(ranks.min())})")
    return ranks


def positives(week: pl.LazyFrame | pl.DataFrame, flags: Sequence[str]) -> pl.DataFrame:
    """Distinct (``item_id``, ``user_id``) pairs of `week` where any of `flags` is true, sorted by item then
    user (UInt32 both). A null flag counts as false. Raises DataError naming a missing or non-boolean flag."""
    flag_list = list(flags)
    if not flag_list:
        raise ValueError("positives: at least one flag is needed")
    lazy = week.lazy()
    schema = lazy.collect_schema()
    for column in ("item_id", "user_id", *flag_list):
        if column not in schema:
            raise DataError(f"interactions: missing column {column!r} (found {list(schema)})")
    for flag in flag_list:
        if schema[flag] != pl.Boolean:
            raise DataError(f"interactions: column {flag!r} has dtype {schema[flag]}, expected Boolean")
    pairs = (
        lazy.filter(pl.any_horizontal([pl.col(f).fill_null(False) for f in flag_list]))
        .select(pl.col("item_id").cast(pl.UInt32), pl.col("user_id").cast(pl.UInt32))
        .collect()
    )
    keys = _sorted_truth_keys(pairs)
    return pl.DataFrame(
        {
            "item_id": pl.Series((keys >> _HIGH).astype(np.uint32), dtype=pl.UInt32),
            "user_id": pl.Series((keys & _LOW_MASK).astype(np.uint32), dtype=pl.UInt32),
        }
    )


def truth_positives(path: Path, flags: tuple[str, ...], target_ids: np.ndarray) -> pl.DataFrame:
    """Distinct (item_id, user_id) positives of the truth week for the target clips, on external ids (so a
    truth-week user or clip missing from the metadata cannot stop the scoring)."""
    check_schema(path, INTERACTIONS_SCHEMA, ("user_id", "item_id", *flags))
    targets = pl.Series(target_ids, dtype=pl.UInt32).implode()
    return positives(scan_parquet(path).filter(pl.col("item_id").is_in(targets)), flags)


def pool_ndcg(merged: pl.DataFrame, labels: pl.DataFrame, k: int) -> float:
    """Mean NDCG@k over clips with a labelled positive, IDCG from the positives present in `labels` (the
    labelled pool): the objective the quota search maximises on holdout weeks."""
    positives = labels.filter(pl.col("label") > 0).select("clip", "user").unique()
    per_clip_pos = positives.group_by("clip").len("n_pos")
    hits = merged.filter(pl.col("rank") <= k).join(positives, on=["clip", "user"])
    dcg = hits.group_by("clip").agg((1.0 / (pl.col("rank") + 1).cast(pl.Float64).log(2)).sum().alias("dcg"))
    _, ideal = discount_table(k)
    table = per_clip_pos.join(dcg, on="clip", how="left").with_columns(pl.col("dcg").fill_null(0.0))
    idcg = ideal[np.minimum(table["n_pos"].to_numpy(), k)]
    return float(np.mean(table["dcg"].to_numpy() / idcg)) if table.height else 0.0


def pool_recall(merged: pl.DataFrame, labels: pl.DataFrame, k: int) -> float:
    """Mean over clips with a labelled positive of the share of its positives among the merge's first `k`
    users: how well a budget of `k` candidates is spent when a reranker orders them afterwards."""
    positives = labels.filter(pl.col("label") > 0).select("clip", "user").unique()
    per_clip_pos = positives.group_by("clip").len("n_pos")
    hits = (
        merged.filter(pl.col("rank") <= k).join(positives, on=["clip", "user"]).group_by("clip").len("hits")
    )
    table = per_clip_pos.join(hits, on="clip", how="left").with_columns(pl.col("hits").fill_null(0))
    return float((table["hits"] / table["n_pos"]).mean()) if table.height else 0.0


def novelty_at_k(recommended: np.ndarray, item_popularity: np.ndarray, k: int) -> float:
    """User -> clips novelty: mean self-information -log2(share of all interactions) of the top-k clips
    recommended (rows = users, -1 padding ignored). Higher = less popular clips. Vectorized."""
    top = np.asarray(recommended)[:, :k]
    valid = top >= 0
    if not valid.any():
        return float("nan")
    share = np.asarray(item_popularity, dtype=np.float64) / max(float(np.sum(item_popularity)), 1.0)
    info = -np.log2(np.maximum(share[top[valid]], 1e-12))
    return float(info.mean())


def diversity_at_k(recommended: np.ndarray, item_group: np.ndarray, k: int) -> float:
    """User -> clips diversity: per user, distinct groups (authors, GMM clusters) among the top-k clips over
    the number of clips recommended; averaged over users with at least one clip. Vectorized (row sorts)."""
    top = np.asarray(recommended)[:, :k]
    groups = np.where(top >= 0, np.asarray(item_group)[np.maximum(top, 0)], -1)
    ordered = np.sort(groups, axis=1)
    counts = (ordered >= 0).sum(axis=1)
    new_group = (ordered[:, 1:] != ordered[:, :-1]) & (ordered[:, 1:] >= 0)  # padding -1 sorts first
    distinct = new_group.sum(axis=1) + (ordered[:, 0] >= 0)
    has = counts > 0
    return float((distinct[has] / counts[has]).mean()) if has.any() else float("nan")
