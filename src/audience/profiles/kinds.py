"""The profile kinds in one table, and the one per-view weight that both passes over the weeks apply.

A profile is a user's weighted mean clip embedding; its kind says how much each view weighs. A week's
aggregate sums the weekly kinds (`code` >= 0); 'recency' is 'all' reweighted when the weeks are combined
(by 0.5 ** (weeks back / recency_half_life)), so it costs no accumulator. The week pass's numba kernel
(week_kernels.user_profile_sums) and the reference pass (reference_pass.build_fit_data) both call
`view_weight`: a new kind is a row of `KINDS` and a branch of `view_weight`, nothing else.

A view's flags arrive packed in one uint8 (bit k = the k-th of `packed_flags`); `flag_tables` turns each
packed value into its positive weight, whether it is a positive and whether it is a dislike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from audience.config import ProfileSettings


@dataclass(frozen=True)
class ProfileKind:
    name: str
    code: int  # view_weight's switch; -1: derived from `base` when the weeks are combined
    base: str  # the weekly kind whose sums it reads
    weighs: str  # what a view weighs


KINDS = (
    ProfileKind("all", 0, "all", "1 for every view"),
    ProfileKind("positive", 1, "positive", "the sum of flag_weights of the view's flags"),
    ProfileKind(
        "negative", 2, "negative", "1 for a dislike or a skip (watched < skip_share) without a positive flag"
    ),
    ProfileKind("timespent", 3, "timespent", "the share of the clip watched, capped at watch_cap"),
    ProfileKind("recency", -1, "all", "1 halving every recency_half_life weeks back from the last fit week"),
)
KIND = {kind.name: kind for kind in KINDS}
WEEKLY_KINDS = tuple(kind.name for kind in KINDS if kind.code >= 0)


def check_kinds(kinds: Sequence[str]) -> None:
    unknown = [k for k in kinds if k not in KIND]
    if unknown:
        raise ValueError(f"unknown profile type(s) {unknown}; known: {sorted(KIND)}")


def weekly_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """The weekly kinds a week must aggregate for these profile kinds (in KINDS order)."""
    check_kinds(kinds)
    needed = {KIND[k].base for k in kinds}
    return tuple(k for k in WEEKLY_KINDS if k in needed)


def recency_weight(weeks_back: int, settings: ProfileSettings) -> float:
    """What a view `weeks_back` weeks before the last fit week weighs in 'recency' and in the histories."""
    return 0.5 ** (weeks_back / settings.recency_half_life)


def profile_columns(settings: ProfileSettings, positive_flags: Sequence[str]) -> tuple[str, ...]:
    """Every interaction column a pass over the weeks reads."""
    return tuple(dict.fromkeys((*positive_flags, *settings.flag_weights, "dislike", "timespent")))


def packed_flags(positive_flags: Sequence[str], settings: ProfileSettings) -> tuple[str, ...]:
    """Every flag a pass reads, in the order of their bits in the packed column."""
    return tuple(c for c in profile_columns(settings, positive_flags) if c != "timespent")


def flag_tables(
    packed: Sequence[str], positive_flags: Sequence[str], settings: ProfileSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per packed flag value (bit k = packed[k]): the positive weight (float32, summed in flag_weights'
    order), whether any positive flag is set, whether the clip was disliked."""
    values = np.arange(1 << len(packed))
    bit = {flag: (values >> k) & 1 == 1 for k, flag in enumerate(packed)}
    weight = np.zeros(values.shape[0], dtype=np.float32)
    for flag, value in settings.flag_weights.items():
        weight += np.float32(value) * bit[flag]
    positive = np.zeros(values.shape[0], dtype=bool)
    for flag in positive_flags:
        positive |= bit[flag]
    return weight, positive, bit["dislike"]


@njit(nogil=True, cache=True)
def view_weight(
    code: int,
    packed: int,
    seconds: np.float32,
    duration: np.float32,
    weight_of: np.ndarray,
    positive_of: np.ndarray,
    dislike_of: np.ndarray,
    skip_share: np.float32,
    watch_cap: np.float32,
) -> np.float32:
    """The weight of one view in the weekly kind `code` (KINDS), in float32: `packed` its flags,
    `seconds` its timespent, `duration` its clip's seconds (>= 1); the tables are flag_tables'."""
    if code == 0:
        return np.float32(1.0)
    if code == 1:
        return weight_of[packed]
    if code == 2:
        skip = seconds < skip_share * duration
        negative = (dislike_of[packed] or skip) and not positive_of[packed]
        return np.float32(1.0) if negative else np.float32(0.0)
    return min(np.float32(seconds / duration), watch_cap)


@njit(parallel=True, nogil=True, cache=True)
def view_weights(
    code: int,
    flags: np.ndarray,
    timespent: np.ndarray,
    duration: np.ndarray,
    tables: tuple[np.ndarray, np.ndarray, np.ndarray],
    skip_share: np.float32,
    watch_cap: np.float32,
) -> np.ndarray:
    """`view_weight` of every row (flags, timespent and its clip's duration per row), float32."""
    weight_of, positive_of, dislike_of = tables
    out = np.empty(flags.shape[0], dtype=np.float32)
    for r in prange(flags.shape[0]):
        out[r] = view_weight(
            code,
            flags[r],
            np.float32(timespent[r]),
            duration[r],
            weight_of,
            positive_of,
            dislike_of,
            skip_share,
            watch_cap,
        )
    return out
