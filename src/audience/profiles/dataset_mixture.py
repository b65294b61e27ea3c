"""One soft-cluster mixture per dataset, fitted on content alone and cached beside the weekly aggregates.

The mixture is fitted on a seeded sample of the embeddings of the clips of the dataset's train weeks (the
same for every split, and unmoved by metadata rows of clips that no week holds), so every split of a dataset
(validate, submit, each holdout) sees the same mixture and the week pass can cache each week's soft-cluster
sums (profiles/aggregates.py) instead of every run re-reading every row. It reads which clips the train
weeks hold and their embeddings, never who watched them, and no truth week of validate or submit mode.

Cache: `mixture-<digest>.npz` in the weeks cache folder, the digest covering the embedding file's stamp, the
clips, the mixture settings, the embedding dimensions read and the code of this module and what it imports;
a new one replaces the others. Concurrent runs fit it once (a lock beside it). Cost: the file's id array,
one streamed pass over its embedding array keeping `sample_size + validation_size` of the clips' rows, and
the fit (profiles/gmm.py, a few seconds at 128 diagonal components on 210k clips).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from audience.code_key import code_key
from audience.config import GmmConfig
from audience.data.embeddings import embedding_ids, read_embedding_rows
from audience.data.location import data_path, resolved
from audience.io import file_lock, file_stamp
from audience.profiles.gmm import GmmModel, fit_gmm

MIXTURE_CODE = code_key(__name__)


def sampled_rows(n_rows: int, cfg: GmmConfig) -> np.ndarray:
    """Ascending file rows the fit reads: every row, or a seeded sample of `sample_size + validation_size`."""
    if cfg.sample_size is None or cfg.sample_size + cfg.validation_size >= n_rows:
        return np.arange(n_rows)
    rng = np.random.default_rng(cfg.seed)
    return np.sort(rng.choice(n_rows, size=cfg.sample_size + cfg.validation_size, replace=False))


def mixture_path(embeddings: Path, clips: np.ndarray, cfg: GmmConfig, dim: int | None, folder: Path) -> Path:
    """Where the mixture of these inputs is cached."""
    key = {
        "embeddings": resolved(embeddings),
        "stamp": file_stamp(embeddings),
        "clips": hashlib.sha1(np.ascontiguousarray(clips, dtype=np.uint32).tobytes()).hexdigest(),
        "config": asdict(cfg),
        "dim": dim,
        "code": MIXTURE_CODE,
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(folder) / f"mixture-{digest}.npz"


def dataset_mixture(
    embeddings: Path, clips: np.ndarray, cfg: GmmConfig, dim: int | None, folder: Path
) -> GmmModel:
    """The mixture over the first `dim` dimensions of the embeddings of `clips` (sorted unique ids: the
    dataset's train weeks' clips; `cfg.dim` dimensions enter the mixture), fitted once, cached in `folder`."""
    embeddings = data_path(embeddings)
    path = mixture_path(embeddings, clips, cfg, dim, folder)
    with file_lock(path.with_name(".mixture.lock")):
        if path.is_file():
            return GmmModel.load(path)
        held = np.flatnonzero(np.isin(embedding_ids(embeddings, check_duplicates=False), clips))
        model = fit_gmm(read_embedding_rows(embeddings, held[sampled_rows(held.size, cfg)], dim), cfg)
        model.save(path)
        for stale in path.parent.glob("mixture-*.npz"):
            if stale != path:
                stale.unlink(missing_ok=True)
    return model
