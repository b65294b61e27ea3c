"""How a stage runs: its config recorded in the run folder, BLAS threads limited to the run's, its wall time
and substeps (timing.py) in timings.json and, for an outermost stage, its peak RSS in memory.json and the
peak so far at each of its substeps' ends in memory_substeps.json. Used by
the pipeline's wiring and by the holdout runs of stages/training_data.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

from audience import timing
from audience.io import read_json, write_json
from audience.resources import peak_rss_gib, reset_peak_rss
from audience.stages.run import Run

_stage_depth = 0  # stages run inside a stage (the rank stage's holdout runs) do not reset the peak


@contextmanager
def _timed(run: Run, stage: str):
    """Record the stage wall time (timings.json); an outermost stage also its peak RSS, GiB (memory.json),
    and on an engine with worker processes (Dask) their largest peak under `workers`."""
    global _stage_depth
    outermost = _stage_depth == 0
    if outermost:
        reset_peak_rss()
        run.engine.worker_peak_gib(reset=True)
    _stage_depth += 1
    start = time.perf_counter()
    try:
        with timing.recorder(peak_rss_gib if outermost else None) as record:
            yield
    finally:
        _stage_depth -= 1
    seconds = time.perf_counter() - start
    run.record_timing(stage, seconds, record.times)
    if not outermost:  # a holdout run's stage, inside the rank stage
        timing.add(f"holdout {stage}", seconds)
    else:
        path = run.path("memory.json")
        memory = read_json(path) if path.exists() else {}
        memory[stage] = round(peak_rss_gib(), 3)
        workers = run.engine.worker_peak_gib()
        if workers is not None:
            memory.setdefault("workers", {})[stage] = round(workers, 3)
        write_json(memory, path)
        path = run.path("memory_substeps.json")  # the stage's peak so far at each substep's end
        substeps = read_json(path) if path.exists() else {}
        substeps[stage] = {name: round(gib, 3) for name, gib in record.peaks.items()}
        write_json(substeps, path)


def execute(run: Run, stage: str, function: Callable[[Run], object]) -> object:
    """Run one stage's `function` on `run`, recording its config and wall time in the run folder."""
    run.dir.mkdir(parents=True, exist_ok=True)
    write_json(run.cfg.to_dict(), run.path("config.json"))
    with threadpool_limits(limits=run.cfg.n_threads), _timed(run, stage):
        return function(run)
