"""The synthetic datasets' settings: `SyntheticConfig` (size, shape and the generator's rates) and the named
presets. data/synthetic.py generates a dataset from one; the CLI's `synth` command and the tests pick them by
name."""

from __future__ import annotations

from dataclasses import dataclass, replace

from audience.errors import ConfigError

SHAPES = ("rolling", "stocked")  # synthetic data shapes (data/synthetic.py)


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and shape of a synthetic dataset. `PRESETS` below; every field can be overridden
    (data/synthetic.py generates it)."""

    name: str = "custom"
    n_users: int = 2_000
    n_items: int = 3_000
    n_authors: int = 250
    n_train_weeks: int = 6
    views_per_user_week: float = 12.0
    rate_multiplier: float = 1.0  # scales every per-view flag rate (real rates x this, capped at 0.5)
    n_topics: int = 24
    latent_dim: int = 16
    embedding_dim: int = 64
    embedding_noise: float = 0.55  # content noise: how much of the embedding is unrelated to taste
    item_lifetime_weeks: int = 4
    quality_sigma: float = 0.9  # log-normal spread of clip quality: higher concentrates views on few clips
    freshness_decay: float = 0.45  # a live clip's exposure weight shrinks by this factor each week
    channel_probs: tuple[float, float, float] = (0.45, 0.35, 0.20)  # popularity, topic, favourite authors
    activity_sigma: float = 1.1  # log-normal spread of user activity (heavy tail)
    late_joiner_share: float = 0.08  # users whose first active week is uniform over all weeks
    taste_weight: float = 1.6
    fan_weight: float = 1.2
    quality_weight: float = 0.4
    propensity_sigma: float = 0.8
    affinity_noise: float = 1.0
    oracle_depth: int = 300
    oracle: bool = True  # write the hidden oracle lists (costs ~ new clips x users per truth week)
    # > 0: exactly this many clips are released in the test week (the challenge's test week brings 47,765
    # new clips), the others over the earlier weeks; 0 keeps the uniform release schedule
    test_new_items: int = 0
    # pad the metadata to the real global sizes (10 M users, 19.6 M clips: data/metadata_padding.py)
    global_metadata: bool = False
    # "rolling": clips are released every week and live `item_lifetime_weeks`; "stocked": one catalogue live
    # in every week (no new clip in any train week after the first), new clips only in validation and test
    # (a share `stocked_new_share` of all clips, exposure x `new_clip_boost`, fading like rolling clips)
    shape: str = "rolling"
    stocked_new_share: float = 0.1
    new_clip_boost: float = 4.0
    # > 0: also write targets/mixed_<split>.parquet per truth week: its new clips plus up to this many
    # warm clips (seen in that week's fit weeks), the shape of a target list whose clips have an audience
    warm_targets: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ConfigError(f"synthetic shape must be one of {SHAPES}, got {self.shape!r}")

    @property
    def n_weeks(self) -> int:
        return self.n_train_weeks + 2


# shaped like the challenge's up0.01_ip0.01 subsample: 100,000 users (the most active 1 %), 196,277
# clips, ~544 views per user-week kept (1.36 B train rows), 47,765 new clips in the test week, global
# metadata. At this density a user sees a large share of the live catalogue, so clips live longer and
# quality is less concentrated than in the other presets; about half the draws repeat a (user, clip)
# pair and are dropped, hence 1,375 drawn views per active user-week.
VK_PRESET = SyntheticConfig(
    name="vk",
    n_users=100_000,
    n_items=196_277,
    n_authors=20_000,
    n_train_weeks=25,
    views_per_user_week=1_375.0,
    rate_multiplier=1.0,
    item_lifetime_weeks=12,
    freshness_decay=0.85,
    quality_sigma=0.4,
    activity_sigma=0.8,
    test_new_items=47_765,
    global_metadata=True,
)


# many users at a modest density, for the engines' memory against the number of users (issue 25): a million
# users who view ~60 clips a week over 6 train weeks (~0.3 B train rows), 7,500 clips released a week;
# `many-users-half` is the same world with half the users, to see what doubles with them. Few weeks, so the
# weekly aggregates (about 1.4 KB per active user-week) fit beside the other worlds on a laptop's disk.
MANY_USERS_PRESET = SyntheticConfig(
    name="many-users",
    n_users=1_000_000,
    n_items=60_000,
    n_authors=10_000,
    n_train_weeks=6,
    views_per_user_week=60.0,
    rate_multiplier=1.0,
)


PRESETS: dict[str, SyntheticConfig] = {
    "tiny": SyntheticConfig(
        name="tiny",
        n_users=1_500,
        n_items=2_400,
        n_authors=200,
        n_train_weeks=6,
        views_per_user_week=14.0,
        rate_multiplier=4.0,
    ),
    "small": SyntheticConfig(
        name="small",
        n_users=20_000,
        n_items=40_000,
        n_authors=3_000,
        n_train_weeks=25,
        views_per_user_week=14.0,
        rate_multiplier=2.0,
    ),
    "medium": SyntheticConfig(
        name="medium",
        n_users=100_000,
        n_items=200_000,
        n_authors=15_000,
        n_train_weeks=25,
        views_per_user_week=70.0,
        rate_multiplier=1.0,
    ),
    "large": SyntheticConfig(
        name="large",
        n_users=300_000,
        n_items=600_000,
        n_authors=40_000,
        n_train_weeks=25,
        views_per_user_week=115.0,
        rate_multiplier=1.0,
        oracle=False,
    ),
    "vk": VK_PRESET,
    # vk's per-user density (views per user-week, share of the live catalogue seen) with a tenth of its users,
    # for tests and quick runs: the same catalogue (a tenth of the clips would make users see most of it,
    # and de-duplication would halve the density); the test week releases vk's share of new clips per user
    # (4,777); metadata not padded.
    "vk-small": replace(
        VK_PRESET, name="vk-small", n_users=10_000, test_new_items=4_777, global_metadata=False
    ),
    "many-users": MANY_USERS_PRESET,
    "many-users-half": replace(MANY_USERS_PRESET, name="many-users-half", n_users=500_000),
}


def preset(name: str, **overrides) -> SyntheticConfig:
    """A named preset, optionally with fields overridden (e.g. seed=1)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown synthetic preset {name!r}; choose from {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)
