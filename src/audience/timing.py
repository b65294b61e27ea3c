"""Sub-step wall times inside a stage, for timings.json's `substeps`, and the memory high-water mark at the
end of each sub-step.

A stage opens a `recorder()`; code anywhere below it wraps a phase in `substep(name)`, which adds its wall
seconds to the innermost open recorder (repeated names add up; nothing is recorded when no recorder is
open). A recorder given a `probe` (a callable returning the process's peak RSS since the stage began, GiB)
also keeps, per sub-step, the largest value the probe returned when that sub-step ended: the peak is
monotonic within a stage, so the first sub-step whose value jumps is the one that set it. Single-threaded
bookkeeping: phases that run on other threads or Dask workers are timed from the thread that waits for them
(and a worker's memory is not the probe's)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Record:
    """What a recorder collected: seconds per sub-step and, with a probe, the peak (GiB) at each one's end."""

    times: dict[str, float] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)
    probe: Callable[[], float] | None = None


_open: list[Record] = []


@contextmanager
def recorder(probe: Callable[[], float] | None = None) -> Iterator[Record]:
    """Collect the substeps timed while it is open (and, with `probe`, the peak at each one's end)."""
    record = Record(probe=probe)
    _open.append(record)
    try:
        yield record
    finally:
        _open.pop()  # recorders nest like the blocks that open them


def add(name: str, seconds: float) -> None:
    """Add `seconds` to `name` in the innermost open recorder, if any, and read the outermost recorder's
    probe (a nested stage's phase counts in the outer stage's memory too)."""
    if _open:
        _open[-1].times[name] = _open[-1].times.get(name, 0.0) + seconds
        outer = _open[0]
        if outer.probe is not None:
            outer.peaks[name] = max(outer.peaks.get(name, 0.0), outer.probe())


@contextmanager
def substep(name: str) -> Iterator[None]:
    """Time the block as substep `name`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        add(name, time.perf_counter() - start)
