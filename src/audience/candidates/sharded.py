"""Sources answered shard by shard: each user shard (profiles/user_shards.py) fits its own copy of a source
on its users' FitData and answers its own top-k users per clip; the answers are merged per clip
(`arrays.merge_top_k`). No step holds more than one shard's users and the clips x k answers.
`sharded_answers` reaches the shards through the `ShardMap` its caller passes (profiles/user_shards.py):
`in_process`, one shard after the other here, or the Dask engine's, on the worker that holds each shard.

Which sources split by user (`user_separable`): those whose score of (user, clip) reads only that user's
state and clip-side tables, and whose top-k is exact, so that the merged lists equal the unsharded source's,
ties included: 'exact:<profile>' and 'coengagement' (its old clips' index is built from clip-side counts,
the same in every shard; with more than one thread hnswlib's build order varies, so equal indexes, and
equal lists, need `n_threads = 1`). A source that also needs a total over every user (author fans' global
engagement rate) offers `population(data)`: additive partial sums per shard, whose total every shard's copy
receives (`with_population`) before it fits.
Sources that split approximately (`approximate_shards`): 'hnsw:*' and 'reach:*', one HNSW index per shard
(each over its shard's users; reach's lift uses the shard's largest norm and its scores are rescaled to
the inner product, so shards compare): every answered score is its user's score (to float rounding), but which
users an index misses differs from one global index (each shard's smaller index misses fewer). Not split
(yet): 'popular' (the population's largest activity), 'random' (draws over the whole batch), the neighbour
bridges (trained on every user at once).
Sources fitted on a sample of users (`fits_on_sampled_rows`: 'bpr_bridge', trained on every user of its
sample at once) are fitted on the sample's rows, which each shard sends (`sampled_rows`, `fit_on_rows`): the
same source as fitted on the whole fit data, holding only the sample; the caller chooses where it is fitted
(the Dask engine: on a worker, so the client never holds the sample's users)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import sparse

from audience.arrays import TopK, merge_top_k
from audience.candidates.base import CandidateSource, ClipQueries
from audience.data.catalog import Catalog
from audience.profiles.fit_data import FitData
from audience.profiles.user_shards import ShardMap, UserShard


def user_separable(source: CandidateSource) -> bool:
    """Whether shards of this source, merged, answer as the whole source does."""
    return bool(getattr(source, "user_separable", False))


def user_shardable(source: CandidateSource) -> bool:
    """Whether this source can answer by user shards: exactly (`user_separable`) or approximately."""
    return user_separable(source) or bool(getattr(source, "approximate_shards", False))


def shard_population(shard: UserShard, data: FitData, build: Callable[[], CandidateSource]) -> np.ndarray:
    """A shard's additive part of the total over every user that `build()`'s source needs (`population`)."""
    return np.asarray(build().population(data))


def shard_answer(
    shard: UserShard,
    data: FitData,
    build: Callable[[], CandidateSource],
    catalog: Catalog,
    clips: ClipQueries,
    k: int,
    total: np.ndarray | None = None,
) -> TopK:
    """One shard's top-k users (local indices) of every clip: a fresh `build()` given the population's
    `total` (when it needs one), fitted on the shard's `data`."""
    source = build()
    if total is not None:
        source.with_population(total)
    return source.fit(data, catalog).recommend(clips, k)


def check_shardable(source: CandidateSource) -> None:
    """Raises ValueError for a source that cannot answer by user shards."""
    if not user_shardable(source):
        raise ValueError(f"{source.name} does not split by user (candidates/sharded.py says which do)")


def population_total(parts: Sequence[np.ndarray]) -> np.ndarray:
    """The shards' population parts added up (each source's `population` is additive over users)."""
    return np.sum([np.asarray(p, dtype=np.float64) for p in parts], axis=0)


def sharded_answers(
    build: Callable[[], CandidateSource],
    shard_map: ShardMap,
    shards: Sequence[UserShard],
    catalog: Catalog,
    clips: ClipQueries,
    k: int,
) -> TopK:
    """The top-k users (global indices) of every clip from a fresh `build()` per shard of `shard_map`
    (`shards`, in its order), fitted on that shard's FitData, merged. Raises ValueError for a source that
    does not split by user. Across processes `build` must pickle (a module-level function or a partial)."""
    if not shards:
        raise ValueError("sharded_answers needs at least one shard")
    source = build()
    check_shardable(source)
    total = None
    if hasattr(source, "population"):
        total = population_total(shard_map(shard_population, build))
    desc = f"{source.name} ({len(shards)} user shards)"
    parts = shard_map(shard_answer, build, catalog, clips, k, total, desc=desc)
    return merge_top_k(parts, [shard.start for shard in shards], k)


def fits_on_sampled_rows(source: CandidateSource) -> bool:
    """Whether this source is fitted on rows of a sample of users (`sample_users`, `sample_rows`,
    `fit_rows`), which user shards can send."""
    return bool(getattr(source, "fits_on_sampled_rows", False))


def shard_sample_rows(
    shard: UserShard, data: FitData, users: np.ndarray, build: Callable[[], CandidateSource]
) -> sparse.csr_matrix:
    """A shard's rows of `users` (its local indices) that `build()`'s source is fitted on."""
    return build().sample_rows(data, users)


def sampled_rows(
    build: Callable[[], CandidateSource], shard_map: ShardMap, shards: Sequence[UserShard], counts: FitData
) -> tuple[list, np.ndarray]:
    """The users of `build()`'s sample (chosen from the fit data's `counts`, global indices) and each shard's
    rows of them, as handles kept where the shards are (`shard_map(..., keep=True)`: futures on the Dask
    engine's workers, the rows themselves in this process), in shard order (`shards`, consecutive)."""
    users = build().sample_users(counts)
    per_shard = [(users[shard.rows_of(users)] - shard.start,) for shard in shards]
    return shard_map(shard_sample_rows, build, per_shard=per_shard, keep=True), users


def fit_on_rows(
    build: Callable[[], CandidateSource],
    parts: Sequence[sparse.csr_matrix],
    users: np.ndarray,
    catalog: Catalog,
) -> CandidateSource:
    """A fresh `build()` fitted on its sample's rows (`parts`, one per shard in order, `sampled_rows`):
    module-level, so an engine can run it where the rows are sent (a worker) instead of here."""
    return build().fit_rows(sparse.vstack(list(parts), format="csr"), users, catalog)
