"""A frame stacked from parts that are read only when asked: the reranker's training frames (one labelled
pool per label week), so a model can read the few columns it samples by, then each part once, keeping only
its sampled rows, instead of holding every part and their stack at once.

Limits: each call reads the parts again (from their files, when they are scans); `filter` holds one whole
part and the sampled rows of the parts before it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class StackedFrames:
    """The vertical stack of `parts` (`pl.concat(..., how="diagonal_relaxed")`: columns missing from a part
    are null there, types widen to a common one)."""

    parts: tuple[pl.LazyFrame, ...]

    @classmethod
    def of(cls, frame: pl.DataFrame) -> StackedFrames:
        return cls((frame.lazy(),))

    def columns(self) -> list[str]:
        """The stack's column names, in the concatenation's order."""
        names: dict[str, None] = {}
        for part in self.parts:
            names.update(dict.fromkeys(part.collect_schema().names()))
        return list(names)

    def select(self, columns: list[str]) -> pl.DataFrame:
        """The stack of `columns` alone."""
        return pl.concat([part.select(columns).collect() for part in self.parts], how="diagonal_relaxed")

    def filter(self, keep: np.ndarray) -> pl.DataFrame:
        """The stack's rows where `keep` (one bool per stacked row) holds, each part read once: equal to
        ``collect().filter(keep)``."""
        kept, start = [], 0
        for part in self.parts:
            frame = part.collect()
            mask = keep[start : start + frame.height]
            if mask.size != frame.height:
                raise ValueError(f"keep has {keep.size} rows; the parts have more")
            start += frame.height
            kept.append(frame.filter(pl.Series(mask, dtype=pl.Boolean)))
            del frame
        if start != keep.size:
            raise ValueError(f"keep has {keep.size} rows; the parts have {start}")
        return pl.concat(kept, how="diagonal_relaxed")

    def collect(self) -> pl.DataFrame:
        return pl.concat([part.collect() for part in self.parts], how="diagonal_relaxed")
