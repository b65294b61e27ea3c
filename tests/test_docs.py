"""The README's generated blocks are what `make docs` writes from the committed result files."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "docs.py"


def load_docs():
    spec = importlib.util.spec_from_file_location("docs_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_readme_is_what_make_docs_writes():
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_readme_is_a_manual_of_bounded_size():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150  # a manual: the figure pages live under docs/
    assert max(len(line) for line in lines) <= 200


def test_every_block_has_a_generator_and_a_marker():
    docs = load_docs()
    text = "".join(page.read_text() for page in docs.PAGES)
    for name in docs.BLOCKS:
        assert f"<!-- figures:{name} -->" in text and f"<!-- /figures:{name} -->" in text


def test_render_rewrites_only_the_marked_blocks():
    docs = load_docs()
    text = "intro\n<!-- figures:demo -->\nstale 0.9999\n<!-- /figures:demo -->\noutro\n"
    out = docs.render(text)
    assert out.startswith("intro\n<!-- figures:demo -->\n| method |") and out.endswith(
        "<!-- /figures:demo -->\noutro\n"
    )
    assert "stale" not in out
    assert docs.render(out) == out  # idempotent
    with pytest.raises(KeyError, match="nope"):
        docs.render("<!-- figures:nope -->\n<!-- /figures:nope -->")
