"""Progress reports: readable lines in a log, silent when off, and never a change to what they report on."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import xgboost as xgb

from audience import progress
from audience.candidates import make_source
from audience.candidates.registry import Reported, _build
from audience.config import load_config
from audience.rank._booster import train_early_stopped


@pytest.fixture(autouse=True)
def progress_on():
    progress.configure(True)
    yield
    progress.configure(True)


def test_lines_in_a_log_have_counts_and_no_carriage_returns(capsys):
    with progress.bar("step", 4, "items", every_s=0.0) as report:  # stderr is captured: not a terminal
        for i in range(4):
            report.update(1, f"note {i}")
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err
    assert lines[0].startswith("step: 1/4 items (25%)") and lines[0].endswith("note 0")
    assert lines[-1].startswith("step: 4/4 items (100%)") and "(done)" in lines[-1]


def test_lines_are_throttled(capsys):
    report = progress.bar("slow", None, "rows", every_s=3600.0)
    for _ in range(1000):
        report.update(5)
    report.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines == [lines[-1]] and lines[0].startswith("slow: 5,000 rows, ")


def test_off_means_silent_and_iterate_still_yields_everything(capsys):
    progress.configure(False)
    assert list(progress.iterate(range(5), "loop")) == [0, 1, 2, 3, 4]
    progress.note("hidden")
    with progress.bar("hidden", 3) as report:
        report.update(3)
    assert capsys.readouterr().err == ""
    progress.configure(True)
    assert list(progress.iterate([], "empty", enabled=False)) == []
    assert capsys.readouterr().err == ""


def test_boosting_report_changes_no_prediction(capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(np.float32)
    dtrain, dvalid = xgb.DMatrix(x[:300], label=y[:300]), xgb.DMatrix(x[300:], label=y[300:])
    params = {"objective": "binary:logistic", "eval_metric": "logloss", "seed": 0, "nthread": 1}
    reported, score = train_early_stopped(params, dtrain, dvalid, 30, 5, "test boosting")
    plain = xgb.train(
        params, dtrain, 30, evals=[(dvalid, "valid")], early_stopping_rounds=5, verbose_eval=False
    )
    assert reported.best_iteration == plain.best_iteration
    np.testing.assert_array_equal(reported.predict(dvalid), plain.predict(dvalid))
    assert np.isfinite(score)
    assert "test boosting:" in capsys.readouterr().err


def test_reported_source_answers_as_the_source_itself(tiny_dir, capsys):
    from audience.candidates import ClipQueries
    from audience.data.catalog import load_catalog
    from audience.data.layout import DatasetLayout
    from audience.data.schema import DEFAULT_POSITIVE_FLAGS
    from audience.profiles.reference_pass import build_fit_data

    layout = DatasetLayout(tiny_dir)
    catalog = load_catalog(layout)
    fit = build_fit_data(layout.train_weeks(), catalog, DEFAULT_POSITIVE_FLAGS, progress=False)
    queries = ClipQueries.from_catalog(catalog, catalog.items.ids[:50])
    cfg = load_config(n_threads=1)
    wrapped = make_source("author_fans", cfg).fit(fit, catalog)
    plain = _build("author_fans", cfg).fit(fit, catalog)
    assert isinstance(wrapped, Reported) and wrapped.name == "author_fans"
    np.testing.assert_array_equal(wrapped.recommend(queries, 20).ids, plain.recommend(queries, 20).ids)
    assert "source author_fans: fitted in" in capsys.readouterr().err
    again = pickle.loads(pickle.dumps(wrapped))
    np.testing.assert_array_equal(again.recommend(queries, 20).ids, plain.recommend(queries, 20).ids)
