"""One typed configuration for a run: defaults in code, overrides from a TOML file, then from CLI flags."""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from audience.data.schema import DEFAULT_POSITIVE_FLAGS, FLAG_COLUMNS

MODES = ("validate", "submit")
DEFAULT_SUBMISSION = "submissions/submission.parquet"
STAGES = ("profiles", "candidates", "blend", "assign", "evaluate", "submission")


@dataclass(frozen=True)
class HnswConfig:
    """hnswlib parameters. `ef` is a query-time setting that hnswlib does not save with an index."""

    m: int = 16
    ef_construction: int = 200
    ef: int = 256


@dataclass(frozen=True)
class RunConfig:
    data_dir: Path = Path("data/synthetic-small")
    subsample: str | None = None
    mode: str = "validate"
    targets: Path | None = None  # parquet with an item_id column; submit mode's default is the test week
    out: Path | None = None  # default: submissions/submission.parquet (submit), the run folder (validate)
    run_dir: Path | None = None  # artifacts folder; default artifacts/<dataset>-<mode>
    seed: int = 0
    n_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    positive_flags: tuple[str, ...] = DEFAULT_POSITIVE_FLAGS
    embedding_dim: int = 64
    sources: tuple[str, ...] = ("popular", "hnsw:all")
    baselines: tuple[str, ...] = ("random", "exact:all")  # scored for the report, not blended
    candidate_depth: int = 300
    blend_rrf_k: float = 60.0
    ann_recall_queries: int = 2000  # target clips sampled to measure HNSW recall against exact search
    list_size: int = 100
    user_cap: int = 100
    assignment: str = "slots"  # cap-aware assignment strategy: "slots" (draft by rank) or "global"
    final_method: str = "blend"
    hnsw: HnswConfig = HnswConfig()
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        unknown = [f for f in self.positive_flags if f not in FLAG_COLUMNS]
        if unknown or not self.positive_flags:
            raise ValueError(
                f"positive_flags {list(self.positive_flags)}: each must be one of {FLAG_COLUMNS}"
            )
        methods = (*self.sources, *self.baselines, "blend")
        if self.final_method not in methods:
            raise ValueError(f"final_method {self.final_method!r} must be one of the run's methods {methods}")
        if self.assignment not in ("slots", "global"):
            raise ValueError(f"assignment must be 'slots' or 'global', got {self.assignment!r}")
        if self.candidate_depth < self.list_size:
            raise ValueError(
                f"candidate_depth ({self.candidate_depth}) must be >= list_size ({self.list_size})"
            )

    @property
    def dataset_name(self) -> str:
        return self.data_dir.name + (f"-{self.subsample}" if self.subsample else "")

    @property
    def artifacts(self) -> Path:
        return (
            self.run_dir
            if self.run_dir is not None
            else Path("artifacts") / f"{self.dataset_name}-{self.mode}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _coerce(name: str, value: Any, current: Any) -> Any:
    if name in ("data_dir", "out", "targets", "run_dir"):
        return None if value in (None, "") else Path(value)
    if name in ("positive_flags", "sources", "baselines"):
        return tuple(value.split(",")) if isinstance(value, str) else tuple(value)
    if name == "hnsw" and isinstance(value, dict):
        known = {f.name for f in fields(HnswConfig)}
        if set(value) - known:
            raise ValueError(f"unknown [hnsw] key(s) {sorted(set(value) - known)}; known: {sorted(known)}")
        return replace(current, **value)
    return value


def load_config(toml_path: Path | None = None, **overrides: Any) -> RunConfig:
    """Defaults, then the TOML file's keys, then non-None overrides (CLI flags)."""
    values: dict[str, Any] = {}
    if toml_path is not None:
        with open(toml_path, "rb") as fh:
            values.update(tomllib.load(fh))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(RunConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown config key(s) {sorted(unknown)}; known: {sorted(known)}")
    base = RunConfig()
    return replace(base, **{k: _coerce(k, v, getattr(base, k)) for k, v in values.items()})
