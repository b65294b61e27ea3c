"""Reopen a finished pipeline run from its folder (its recorded config, data paths resolved from the repo)."""

from __future__ import annotations

from pathlib import Path

from audience.config import load_config
from audience.io import read_json
from audience.stages.run import Run

ROOT = Path(__file__).resolve().parents[1]


def open_run(run_dir: Path) -> Run:
    saved = read_json(Path(run_dir) / "config.json")
    data_dir = Path(saved["data_dir"])
    data_dir = data_dir if data_dir.is_absolute() else ROOT / data_dir
    return Run(
        load_config(data_dir=data_dir, subsample=saved["subsample"], run_dir=Path(run_dir), quiet=True)
    )
