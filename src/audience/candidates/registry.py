"""Build generators by name: 'popular', 'random', 'author_fans', 'coengagement', '<backend>:<profile>'
('hnsw:all', 'exact:positive'), 'gmm:<all|positive>' (soft-cluster profiles)."""

from __future__ import annotations

from audience.candidates.authors import AuthorFansSource
from audience.candidates.base import CandidateSource
from audience.candidates.coengagement import CoEngagementSource
from audience.candidates.embedding import EmbeddingSource
from audience.candidates.gmm_clusters import GmmSource
from audience.candidates.popular import PopularSource
from audience.candidates.random_users import RandomSource
from audience.config import RunConfig


def make_source(name: str, cfg: RunConfig) -> CandidateSource:
    if name == "popular":
        return PopularSource()
    if name == "random":
        return RandomSource(cfg.seed)
    if name == "author_fans":
        return AuthorFansSource()
    if name == "coengagement":
        return CoEngagementSource(hnsw=cfg.hnsw, n_threads=cfg.n_threads, seed=cfg.seed)
    backend, _, profile = name.partition(":")
    if backend == "gmm" and profile:
        return GmmSource(profile, "hnsw", hnsw=cfg.hnsw, n_threads=cfg.n_threads, seed=cfg.seed)
    if backend in ("hnsw", "exact") and profile:
        return EmbeddingSource(profile, backend, cfg.hnsw, cfg.n_threads, cfg.seed)
    raise ValueError(
        f"unknown candidate source {name!r}; use popular, random, author_fans, coengagement, "
        "hnsw:<profile>, exact:<profile> or gmm:<all|positive>"
    )
