"""Shared launcher of the numbered scripts: each runs one pipeline stage with the common flags."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import audience  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from audience.cli import main


def run_stage(name: str) -> None:
    raise SystemExit(main(["stage", name, *sys.argv[1:]]))
