"""Build generators by name: 'popular', 'random', 'author_fans', 'coengagement', '<backend>:<profile>'
('hnsw:all', 'exact:positive'), 'reach:<profile>' (activity x taste), 'gmm:<all|positive>' (soft-cluster
profiles), 'bpr_bridge', 'ease_bridge', 'slim_bridge' (collaborative models bridged to new clips),
'own_audience' (warm targets: users like the clip's own engaged users), 'picks:<profile|author>' (the
other direction: each user picks their best target clips). Each is built from its own settings
(config.SourceSettings, the `[source.NAME]` tables) and comes wrapped in `Reported`, which prints one
progress line per answered batch (fit and query time)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from audience import progress
from audience.arrays import TopK
from audience.candidates.authors import AuthorFansSource
from audience.candidates.base import CandidateSource, ClipQueries
from audience.candidates.cf_bridges import BprBridgeSource, NeighbourBridgeSource
from audience.candidates.coengagement import CoEngagementSource
from audience.candidates.embedding import EmbeddingSource
from audience.candidates.gmm_clusters import GmmSource
from audience.candidates.own_audience import OwnAudienceSource
from audience.candidates.popular import PopularSource
from audience.candidates.random_users import RandomSource
from audience.candidates.reach import ReachSource
from audience.candidates.user_picks import UserPicksSource
from audience.config import RunConfig
from audience.data.catalog import Catalog
from audience.errors import ConfigError
from audience.profiles.fit_data import FitData


class Reported:
    """A generator that reports its fit and query times as one progress line per `recommend` call; every
    other attribute is the wrapped generator's. It changes no result."""

    def __init__(self, source: CandidateSource):
        self.source, self.name = source, source.name
        self.fit_s = 0.0

    def fit(self, data: FitData, catalog: Catalog) -> Reported:
        start = time.perf_counter()
        self.source.fit(data, catalog)
        self.fit_s = time.perf_counter() - start
        return self

    def recommend(self, clips: ClipQueries, k: int) -> TopK:
        start = time.perf_counter()
        top = self.source.recommend(clips, k)
        progress.note(
            f"source {self.name}: fitted in {self.fit_s:.1f} s, top {k} of {len(clips):,} clips "
            f"in {time.perf_counter() - start:.1f} s"
        )
        return top

    def __getattr__(self, attr: str) -> Any:
        if attr == "source":  # not set yet (unpickling): no recursion
            raise AttributeError(attr)
        return getattr(self.source, attr)


def needs_mixture(names: Iterable[str]) -> bool:
    """Whether any of these sources reads the soft-cluster (GMM) profiles, which the profiles stage then
    fits (a mixture and one more pass over the fit weeks)."""
    return any(name.startswith(("gmm:", "reach:gmm_")) for name in names)


def make_source(name: str, cfg: RunConfig) -> CandidateSource:
    """The generator `name`, configured from `cfg`, wrapped in `Reported`."""
    return Reported(_build(name, cfg))


def _build(name: str, cfg: RunConfig) -> CandidateSource:
    """The source `name` with its settings (`cfg.source`), the shared index settings and the run's seed."""
    settings, index = cfg.source, {"hnsw": cfg.hnsw, "n_threads": cfg.n_threads, "seed": cfg.seed}
    if name == "popular":
        return PopularSource()
    if name == "random":
        return RandomSource(cfg.seed)
    if name == "author_fans":
        return AuthorFansSource(settings.author_fans)
    if name == "bpr_bridge":
        return BprBridgeSource(settings.bpr_bridge, **index)
    if name in ("ease_bridge", "slim_bridge"):
        return NeighbourBridgeSource(name.split("_")[0], getattr(settings, name), **index)
    if name == "own_audience":
        return OwnAudienceSource(settings.own_audience)
    if name == "coengagement":
        return CoEngagementSource(settings.coengagement, **index)
    backend, _, profile = name.partition(":")
    if backend == "reach" and profile:
        return ReachSource(profile, **index)
    if backend == "picks" and profile:
        return UserPicksSource(profile, cfg.list_size, settings.picks, **index, fans=settings.author_fans)
    if backend == "gmm" and profile:
        return GmmSource(profile, "hnsw", **index)
    if backend in ("hnsw", "exact") and profile:
        return EmbeddingSource(profile, backend, **index)
    raise ConfigError(
        f"unknown candidate source {name!r}; use popular, random, author_fans, coengagement, "
        "hnsw:<profile>, exact:<profile>, reach:<profile>, gmm:<all|positive>, bpr_bridge, ease_bridge, "
        "slim_bridge, own_audience or picks:<profile|author>"
    )
