"""Errors the pipeline raises on bad input: each names the file, the column and what was expected."""

from __future__ import annotations


class DataError(ValueError):
    """Input data does not match the VK-LSVD layout or schema (names file, column, expected, found)."""


class SubmissionError(ValueError):
    """A submission breaks the challenge rules (schema, list size, distinct users, per-user cap, coverage)."""


class TooLittleData(DataError):
    """Valid input with too little for a stage to learn from (no new clip in a label week, fewer than 2
    training clips with a positive): callers with a fallback catch this, never a plain DataError."""
