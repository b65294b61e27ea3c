"""Progress reports that stay readable in a log file: a tqdm bar on a terminal, plain lines otherwise.

`bar(desc, total)` returns an object with `update(n, note)` and `close()` (also a context manager). On a
terminal it is a tqdm bar; when stderr is not a terminal (a log file, `| tee`), it prints one line at most
every `every_s` seconds plus a final line, so a log gets no carriage returns. `iterate(items, desc)` reports
a loop; `note(text)` prints one line. All are silent after `configure(enabled=False)` (the CLI's
--quiet) or with `enabled=False`. Limits: one global switch per process; lines go to stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_STATE = {"enabled": True}


def configure(enabled: bool) -> None:
    """Turn every progress report of this process on or off."""
    _STATE["enabled"] = bool(enabled)


def is_enabled() -> bool:
    return _STATE["enabled"]


def note(text: str) -> None:
    """One line on stderr (when progress is on)."""
    if _STATE["enabled"]:
        print(text, file=sys.stderr, flush=True)


class _Lines:
    """The log-file form of a bar: '<desc>: <n>/<total> <unit> (<pct>%), <s> s[, note]' lines."""

    def __init__(self, desc: str, total: float | None, unit: str, every_s: float):
        self.desc, self.total, self.unit, self.every_s = desc, total, unit, every_s
        self.n, self.last_note = 0.0, ""
        self.start = self.last = time.perf_counter()

    def _line(self, final: bool) -> str:
        count = f"{self.n:,.0f}" + (f"/{self.total:,.0f}" if self.total else "")
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        elapsed = time.perf_counter() - self.start
        tail = f", {self.last_note}" if self.last_note else ""
        return f"{self.desc}: {count} {self.unit}{share}, {elapsed:.1f} s{' (done)' if final else ''}{tail}"

    def update(self, n: float = 1, note: str = "") -> None:
        self.n += n
        self.last_note = note or self.last_note
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            print(self._line(False), file=sys.stderr, flush=True)

    def close(self) -> None:
        print(self._line(True), file=sys.stderr, flush=True)

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Bar:
    """tqdm with the same `update(n, note)` call."""

    def __init__(self, desc: str, total: float | None, unit: str):
        self.tqdm = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr, leave=True)

    def update(self, n: float = 1, note: str = "") -> None:
        if note:
            self.tqdm.set_postfix_str(note, refresh=False)
        self.tqdm.update(n)

    def close(self) -> None:
        self.tqdm.close()

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Silent:
    def update(self, n: float = 1, note: str = "") -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def bar(
    desc: str, total: float | None = None, unit: str = "it", enabled: bool = True, every_s: float = 10.0
) -> _Bar | _Lines | _Silent:
    """A progress report for `total` units (None: unknown): a bar on a terminal, lines in a log."""
    if not (enabled and _STATE["enabled"]):
        return _Silent()
    if sys.stderr.isatty():
        return _Bar(desc, total, unit)
    return _Lines(desc, total, unit, every_s)


def iterate(items: Iterable[T], desc: str, unit: str = "it", enabled: bool = True) -> Iterator[T]:
    """`items` one by one, reporting each as a step of `bar` (total = len(items) when it has one)."""
    total = len(items) if isinstance(items, Sized) else None
    with bar(desc, total, unit, enabled) as report:
        for item in items:
            yield item
            report.update(1)
