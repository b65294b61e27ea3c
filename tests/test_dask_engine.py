"""The Dask engine on a 2-worker LocalCluster: weekly aggregates equal the local engine's (counts and
histories exactly, sums to float32 rounding), whole pipeline's NDCG@100 table on tiny equals the local
run's to 4 decimals, and a worker killed in the middle of the aggregation changes nothing."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import cloudpickle
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import assert_same_fit, tiny_config
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from audience.config import DEFAULT_POSITIVE_FLAGS, DaskConfig, GmmConfig, ProfileSettings
from audience.data.catalog import RunNeeds, load_catalog
from audience.data.layout import DatasetLayout
from audience.data.weeks import distinct_ids, week_parts
from audience.engine.cluster import close_clients
from audience.engine.dask_boosting import group_partitions
from audience.engine.dask_engine import DaskEngine
from audience.profiles.aggregates import (
    AggregateStore,
    WeekAggregate,
    aggregate_part,
    aggregate_week,
    fit_from_aggregates,
    merge_aggregates,
)
from audience.profiles.fit_data import FitData
from audience.profiles.gmm import fit_gmm
from audience.profiles.user_shards import user_shards, whole_fit

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests folder
ROW_GROUP = 1_500  # tiny's weeks (9-13 thousand rows) rewritten in row groups of this many rows
SETTINGS = ProfileSettings(recency_half_life=2.0)


@pytest.fixture(scope="module")
def grouped_dir(tiny_dir, tmp_path_factory) -> Path:
    """tiny with every week file rewritten in small row groups, so a week is several aggregation parts."""
    root = tmp_path_factory.mktemp("tiny-row-groups")
    shutil.copytree(tiny_dir, root, dirs_exist_ok=True)
    for week in (root / "interactions").rglob("week_*.parquet"):
        table = pq.read_table(week)
        pq.write_table(table, week, row_group_size=ROW_GROUP)
    return root


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as found:
        yield found
        close_clients()  # the engine's clients of this cluster, before it goes


def engine_on(cluster, **options) -> DaskEngine:
    return DaskEngine(
        DaskConfig(scheduler=cluster.scheduler_address, part_rows=3_000, merge_fan_in=2, **options)
    )


def store_of(folder: Path, layout: DatasetLayout) -> AggregateStore:
    """A store whose aggregates carry the soft-cluster sums of a 4-component mixture."""
    weeks = layout.train_weeks()
    catalog = load_catalog(layout, 16, RunNeeds(*distinct_ids(weeks)))
    metadata = (layout.items_metadata, layout.item_embeddings)
    mixture = fit_gmm(catalog.embedding[catalog.has_embedding], GmmConfig(n_components=4, dim=8))
    return AggregateStore(folder, catalog, DEFAULT_POSITIVE_FLAGS, SETTINGS, metadata, mixture=mixture)


def by_user(aggregate: WeekAggregate) -> dict:
    """The aggregate's arrays in user-id order, histories as (user id, key) -> count."""
    order = np.argsort(aggregate.users)
    items = np.argsort(aggregate.items)
    out = {
        "users": aggregate.users[order],
        "user_views": aggregate.user_views[order],
        "user_positives": aggregate.user_positives[order],
        "items": aggregate.items[items],
        "item_views": aggregate.item_views[items],
        "item_positives": aggregate.item_positives[items],
        "sums": aggregate.sums[:, order],
        "totals": aggregate.totals[:, order],
    }
    for name, space in aggregate.spaces.items():
        out |= {f"{name} sums": space.sums[:, order], f"{name} totals": space.totals[:, order]}
    for name, (indptr, keys, data) in aggregate.histories.items():
        rows = np.repeat(aggregate.users, np.diff(indptr))
        out[name] = dict(
            zip(
                zip(rows.tolist(), np.asarray(keys[:]).tolist(), strict=False),
                np.asarray(data[:]).tolist(),
                strict=False,
            )
        )
    return out


