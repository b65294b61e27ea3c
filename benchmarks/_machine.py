"""The machine and versions a benchmark ran on, written beside every figure."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

PACKAGES = (
    "polars",
    "numpy",
    "scipy",
    "scikit-learn",
    "hnswlib",
    "xgboost",
    "numba",
    "implicit",
    "voyager",
    "matplotlib",
)


def versions() -> dict[str, str]:
    """Installed version of every library the benchmarks measure or compare against."""
    found = {}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def machine() -> dict:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "versions": versions(),
    }


def machine_line() -> str:
    m = machine()
    return f"{m['date']}, {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB RAM, Python {m['python']}"
