"""Where a run's heavy passes execute: `engine = "local"` (this process, the default) or `"dask"` (a Dask
cluster: engine/dask_engine.py says what runs there and how it is cut into tasks).

Both engines offer the same calls (build the weekly aggregates, the uncached weekly passes, the distinct
ids of the weeks, a source's answers for the target clips, a function mapped over blocks of target clips
(the pool's pair features, which the caller passes down), where the reranker's boosters train) and give the
same results: counts exactly, float sums to rounding. The engines import nothing from the models above
them: what runs on blocks is handed to them.

What stays on the client under Dask, and why: indexing the run's users and clips (the catalog: one
metadata read), combining a split's weekly aggregates into profiles (one pass over the cached .npy files,
49 s for vk's 25 weeks; its output is the user profiles every later stage reads here), the GMM fit,
fitting each candidate source (its index is then broadcast), the RRF blend and MixiGen (one pass over the
pools), the reranker's prediction, the cap-aware assignment (a global greedy over every clip's list) and
the evaluation. With `[dask] user_shards`, the users' state leaves the client: each shard's fit data is
combined and saved by a worker, the sources that split by user are fitted and answered there, and the
pair features read each user's state on its shard; the client keeps the counts, the pools and the
clip- and author-side tables (BPR is fitted here on its sample's rows, which the shards send; the
neighbour bridges and the first stage still gather every shard's fit data)."""

from __future__ import annotations

from audience.config import RunConfig
from audience.engine.local import LocalEngine

__all__ = ["LocalEngine", "engine_for"]


def engine_for(cfg: RunConfig):
    """The engine `cfg.engine` names (a Dask engine shares the process's client across runs)."""
    if cfg.engine == "dask":
        from audience.engine.dask_engine import DaskEngine

        return DaskEngine(cfg.dask)
    return LocalEngine()
