"""Errors the pipeline raises on bad input: each names the file, the column and what was expected."""

from __future__ import annotations


class DataError(ValueError):
    """Input data does not match the VK-LSVD layout or schema (names file, column, expected, found)."""


class SubmissionError(ValueError):
    """A submission breaks the challenge rules (schema, list size, distinct users, per-user cap, coverage)."""