def assert_same_aggregate(got: WeekAggregate, want: WeekAggregate) -> None:
    a, b = by_user(got), by_user(want)
    assert set(a) == set(b)
    for name in a:
        if name.endswith(("sums", "totals")):
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-4, err_msg=name)
        elif isinstance(a[name], dict):
            assert a[name] == b[name], name
        else:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_parts_merged_equal_the_whole_week(grouped_dir):
    """No cluster: a week's parts (whole row groups, each over its own users) merged equal one pass."""
    layout = DatasetLayout(grouped_dir)
    store = store_of(grouped_dir / "unused", layout)
    week = layout.train_weeks()[0]
    parts = week_parts(week, 3_000)
    assert len(parts) >= 3 and sum(p.rows for p in parts) == pq.ParquetFile(week).metadata.num_rows
    assert all(p.rows <= 3_000 for p in parts)
    spaces = store.spaces
    assert set(spaces) == {"gmm"}
    pieces = [
        aggregate_part(p, store.catalog, DEFAULT_POSITIVE_FLAGS, SETTINGS, spaces=spaces) for p in parts
    ]
    assert all(len(piece.users) < store.catalog.n_users for piece in pieces)  # each over its own users
    whole = aggregate_week(week, store.catalog, DEFAULT_POSITIVE_FLAGS, SETTINGS, spaces=spaces)
    assert set(whole.spaces) == {"gmm"} and whole.spaces["gmm"].sums.shape == (2, len(whole.users), 4)
    assert_same_aggregate(merge_aggregates(pieces), whole)
    # merged in any grouping (the reduction tree's shape) the counts agree
    nested = merge_aggregates([merge_aggregates(pieces[:2]), merge_aggregates(pieces[2:])])
    assert_same_aggregate(nested, whole)
    # with the catalog, the users follow its index order as the one pass's do (not their ids' order)
    assert np.any(np.diff(whole.users.astype(np.int64)) < 0), "the metadata is not in id order"
    catalog = store.catalog
    for merged in (
        merge_aggregates(pieces, catalog),
        merge_aggregates(
            [merge_aggregates(pieces[:2], catalog), merge_aggregates(pieces[2:], catalog)], catalog
        ),
    ):
        np.testing.assert_array_equal(merged.users, whole.users)
        assert_same_aggregate(merged, whole)


def test_merge_sums_shared_users_and_keys_across_the_whole_uint32_range():
    """Parts sharing a user and a history key are summed; keys (dataset ids) may lie anywhere in UInt32."""
    big = np.iinfo(np.uint32).max - 1

    def part(users, keys_per_user, views):
        n = len(users)
        indptr = np.r_[0, np.cumsum([len(k) for k in keys_per_user])].astype(np.int64)
        keys = np.array([k for ks in keys_per_user for k in ks], dtype=np.uint32)
        history = (indptr, keys, np.ones(keys.size, dtype=np.uint16))
        return WeekAggregate(
            users=np.array(users, dtype=np.uint32),
            user_views=np.array(views, dtype=np.int64),
            user_positives=np.zeros(n, dtype=np.int64),
            items=np.array([7], dtype=np.uint32),
            item_views=np.array([sum(views)], dtype=np.int64),
            item_positives=np.zeros(1, dtype=np.int64),
            kinds=("all",),
            sums=np.ones((1, n, 2), dtype=np.float32),
            totals=np.ones((1, n)),
            histories={"user_author_views": history},
        )

    merged = merge_aggregates([part([9, 3], [[big, 5], [big]], [2, 1]), part([3], [[5, big]], [4])])
    assert merged.users.tolist() == [3, 9] and merged.user_views.tolist() == [5, 2]
    assert merged.item_views.tolist() == [7]
    np.testing.assert_array_equal(merged.sums[0], [[2, 2], [1, 1]])
    indptr, keys, data = merged.histories["user_author_views"]
    assert indptr.tolist() == [0, 2, 4]
    assert keys.tolist() == [5, big, 5, big] and data.tolist() == [1, 2, 1, 1]


