"""Cache keys from the import closure: an edit inside a cache's closure changes its key, one outside not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import audience
from audience.code_key import code_key, import_closure
from audience.profiles.aggregates import AGGREGATE_CODE
from audience.stages.training_data import UPSTREAM_CODE


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


def test_the_holdout_key_follows_the_sources_and_features(package):
    before = code_key("audience.stages.training_data", root=package)
    assert before == UPSTREAM_CODE
    edit(package / "stages" / "evaluate.py")  # evaluation does not shape a holdout run
    assert code_key("audience.stages.training_data", root=package) == before
    edit(package / "candidates" / "user_picks.py")
    assert code_key("audience.stages.training_data", root=package) != before


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
