"""Where each file of a VK-LSVD-layout directory lives; counts (weeks, ids) are discovered, not assumed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from audience.data.location import data_path
from audience.errors import DataError

WEEK_PATTERN = re.compile(r"^week_(\d+)\.parquet$")
TRUTH_DIRNAME = "_synthetic_truth"  # written only by the synthetic generator; the pipeline never reads it


@dataclass(frozen=True)
class DatasetLayout:
    """Paths of one dataset: `root/interactions/...` (full data) or `root/subsamples/<name>/...`, plus the
    shared `root/metadata/` files."""

    root: Path
    subsample: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", data_path(self.root))

    @property
    def interactions_root(self) -> Path:
        if self.subsample:
            return self.root / "subsamples" / self.subsample
        return self.root / "interactions"

    @property
    def metadata_dir(self) -> Path:
        return self.root / "metadata"

    @property
    def users_metadata(self) -> Path:
        return self.metadata_dir / "users_metadata.parquet"

    @property
    def items_metadata(self) -> Path:
        return self.metadata_dir / "items_metadata.parquet"

    @property
    def item_embeddings(self) -> Path:
        return self.metadata_dir / "item_embeddings.npz"

    def split_dir(self, split: str) -> Path:
        return self.interactions_root / split

    def weeks(self, split: str) -> list[Path]:
        """Week files of a split ('train', 'validation', 'test') sorted by week number; [] if absent."""
        folder = self.split_dir(split)
        if not folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := WEEK_PATTERN.match(p.name))]
        return [p for _, p in sorted(found)]

    def train_weeks(self) -> list[Path]:
        weeks = self.weeks("train")
        if not weeks:
            raise DataError(f"{self.split_dir('train')}: no week_NN.parquet files (expected the train weeks)")
        return weeks

    def validation_week(self) -> Path:
        weeks = self.weeks("validation")
        if len(weeks) != 1:
            raise DataError(
                f"{self.split_dir('validation')}: expected exactly one week_NN.parquet, found {len(weeks)}"
            )
        return weeks[0]

    def test_week(self) -> Path | None:
        weeks = self.weeks("test")
        return weeks[0] if weeks else None

    @property
    def truth_dir(self) -> Path:
        """Hidden ground truth of a synthetic dataset (absent on real data)."""
        return self.root / TRUTH_DIRNAME / (self.subsample or "full")

    def check_metadata_present(self) -> None:
        for path in (self.users_metadata, self.items_metadata, self.item_embeddings):
            if not path.is_file():
                raise DataError(
                    f"{path}: file not found (expected VK-LSVD metadata under {self.metadata_dir})"
                )
