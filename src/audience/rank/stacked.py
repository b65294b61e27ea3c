"""A frame stacked from parts that are read only when asked: the reranker's training frames (one labelled
pool per label week), so a model can read the few columns it samples by, then each part once, keeping only
its sampled rows, instead of holding every part and their stack at once.

Limits: each call reads the parts again (from their files, when they are scans); `filtered_blocks` holds one
block of a part's rows at a time."""

from __future__ import annotations

from collections.abc import Iterator
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

    def filtered_blocks(
        self, keep: np.ndarray, columns: list[str], block_rows: int
    ) -> Iterator[pl.DataFrame]:
        """The stack's `columns` where `keep` holds, in stack order, read `block_rows` rows of a part at a
        time (a slice of a parquet scan reads only its row groups): their concatenation equals
        ``collect().filter(keep).select(columns)`` up to the common types, which each block keeps from its
        part (a column missing from a part is null there, as Float32)."""
        start = 0
        for part in self.parts:
            height = part.select(pl.len()).collect().item()
            if start + height > keep.size:
                raise ValueError(f"keep has {keep.size} rows; the parts have more")
            present = set(part.collect_schema().names())
            chosen = [pl.col(c) if c in present else pl.lit(None, pl.Float32).alias(c) for c in columns]
            for offset in range(0, height, block_rows):
                mask = keep[start + offset : start + min(offset + block_rows, height)]
                if mask.any():
                    block = part.slice(offset, block_rows).select(chosen).collect()
                    yield block.filter(pl.Series(mask, dtype=pl.Boolean))
            start += height
        if start != keep.size:
            raise ValueError(f"keep has {keep.size} rows; the parts have {start}")

    def collect(self) -> pl.DataFrame:
        return pl.concat([part.collect() for part in self.parts], how="diagonal_relaxed")