def test_dask_aggregates_equal_local(grouped_dir, tmp_path, cluster):
    layout = DatasetLayout(grouped_dir)
    local, remote = store_of(tmp_path / "local", layout), store_of(tmp_path / "dask", layout)
    weeks = layout.train_weeks()
    local.build_missing(weeks, progress=False)
    engine = engine_on(cluster)
    engine.build_aggregates(remote, weeks, progress=False)
    for week in weeks:
        assert remote.path(week).is_dir()
        assert set(remote.load(week).spaces) == {"gmm"}
        assert_same_aggregate(remote.load(week), local.load(week))
        np.testing.assert_array_equal(remote.load(week).users, local.load(week).users)  # the index order
    for got, want in zip(engine.distinct_ids(weeks), distinct_ids(weeks), strict=True):
        np.testing.assert_array_equal(got, want)
    # user shards are slices of the Dask engine's aggregates too: stacked, they are the local split's rows
    whole = fit_from_aggregates(local, weeks, progress=False)
    shards = user_shards(local.catalog.n_users, 3)
    stacked = FitData.stacked([fit_from_aggregates(remote, weeks, progress=False, shard=s) for s in shards])
    np.testing.assert_array_equal(stacked.user_views, whole.user_views)
    for name, profile in whole.profiles.items():
        np.testing.assert_allclose(stacked.profiles[name], profile, rtol=1e-5, atol=1e-6, err_msg=name)
    for name, history in whole.histories.items():
        assert abs(stacked.histories[name] - history).max() < 1e-4, name
    hidden = np.zeros(local.catalog.n_items, dtype=bool)
    hidden[::7] = True
    options = {"kinds": local.kinds, "rows_of": hidden, "spaces": local.spaces}
    for got, week in zip(
        engine.aggregate_weeks(weeks, local.catalog, DEFAULT_POSITIVE_FLAGS, SETTINGS, **options),
        weeks,
        strict=True,
    ):
        assert_same_aggregate(
            got, aggregate_week(week, local.catalog, DEFAULT_POSITIVE_FLAGS, SETTINGS, **options)
        )


class KillFirstTask(WorkerPlugin):
    """Kills its worker's process the first time (over the whole cluster: a marker file) a task whose key
    holds `task` (its function's name) starts executing there. The marker is created atomically (O_EXCL):
    two workers starting their first such tasks at once must not both die, which would lose the broadcast
    data with them."""

    def __init__(self, marker: str, task: str):
        self.marker, self.task = marker, task

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing" or self.task not in str(key):
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(key).encode())
        os.close(fd)
        os._exit(1)


def test_a_worker_killed_mid_aggregation_changes_nothing(grouped_dir, tmp_path):
    layout = DatasetLayout(grouped_dir)
    local, remote = store_of(tmp_path / "local", layout), store_of(tmp_path / "dask", layout)
    weeks = layout.train_weeks()
    local.build_missing(weeks, progress=False)
    marker = tmp_path / "killed"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            client.register_plugin(KillFirstTask(str(marker), "aggregate_part"))
            engine_on(cluster).build_aggregates(remote, weeks, progress=False)
            close_clients()
    assert marker.is_file(), "no worker was killed: the test did not test anything"
    for week in weeks:
        assert_same_aggregate(remote.load(week), local.load(week))


