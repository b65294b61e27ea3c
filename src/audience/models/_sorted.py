"""A numba binary search over one row of a CSR matrix, shared by the models' kernels."""

from __future__ import annotations

import numba as nb


@nb.njit(cache=True, nogil=True)
def find_sorted(indices, lo, hi, key):  # pragma: no cover - numba
    """Position of ``key`` in the sorted ``indices[lo:hi]``, or -1."""
    while lo < hi:
        mid = (lo + hi) >> 1
        v = indices[mid]
        if v < key:
            lo = mid + 1
        elif v > key:
            hi = mid
        else:
            return mid
    return -1
