"""Sub-step wall times inside a stage, for timings.json's `substeps`.

A stage opens a `recorder()`; code anywhere below it wraps a phase in `substep(name)`, which adds its wall
seconds to the innermost open recorder (repeated names add up; nothing is recorded when no recorder is
open). Single-threaded bookkeeping: phases that run on other threads or Dask workers are timed from the
thread that waits for them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

_open: list[dict[str, float]] = []


@contextmanager
def recorder() -> Iterator[dict[str, float]]:
    """Collect the substeps timed while it is open (name -> seconds)."""
    times: dict[str, float] = {}
    _open.append(times)
    try:
        yield times
    finally:
        _open.pop()  # recorders nest like the blocks that open them


def add(name: str, seconds: float) -> None:
    """Add `seconds` to `name` in the innermost open recorder, if any."""
    if _open:
        _open[-1][name] = _open[-1].get(name, 0.0) + seconds


@contextmanager
def substep(name: str) -> Iterator[None]:
    """Time the block as substep `name`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        add(name, time.perf_counter() - start)