def test_a_worker_killed_mid_shard_combination_changes_nothing(grouped_dir, tmp_path):
    """A worker dies while it combines a shard's fit data: the shard is combined again elsewhere, and the
    shards stacked equal the unsharded fit data bit for bit."""
    layout = DatasetLayout(grouped_dir)
    store = store_of(tmp_path / "weeks", layout)
    weeks = layout.train_weeks()
    store.build_missing(weeks, progress=False)
    whole = fit_from_aggregates(store, weeks, progress=False)
    marker = tmp_path / "killed"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            client.register_plugin(KillFirstTask(str(marker), "_shard_fit"))
            engine = engine_on(cluster, user_shards=3)
            fits = engine.shard_fits(store, weeks, folder=tmp_path / "shards", rebuild=True)
            parts = engine.shard_map(fits, whole_fit)
            close_clients()
    assert marker.is_file(), "no worker was killed: the test did not test anything"
    assert_same_fit(FitData.stacked(parts), whole, exact=True)


def test_group_partitions_cut_only_between_clips():
    qid = np.repeat(np.arange(50), np.random.default_rng(0).integers(1, 40, size=50))
    ranges = group_partitions(qid, 100)
    assert ranges[0][0] == 0 and ranges[-1][1] == qid.size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    for lo, hi in ranges:
        assert lo == 0 or qid[lo] != qid[lo - 1]  # a clip never straddles two partitions
        assert hi - lo < 100 + 40
    assert group_partitions(qid, 10**9) == [(0, qid.size)]


def test_pipeline_on_dask_equals_local(tiny_run, tmp_path, cluster):
    """`engine = "dask"` end to end on tiny: the NDCG@100 table equals the local engine's to 4 decimals
    (the reranker's training frame is one xgboost.dask partition; clip blocks of 64 cut every query and
    feature pass into several tasks). The reranker samples no rows or columns here: xgboost.dask draws its
    samples apart from the local booster's (xgboost 3.x), so with sampling on the two rerankers differ."""
    from audience.pipeline import run_all

    exact = replace(tiny_run.cfg.reranker, subsample=1.0, colsample_bytree=1.0)
    local_cfg = tiny_config(
        tiny_run.cfg.data_dir, tmp_path / "local", weeks_dir=tmp_path / "weeks", reranker=exact
    )
    run_all(local_cfg)
    cfg = replace(local_cfg, run_dir=tmp_path / "run", engine="dask")
    cfg = replace(cfg, dask=DaskConfig(scheduler=cluster.scheduler_address, part_rows=3_000, clip_block=64))
    run_all(cfg)

    def table(run_dir: Path) -> dict:
        results = json.loads((run_dir / "results.json").read_text())
        return {r["method"]: round(r["ndcg_capped"], 4) for r in results["methods"] if "ndcg_capped" in r}

    local, remote = table(local_cfg.artifacts), table(cfg.artifacts)
    assert set(local) == set(remote) and "reranked" in local
    assert remote == local
    assert json.loads((cfg.artifacts / "config.json").read_text())["engine"] == "dask"


HUB_ROOT = "hf://datasets/deepvk/VK-LSVD"


def mirror_filesystem(root: str) -> type:
    """An fsspec filesystem for the `hf` protocol that serves `root` (a local mirror of the hub's layout:
    root/datasets/deepvk/VK-LSVD/...)."""
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem

    class HubMirror(DirFileSystem):
        protocol = "hf"
        sep = "/"  # the hub's: DirFileSystem's own is a property of the wrapped instance
        root_marker = ""

        def __init__(self, *args, **kwargs):
            super().__init__(path=root, fs=LocalFileSystem())

    return HubMirror


class ServeHubMirror(WorkerPlugin):
    """Registers the mirror as the `hf` protocol in every worker (and any worker restarted later)."""

    def __init__(self, root: str):
        self.root = root

    def setup(self, worker):
        import fsspec

        fsspec.register_implementation("hf", mirror_filesystem(self.root), clobber=True)


