"""Cache keys from the import closure: an edit inside a cache's closure changes its key, one outside not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import audience
from audience.code_key import code_key, import_closure
from audience.profiles.aggregates import AGGREGATE_CODE
from audience.stages.holdout_runs import HOLDOUT_CODE
from audience.stages.training_data import POOL_CODE


@pytest.fixture
def package(tmp_path) -> Path:
    root = tmp_path / "audience"
    shutil.copytree(Path(audience.__file__).parent, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


def test_the_week_pass_key_covers_what_it_runs_and_nothing_else(package):
    closure = import_closure("audience.profiles.aggregates", package)
    # the modules the old hand-kept list missed: the week pass runs them
    assert {"audience.data.ids", "audience.data.location", "audience.data.schema", "audience.io"} <= set(
        closure
    )
    assert "audience.assign" not in closure and "audience.candidates" not in closure
    before = code_key("audience.profiles.aggregates", root=package)
    assert before == AGGREGATE_CODE  # the copy holds the same bytes as the installed package
    edit(package / "assign.py")
    assert code_key("audience.profiles.aggregates", root=package) == before
    edit(package / "data" / "schema.py")
    assert code_key("audience.profiles.aggregates", root=package) != before


def test_the_holdout_key_follows_the_sources_not_the_features(package):
    runs, pools = "audience.stages.holdout_runs", "audience.stages.training_data"
    before = code_key(runs, root=package), code_key(pools, root=package)
    assert before == (HOLDOUT_CODE, POOL_CODE)
    edit(package / "stages" / "evaluate.py")  # evaluation shapes neither
    assert (code_key(runs, root=package), code_key(pools, root=package)) == before
    edit(package / "rank" / "features.py")  # the features shape the labelled pools, not the runs
    assert code_key(runs, root=package) == before[0] and code_key(pools, root=package) != before[1]
    edit(package / "candidates" / "user_picks.py")  # a source shapes both
    assert code_key(runs, root=package) != before[0]
    closure = import_closure(runs, package)
    assert not {"audience.rank.features", "audience.rank.reranker", "audience.rank._booster"} & set(closure)


def test_relative_and_function_level_imports_are_followed(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "a.py").write_text("from . import b\n\ndef f():\n    from ..c import g\n")
    (root / "sub" / "b.py").write_text("import os\n")
    (root / "c.py").write_text("g = 1\n")
    (root / "d.py").write_text("")
    assert set(import_closure("pkg.sub.a", root)) == {"pkg", "pkg.sub", "pkg.sub.a", "pkg.sub.b", "pkg.c"}
