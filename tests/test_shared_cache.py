"""Two runs of one dataset at once share the weekly-aggregates cache and the holdout runs: both finish, and
their lists equal lone runs'."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from audience.io import file_lock, unheld

ROOT = Path(__file__).resolve().parents[1]


def _command(data_dir: Path, mode: str, run_dir: Path, weeks_dir: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "audience", "run", "--data-dir", str(data_dir), "--mode", mode),
        *("--run-dir", str(run_dir), "--weeks-dir", str(weeks_dir)),
        *("--out", str(run_dir / "submission.parquet")),
        *("--threads", "2", "--candidate-depth", "150", "--quiet"),
    ]


def _lists(run_dir: Path) -> np.ndarray:
    return np.load(run_dir / "lists" / "reranked.capped.npy")


def test_two_runs_at_once_on_one_cache_equal_lone_runs(tiny_dir, tiny_run, tmp_path):
    shared = tmp_path / "together"
    procs = {
        mode: subprocess.Popen(
            _command(tiny_dir, mode, shared / mode, shared / "weeks"),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in ("validate", "submit")
    }
    for mode, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{mode}: {err}"
    alone = tmp_path / "alone"
    subprocess.run(_command(tiny_dir, "submit", alone / "submit", alone / "weeks"), cwd=ROOT, check=True)
    assert np.array_equal(_lists(shared / "validate"), _lists(tiny_run.dir))
    assert np.array_equal(_lists(shared / "submit"), _lists(alone / "submit"))


def test_a_held_entry_is_not_free(tmp_path):
    lock = tmp_path / ".entry.lock"
    assert unheld(lock)
    with file_lock(lock, shared=True):
        assert not unheld(lock)
    assert unheld(lock)