@pytest.fixture
def hub_mirror(tiny_run, tmp_path, monkeypatch):
    import fsspec

    root = tmp_path / "hub"
    shutil.copytree(tiny_run.cfg.data_dir, root / "datasets" / "deepvk" / "VK-LSVD")
    original = fsspec.get_filesystem_class("hf")
    fsspec.register_implementation("hf", mirror_filesystem(str(root)), clobber=True)
    yield root
    fsspec.register_implementation("hf", original, clobber=True)


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_a_run_reads_the_hub_layout_through_fsspec(tiny_run, hub_mirror, tmp_path, cluster, engine):
    """`--data-dir hf://datasets/deepvk/VK-LSVD` (the hub's `hf` protocol served here by a local mirror):
    the local engine reads everything through fsspec; on Dask the client reads footers, metadata and the
    truth week and the workers read the weeks themselves. Both give the local run's results."""
    from audience.pipeline import run_all

    with Client(cluster.scheduler_address) as client:
        client.register_plugin(ServeHubMirror(str(hub_mirror)))
    cfg = tiny_config(HUB_ROOT, tmp_path / "run", weeks_dir=tmp_path / "weeks", engine=engine)
    assert not isinstance(cfg.data_dir, Path) and str(cfg.data_dir) == HUB_ROOT
    cfg = replace(cfg, dask=DaskConfig(scheduler=cluster.scheduler_address, part_rows=3_000, clip_block=64))
    run_all(cfg)
    # xgboost.dask draws its row and column samples apart from the local booster's: on Dask the reranker is
    # compared in test_pipeline_on_dask_equals_local (sampling off), every other method here
    skip = {"reranked"} if engine == "dask" else set()

    def table(run_dir: Path) -> dict:
        methods = json.loads((run_dir / "results.json").read_text())["methods"]
        return {r["method"]: round(r["ndcg_capped"], 4) for r in methods if "ndcg_capped" in r}

    local, remote = table(tiny_run.dir), table(cfg.artifacts)
    assert "reranked" in remote and {m: v for m, v in remote.items() if m not in skip} == {
        m: v for m, v in local.items() if m not in skip
    }
    split = json.loads((cfg.artifacts / "split.json").read_text())
    assert split["fit_weeks"][0].startswith(f"{HUB_ROOT}/interactions/train/week_00")


@pytest.mark.parametrize("holdout", [0, 1])
def test_user_shards_give_every_source_the_local_lists(tiny_stocked_dir, tmp_path, cluster, holdout):
    """The candidates stage with the sources that split by user answered on 3 user shards of the workers:
    every exactly separable source's file equals the local engine's, bit for bit; the HNSW sources (one
    index per shard) answer as many users, and hnsw:all finds the exact search's top 100 as well as the one
    local index does (tests/test_sharded.py checks each HNSW source's scores and recall). On the stocked
    shape: the validate run's warm targets have their fit-week audiences dropped after the shards' merge;
    the holdout run's pseudo-new clips are hidden from every shard's fit data (co-engagement's index is
    built on one thread, so the shards' indexes equal the whole one's)."""
    from audience.candidates import make_source
    from audience.candidates.sharded import user_separable, user_shardable
    from audience.config import HoldoutTargets
    from audience.stages.candidates import stage_candidates
    from audience.stages.profiles import stage_profiles
    from audience.stages.run import Run

    cfg = tiny_config(
        tiny_stocked_dir,
        tmp_path / "local",
        weeks_dir=tmp_path / "weeks",
        n_threads=1,
        targets=None if holdout else tiny_stocked_dir / "targets" / "mixed_validation.parquet",
        holdout=holdout,
        holdout_targets=HoldoutTargets(new=False, pseudo=40, warm=20) if holdout else HoldoutTargets(),
    )
    if holdout:
        cfg = replace(cfg, baselines=("exact:all", "hnsw:all"))
    sharded_cfg = replace(
        cfg,
        run_dir=tmp_path / "sharded",
        engine="dask",
        dask=DaskConfig(scheduler=cluster.scheduler_address, part_rows=3_000, user_shards=3),
    )
    runs = [Run(cfg), Run(sharded_cfg)]
    for run in runs:
        stage_profiles(run)
        stage_candidates(run)
    local, sharded = runs
    split = json.loads(local.path("split.json").read_text())
    assert split["warm_targets"] > 0 and split["pseudo_new_targets"] == (40 if holdout else 0)
    names = [*cfg.sources, *cfg.baselines]
    sources = {name: make_source(name, cfg) for name in names}
    assert sum(map(user_separable, sources.values())) >= 3, "exact sources ran on shards"
    for name, source in sources.items():
        want, got = local.candidates(name), sharded.candidates(name)
        assert want.height > 0
        if user_separable(source) or not user_shardable(source):
            assert got.equals(want), name
        else:  # one HNSW index per shard: as many answers, found as well (below)
            assert got.height == want.height, name
    recall = [json.loads(run.path("candidates", "sources.json").read_text())["hnsw:all"] for run in runs]
    assert recall[1]["recall_at_100_vs_exact"] >= recall[0]["recall_at_100_vs_exact"] - 0.01


