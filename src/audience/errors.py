"""Errors the pipeline raises on bad input: each names the file, the column and what was expected."""

from __future__ import annotations


class DataError(ValueError):
    """Input data does not match the VK-LSVD layout or schema (names file, column, expected, found)."""


class SubmissionError(ValueError):
    """A submission breaks the challenge rules (schema, list size, distinct users, per-user cap, coverage)."""


class ConfigError(ValueError):
    """A setting, flag or name the run cannot use (names it, what was expected and what was found)."""


class SchedulerUnreachable(ConnectionError):
    """The Dask scheduler named by `--scheduler` / `dask.scheduler` did not answer."""


class TooLittleData(DataError):
    """Valid input with too little for a stage to learn from (no new clip in a label week, fewer than 2
    training clips with a positive): callers with a fallback catch this, never a plain DataError."""


# what the command line reports in one line (exit 2) rather than as a bug's traceback (exit 1)
USER_ERRORS = (DataError, SubmissionError, ConfigError, SchedulerUnreachable)
