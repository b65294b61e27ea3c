"""Build generators by name: 'popular', 'random', '<backend>:<profile>' ('hnsw:all', 'exact:positive')."""

from __future__ import annotations

from audience.candidates.base import CandidateSource
from audience.candidates.embedding import EmbeddingSource
from audience.candidates.popular import PopularSource
from audience.candidates.random_users import RandomSource
from audience.config import RunConfig


def make_source(name: str, cfg: RunConfig) -> CandidateSource:
    spec = name
    if spec == "popular":
        return PopularSource()
    if spec == "random":
        return RandomSource(cfg.seed)
    backend, _, profile = spec.partition(":")
    if backend in ("hnsw", "exact") and profile:
        return EmbeddingSource(profile, backend, cfg.hnsw, cfg.n_threads, cfg.seed)
    raise ValueError(
        f"unknown candidate source {name!r}; use popular, random, hnsw:<profile>, exact:<profile>"
    )