def test_the_tiny_pipeline_gives_one_table_on_1_2_and_3_user_shards(tiny_run, tmp_path, cluster, monkeypatch):
    """`audience run` end to end with the sources, the pair features of the rank stage's pool and of its
    holdout runs' pools computed on 1, 2 and 3 user shards: the NDCG@100 table equals the local engine's to
    4 decimals for every method (sources that split exactly, BPR fitted on the rows the shards send; the
    reranker without sampling, as in test_pipeline_on_dask_equals_local). No stage loads the whole fit data
    on the client: fit_data.npz holds the counts, each shard's fit data is saved by the profiles stage in
    fit_shards/ and read there; gathered (Run.fit_data, for the tests' comparison) it is the local run's.
    Each run has a folder of its own, so that its holdout runs are built on its shards, not shared."""
    from audience.pipeline import run_all
    from audience.stages.run import Run

    exact = replace(tiny_run.cfg.reranker, subsample=1.0, colsample_bytree=1.0)
    local_cfg = tiny_config(
        tiny_run.cfg.data_dir,
        tmp_path / "local",
        weeks_dir=tmp_path / "weeks",
        reranker=exact,
        sources=("author_fans", "exact:positive", "coengagement", "bpr_bridge"),
        baselines=("popular", "exact:all"),
        final_method="author_fans",
        n_threads=1,
    )
    run_all(local_cfg)

    def table(run_dir: Path) -> dict:
        results = json.loads((run_dir / "results.json").read_text())
        return {r["method"]: round(r["ndcg_capped"], 4) for r in results["methods"] if "ndcg_capped" in r}

    want = table(local_cfg.artifacts)
    assert "reranked" in want and len(want) >= 5
    monkeypatch.setattr(Run, "fit_data", lambda run: pytest.fail("the whole fit data loaded on the client"))
    for n_shards in (1, 2, 3):
        # the Dask engine's own week aggregates (merged by parts), shared by its runs
        cfg = replace(
            local_cfg,
            run_dir=tmp_path / f"shards{n_shards}" / "run",
            engine="dask",
            weeks_dir=tmp_path / "dask",
        )
        cfg = replace(
            cfg, dask=DaskConfig(scheduler=cluster.scheduler_address, part_rows=3_000, user_shards=n_shards)
        )
        run_all(cfg)
        assert table(cfg.artifacts) == want, n_shards
    monkeypatch.undo()
    sharded, local = Run(cfg), Run(local_cfg)
    assert not FitData.load(sharded.path("fit_data.npz")).has_user_state
    assert len(list(sharded.path("fit_shards").glob("users_*.npz"))) == 3
    gathered, whole = sharded.fit_data(), local.fit_data()
    np.testing.assert_array_equal(gathered.user_views, whole.user_views)
    for name, profile in whole.profiles.items():
        np.testing.assert_array_equal(gathered.profiles[name], profile, err_msg=name)
    for name, history in whole.histories.items():
        assert (gathered.histories[name] != history).nnz == 0, name
