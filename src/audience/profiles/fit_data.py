"""What the generators learn from (`FitData`): activity counts, averaged clip-embedding profiles and sparse
histories, with its save / load. The week pass (profiles/aggregates.py) builds it; reference_pass.py builds
the same from the raw weeks directly, for tests and benchmarks. A profile is the weighted mean embedding of
the clips a user watched (profiles/kinds.py says how a view weighs), L2-normalised for cosine search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from audience.data.weeks import WeekBatch
from audience.io import atomic_path
from audience.profiles.gmm import GmmModel


@dataclass
class FitData:
    """What the generators learn from: counts, mean-embedding profiles and recency-weighted sparse histories.

    Sparse histories (recency-weighted with the profiles' half-life, so last week counts 1):
    user_author_views / user_author_positives: (n_users, n_authors) CSR, views and positives per author;
    item_user_positives: (n_items, n_users) CSR, who engaged with each clip. Their size is bounded by the
    distinct (user, author) and positive (clip, user) pairs, not by the number of interactions."""

    user_views: np.ndarray  # int64 (n_users,)
    user_positives: np.ndarray  # int64 (n_users,)
    item_views: np.ndarray  # int64 (n_items,)
    item_positives: np.ndarray  # int64 (n_items,)
    profiles: dict[str, np.ndarray] = field(default_factory=dict)  # name -> float32 (n_users, dim), unit rows
    profile_weight: dict[str, np.ndarray] = field(default_factory=dict)  # name -> float64 (n_users,)
    histories: dict[str, sparse.csr_matrix] = field(default_factory=dict)
    gmm: GmmModel | None = None  # the soft-cluster mixture, when one was fitted (saved beside as .gmm.npz)

    @property
    def n_users(self) -> int:
        return int(self.user_views.shape[0])

    @property
    def has_user_state(self) -> bool:
        """Whether it holds the users' profiles or histories (not only counts: `counts`)."""
        return bool(self.profiles or self.histories)

    def counts(self) -> FitData:
        """The activity counts and mixture alone (what `load(counts_only=True)` reads)."""
        return FitData(
            self.user_views, self.user_positives, self.item_views, self.item_positives, gmm=self.gmm
        )

    @classmethod
    def stacked(cls, parts: Sequence[FitData]) -> FitData:
        """The fit data of consecutive user shards' (profiles/user_shards.py) as one: their users' rows one
        after the other (item_user_positives' columns), the clip-side counts and the mixture of the first
        (every shard holds them whole)."""
        first = parts[0]
        histories = {
            name: (sparse.hstack if name == "item_user_positives" else sparse.vstack)(
                [p.histories[name] for p in parts], format="csr"
            )
            for name in first.histories
        }
        return cls(
            np.concatenate([p.user_views for p in parts]),
            np.concatenate([p.user_positives for p in parts]),
            first.item_views,
            first.item_positives,
            {name: np.concatenate([p.profiles[name] for p in parts]) for name in first.profiles},
            {name: np.concatenate([p.profile_weight[name] for p in parts]) for name in first.profile_weight},
            histories,
            first.gmm,
        )

    def save(self, path: Path) -> None:
        arrays = {
            "user_views": self.user_views,
            "user_positives": self.user_positives,
            "item_views": self.item_views,
            "item_positives": self.item_positives,
        }
        for name in self.profiles:
            arrays[f"profile__{name}"] = self.profiles[name]
            arrays[f"weight__{name}"] = self.profile_weight[name]
        for name, matrix in self.histories.items():
            for part in ("data", "indices", "indptr"):
                arrays[f"sparse__{name}__{part}"] = getattr(matrix, part)
            arrays[f"sparse__{name}__shape"] = np.asarray(matrix.shape)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        if self.gmm is not None:
            self.gmm.save(Path(path).with_suffix(".gmm.npz"))

    @classmethod
    def load(cls, path: Path, counts_only: bool = False) -> FitData:
        """The saved fit data; `counts_only`: its activity counts and mixture alone, without the profiles and
        histories (which hold nearly all of its bytes: the rest is n_users + n_items counts)."""
        with np.load(path) as npz:  # an npz member is read only when asked for
            stored = [] if counts_only else npz.files
            profiles = {k.split("__", 1)[1]: npz[k] for k in stored if k.startswith("profile__")}
            weights = {k.split("__", 1)[1]: npz[k] for k in stored if k.startswith("weight__")}
            names = {k.split("__")[1] for k in stored if k.startswith("sparse__")}
            matrices = {
                name: sparse.csr_matrix(
                    tuple(npz[f"sparse__{name}__{p}"] for p in ("data", "indices", "indptr")),
                    shape=tuple(npz[f"sparse__{name}__shape"]),
                )
                for name in names
            }
            gmm_path = Path(path).with_suffix(".gmm.npz")
            gmm = GmmModel.load(gmm_path) if gmm_path.is_file() else None
            return cls(
                npz["user_views"],
                npz["user_positives"],
                npz["item_views"],
                npz["item_positives"],
                profiles,
                weights,
                matrices,
                gmm,
            )


def without_items(batch: WeekBatch, hidden: np.ndarray | None) -> WeekBatch:
    """The chunk without the rows of hidden clips (`hidden`: bool per clip index; None hides nothing)."""
    if hidden is None:
        return batch
    keep = ~hidden[batch.item]
    if keep.all():
        return batch
    return WeekBatch(
        batch.path, batch.user[keep], batch.item[keep], {k: v[keep] for k, v in batch.columns.items()}
    )


def normalised_profiles(sums: dict[str, np.ndarray], weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weighted means (sum / weight per user), L2-normalised, float32; zero rows where a user has none."""
    normalised = {}
    for name, total in sums.items():
        mean = total / np.maximum(weights[name], 1e-12)[:, None]
        norm = np.linalg.norm(mean, axis=1, keepdims=True)
        normalised[name] = np.where(norm > 0, mean / np.maximum(norm, 1e-12), 0.0).astype(np.float32)
    return normalised
