"""The profiles stage: the split, the run's catalog (only the users and clips it needs), the target clips and
one combination of the cached weekly aggregates into the fit data (profiles, histories, counts) ->
catalog.npz, fit_data.npz, targets.parquet, target_history.parquet, split.json. With user shards (the Dask
engine's `user_shards`), each shard's fit data is combined on a worker into fit_shards/ and fit_data.npz
holds only the counts."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import polars as pl

from audience.candidates import ClipQueries
from audience.cap import cap_infeasibility
from audience.data.catalog import Catalog, RunNeeds, load_catalog
from audience.data.ids import unique_sorted
from audience.data.target_history import write_target_history
from audience.errors import DataError
from audience.io import write_json, write_parquet
from audience.profiles.aggregates import AggregateStore, build_aggregates, fit_from_aggregates
from audience.profiles.fit_data import FitData
from audience.profiles.user_shards import shard_counts
from audience.rank.protocol import run_target_ids
from audience.split import Split
from audience.stages.run import Run

log = logging.getLogger(__name__)


def _index_catalog(
    run: Run, split: Split, pseudo_new: np.ndarray, warm_sample: np.ndarray
) -> tuple[Catalog, np.ndarray]:
    """The run's catalog (only the users and clips it needs) and its target clip ids; saves the catalog.
    `pseudo_new`, `warm_sample`: a holdout run's sampled clips (rank/protocol.holdout_samples)."""
    cfg = run.cfg
    fit_users, fit_items = run.engine.distinct_ids(split.fit_weeks, not cfg.quiet, cfg.weeks_cache)
    # pseudo-new clips count as unseen: their fit-week rows are hidden from the profile pass
    seen = np.setdiff1d(fit_items, pseudo_new, assume_unique=True)  # both sorted, each clip once
    target_ids = run_target_ids(cfg, split, seen, pseudo_new, warm_sample)
    # enough users to fill every list under the cap, plus one list's worth so the lists stay distinct
    min_users = -(-len(target_ids) * cfg.list_size // cfg.user_cap) + cfg.list_size
    needs = RunNeeds(fit_users, unique_sorted(np.concatenate([fit_items, target_ids])), min_users)
    catalog = load_catalog(run.layout, cfg.embedding_dim, needs)
    catalog.save(run.path("catalog.npz"))
    run._catalog = catalog
    return catalog, target_ids


def _sharded_counts(run: Run, store: AggregateStore, split: Split) -> FitData:
    """With user shards: every shard's fit data combined on its worker and saved in fit_shards/ (for the
    later stages' shards), and their counts gathered here (the users' state never reaches the client)."""
    build_aggregates(store, split.fit_weeks, not run.cfg.quiet, run.engine)
    return FitData.stacked(run.engine.shard_map(run.shard_fits(rebuild=True), shard_counts))


def stage_profiles(run: Run) -> None:
    cfg = run.cfg
    run.layout.check_metadata_present()
    split = run.split()
    pseudo_new, warm_sample = run.holdout_samples()  # both empty unless a holdout run asks for them
    catalog, target_ids = _index_catalog(run, split, pseudo_new, warm_sample)
    store = run.aggregate_store()
    shutil.rmtree(run.path("fit_shards"), ignore_errors=True)  # an earlier profiles stage's shards are stale
    if run.engine.n_user_shards:
        fit = _sharded_counts(run, store, split)
    else:
        fit = fit_from_aggregates(
            store,
            split.fit_weeks,
            hidden_items=np.isin(catalog.items.ids, pseudo_new) if pseudo_new.size else None,
            progress=not cfg.quiet,
            engine=run.engine,
        )
        fit.gmm = store.mixture
    seen_ids = catalog.items.ids[fit.item_views > 0]
    queries = ClipQueries.from_catalog(catalog, target_ids)
    warm_targets = np.isin(queries.item_ids, seen_ids)  # targets with interactions in the fit weeks
    problem = cap_infeasibility(len(queries), cfg.list_size, catalog.n_users, cfg.user_cap)
    if problem:  # the catalog holds every metadata user when the fit weeks' cannot fill the lists
        raise DataError(f"{split.targets_from}: {problem} (users in the metadata)")
    for what, mask in (("metadata", queries.has_metadata), ("an embedding", queries.has_embedding)):
        if (~mask).any():
            log.warning(
                "%d target clip(s) have no %s; content sources skip them and popularity fills in",
                int((~mask).sum()),
                what,
            )
    fit.save(run.path("fit_data.npz"))  # with user shards: the counts alone (Run.fit_data gathers the rest)
    write_parquet(
        pl.DataFrame(
            {
                "item_id": pl.Series(queries.item_ids, dtype=pl.UInt32),
                "has_metadata": queries.has_metadata,
                "has_embedding": queries.has_embedding,
                "warm": warm_targets,
            }
        ),
        run.path("targets.parquet"),
    )
    write_target_history(
        run.path("target_history.parquet"), split.fit_weeks, queries.item_ids, seen_ids, cfg.positive_flags
    )
    write_json(
        {
            "mode": split.mode,
            "fit_weeks": [str(p) for p in split.fit_weeks],
            "truth_week": str(split.truth_week) if split.truth_week else None,
            "targets_from": split.targets_from,
            "n_targets": len(queries),
            "n_users": catalog.n_users,
            "n_items": catalog.n_items,
            "index": catalog.index_counts,
            "users_with_history": int((fit.user_views > 0).sum()),
            "fit_interactions": int(fit.user_views.sum()),
            "targets_without_metadata": int((~queries.has_metadata).sum()),
            "targets_without_embedding": int((~queries.has_embedding).sum()),
            "warm_targets": int(warm_targets.sum()),
            "pseudo_new_targets": int(pseudo_new.size),
        },
        run.path("split.json"),
    )
