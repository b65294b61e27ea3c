"""User shards: a run's users cut into contiguous ranges of their dense index, so that the per-user state of
a split (profiles, histories, the clip x user positives) can be combined, held and queried one shard at a
time (issue 25: no machine holds every user).

Contiguous ranges, not hashes: the catalog's user index follows the sorted user ids and every weekly
aggregate stores its users in that order, so a shard's rows are one contiguous slice of each aggregate
(read from the memory-mapped arrays without touching the others) and a shard's answers map back to global
user indices by adding its `start`. Shards differ in size by at most one user; their activity is not
balanced (a shard of heavy users costs more)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from audience.profiles.fit_data import FitData


@dataclass(frozen=True)
class UserShard:
    """The users of dense index start <= u < stop; a shard's local index is u - start."""

    start: int
    stop: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.stop:
            raise ValueError(f"a user shard needs 0 <= start <= stop, got [{self.start}, {self.stop})")

    def __len__(self) -> int:
        return self.stop - self.start

    def rows_of(self, users: np.ndarray) -> slice:
        """The rows of `users` (increasing dense indices) that fall in this shard, as one slice."""
        lo, hi = np.searchsorted(users, [self.start, self.stop])
        return slice(int(lo), int(hi))


def user_shards(n_users: int, n_shards: int) -> list[UserShard]:
    """`n_shards` contiguous shards covering users 0..n_users-1, sizes differing by at most one (a shard is
    empty when there are more shards than users)."""
    if n_shards < 1 or n_users < 0:
        raise ValueError(f"user_shards needs n_shards >= 1 and n_users >= 0, got {n_shards}, {n_users}")
    bounds = np.arange(n_shards + 1, dtype=np.int64) * n_users // n_shards
    return [UserShard(int(a), int(b)) for a, b in itertools.pairwise(bounds.tolist())]


def whole_fit(shard: UserShard, fit: FitData) -> FitData:
    """A shard's fit data as it is (the function a shard map gathers it with)."""
    return fit


def shard_counts(shard: UserShard, fit: FitData) -> FitData:
    """A shard's activity counts and mixture (FitData.counts)."""
    return fit.counts()


# How work reaches the shards, passed down by its caller: `shard_map(function, *shared, per_shard=None,
# keep=False, desc=None)` calls `function(shard, fit, *per_shard[i], *shared)` for every shard (with
# `per_shard`, only where its entry is not None) and returns the results in shard order (None where skipped),
# or with `keep` handles that later calls can take among their `per_shard` arguments; `desc` names a progress
# report. The Dask engine's runs on the worker that holds each shard (DaskEngine.shard_map, futures as
# handles); `in_process` holds every shard here.
ShardMap = Callable[..., list]


def in_process(shards: Sequence[tuple[UserShard, FitData]]) -> ShardMap:
    """A `ShardMap` over shards held in this process, one after the other (handles are the values)."""

    def shard_map(
        function: Callable,
        *shared,
        per_shard: Sequence | None = None,
        keep: bool = False,
        desc: str | None = None,
    ) -> list:
        del keep, desc  # the values are their own handles; nothing to report
        args = per_shard if per_shard is not None else [()] * len(shards)
        return [
            None if extra is None else function(shard, fit, *extra, *shared)
            for (shard, fit), extra in zip(shards, args, strict=True)
        ]

    return shard_map
