"""Shared fixtures: a tiny synthetic dataset and a full pipeline run on it, built once per session."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from audience.candidates import ClipQueries
from audience.config import ProfileSettings, RunConfig, load_config
from audience.data.catalog import Catalog, RunNeeds, load_catalog
from audience.data.layout import DatasetLayout
from audience.data.presets import preset
from audience.data.schema import DEFAULT_POSITIVE_FLAGS
from audience.data.synthetic import generate
from audience.data.weeks import distinct_ids
from audience.profiles.aggregates import AggregateStore, fit_from_aggregates
from audience.profiles.fit_data import FitData
from audience.profiles.reference_pass import build_fit_data


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    generate(root, preset("tiny", seed=3), progress=False)
    return root


def tiny_world(data_dir: Path, n_queries: int) -> tuple[Catalog, FitData, ClipQueries]:
    """The dataset's catalog, its train weeks' fit data (the reference pass) and its first `n_queries` clips
    as target queries: what a source is fitted on and asked, without a run."""
    layout = DatasetLayout(data_dir)
    catalog = load_catalog(layout)
    fit = build_fit_data(layout.train_weeks(), catalog, DEFAULT_POSITIVE_FLAGS, progress=False)
    return catalog, fit, ClipQueries.from_catalog(catalog, catalog.items.ids[:n_queries])


@pytest.fixture(scope="session")
def tiny_aggregates(tiny_dir, tmp_path_factory) -> tuple[Catalog, AggregateStore, list[Path], FitData]:
    """The tiny train weeks' catalog, their aggregate store (built) and the whole FitData combined from it:
    what user shards are combined from and compared with."""
    layout = DatasetLayout(tiny_dir)
    weeks = layout.train_weeks()
    catalog = load_catalog(layout, None, RunNeeds(*distinct_ids(weeks)))
    metadata = (layout.items_metadata, layout.item_embeddings)
    store = AggregateStore(
        tmp_path_factory.mktemp("weeks"), catalog, DEFAULT_POSITIVE_FLAGS, ProfileSettings(), metadata
    )
    return catalog, store, weeks, fit_from_aggregates(store, weeks, progress=False)


def tiny_config(data_dir: Path, run_dir: Path, **overrides) -> RunConfig:
    cfg = load_config(data_dir=data_dir, run_dir=run_dir, quiet=True, n_threads=2, candidate_depth=150)
    return replace(cfg, **overrides)


@pytest.fixture(scope="session")
def tiny_run(tiny_dir, tmp_path_factory):
    """The whole pipeline in validate mode on tiny data; tests read its artifacts."""
    from audience.pipeline import run_all

    cfg = tiny_config(tiny_dir, tmp_path_factory.mktemp("run-validate"))
    return run_all(cfg)


@pytest.fixture(scope="session")
def tiny_stocked_dir(tmp_path_factory) -> Path:
    """Tiny data of the stocked shape: every clip lives in every week, new clips only in validation/test.
    Seven train weeks, one more than tiny: tiny's obscure stock clips are first viewed over a three-week
    burn-in (week 2: 32-86 first views over seeds 0-7, old generator 19-93), so the four label weeks a run
    looks back on (label_week_lookback) start after it (weeks 3-6: at most 33 over seeds 0-11)."""
    root = tmp_path_factory.mktemp("tiny-stocked")
    cfg = preset("tiny", seed=3, shape="stocked", warm_targets=60, n_train_weeks=7)
    generate(root, cfg, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_stocked_run(tiny_stocked_dir, tmp_path_factory):
    """The default pipeline on the stocked shape (validate mode): no label week has new clips."""
    from audience.pipeline import run_all

    return run_all(tiny_config(tiny_stocked_dir, tmp_path_factory.mktemp("run-stocked")))


def assert_same_fit(got: FitData, want: FitData, exact: bool = False) -> None:
    """Every count, profile, weight and history equal: within float tolerance, or bit for bit (`exact`)."""
    for name in ("user_views", "user_positives", "item_views", "item_positives"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert set(got.profiles) == set(want.profiles)
    for name in want.profiles:
        if exact:
            np.testing.assert_array_equal(got.profiles[name], want.profiles[name], err_msg=name)
            np.testing.assert_array_equal(got.profile_weight[name], want.profile_weight[name], err_msg=name)
            continue
        np.testing.assert_allclose(got.profile_weight[name], want.profile_weight[name], rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(
            got.profile_weight[name] > 0, want.profile_weight[name] > 0, err_msg=name
        )
        np.testing.assert_allclose(got.profiles[name], want.profiles[name], atol=2e-5, err_msg=name)
    assert set(got.histories) == set(want.histories)
    for name, matrix in want.histories.items():
        other, matrix = got.histories[name].tocsr(), matrix.tocsr()
        if exact:
            other.sort_indices()
            matrix.sort_indices()
        assert other.shape == matrix.shape
        np.testing.assert_array_equal(other.indptr, matrix.indptr, err_msg=name)
        np.testing.assert_array_equal(other.indices, matrix.indices, err_msg=name)
        if exact:
            np.testing.assert_array_equal(other.data, matrix.data, err_msg=name)
        else:
            np.testing.assert_allclose(other.data, matrix.data, rtol=1e-5, err_msg=name)
