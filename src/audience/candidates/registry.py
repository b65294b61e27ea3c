"""Build generators by name: 'popular', 'random', 'author_fans', 'coengagement', '<backend>:<profile>'
('hnsw:all', 'exact:positive'), 'gmm:<all|positive>' (soft-cluster profiles), 'bpr_bridge', 'ease_bridge',
'slim_bridge' (collaborative models bridged to new clips), 'own_audience' (warm targets: users like the
clip's own engaged users)."""

from __future__ import annotations

from audience.candidates.authors import AuthorFansSource
from audience.candidates.base import CandidateSource
from audience.candidates.cf_bridges import BprBridgeSource, NeighbourBridgeSource
from audience.candidates.coengagement import CoEngagementSource
from audience.candidates.embedding import EmbeddingSource
from audience.candidates.gmm_clusters import GmmSource
from audience.candidates.own_audience import OwnAudienceSource
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
    if name == "bpr_bridge":
        return BprBridgeSource(hnsw=cfg.hnsw, n_threads=cfg.n_threads, seed=cfg.seed)
    if name in ("ease_bridge", "slim_bridge"):
        return NeighbourBridgeSource(
            name.split("_")[0], hnsw=cfg.hnsw, n_threads=cfg.n_threads, seed=cfg.seed
        )
    if name == "own_audience":
        return OwnAudienceSource()
    if name == "coengagement":
        return CoEngagementSource(hnsw=cfg.hnsw, n_threads=cfg.n_threads, seed=cfg.seed)
    backend, _, profile = name.partition(":")
    if backend == "gmm" and profile:
        return GmmSource(profile, "hnsw", hnsw=cfg.hnsw, n_threads=cfg.n_threads, seed=cfg.seed)
    if backend in ("hnsw", "exact") and profile:
        return EmbeddingSource(profile, backend, cfg.hnsw, cfg.n_threads, cfg.seed)
    raise ValueError(
        f"unknown candidate source {name!r}; use popular, random, author_fans, coengagement, "
        "hnsw:<profile>, exact:<profile>, gmm:<all|positive>, bpr_bridge, ease_bridge, slim_bridge or "
        "own_audience"
    )
