"""The command line's error convention: bad input, a bad setting or a scheduler that does not answer is one
line and exit code 2; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import time

import pytest

from audience import pipeline
from audience.cli import main


def test_a_bad_setting_is_one_line_and_exit_2(tiny_dir, tmp_path, capsys):
    code = main(["run", "--data-dir", str(tiny_dir), "--run-dir", str(tmp_path), "--stages", "profiles,nope"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: unknown stage(s) ['nope']") and "Traceback" not in err
    assert main(["run", "--data-dir", str(tiny_dir), "--sources", "nope", "--run-dir", str(tmp_path)]) == 2


def test_a_bug_keeps_its_traceback(tiny_dir, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(pipeline, "run_all", broken)
    with pytest.raises(ValueError, match="a bug, not bad input"):
        main(["run", "--data-dir", str(tiny_dir), "--run-dir", str(tmp_path), "--quiet"])


def test_an_unreachable_scheduler_is_one_line_naming_it(tiny_dir, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("[dask]\nconnect_timeout_s = 1\n")
    start = time.perf_counter()
    code = main(
        [
            "run",
            "--config",
            str(config),
            "--data-dir",
            str(tiny_dir),
            "--run-dir",
            str(tmp_path / "run"),
            "--engine",
            "dask",
            "--scheduler",
            "tcp://127.0.0.1:9",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: dask scheduler tcp://127.0.0.1:9: no answer within 1 s")
    assert time.perf_counter() - start < 20
