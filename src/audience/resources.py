"""Peak resident memory of a stage, on Linux: the kernel's high-water mark (VmHWM), reset per stage.

`reset_peak_rss` writes 5 to /proc/self/clear_refs (Linux >= 4.0), so each stage of one process reports its
own peak, not the process's so far. Where that is unavailable the figure is the process's peak so far
(getrusage), which is still an upper bound."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def reset_peak_rss() -> bool:
    """Start a new peak-RSS window; False when the platform cannot (the peak then covers the process)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_gib() -> float:
    """Peak resident memory (GiB) since the last reset, or since the process started."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20  # bytes on macOS, kB on Linux
