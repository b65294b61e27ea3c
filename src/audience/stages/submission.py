"""The submission stage: the final method's capped lists -> submissions/submission.parquet (validated)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audience.config import DEFAULT_SUBMISSION
from audience.stages.run import Run, file_key
from audience.submission import to_frame, write_submission


def stage_submission(run: Run) -> Path:
    cfg = run.cfg
    method = cfg.final_method
    lists = np.load(run.require(f"lists/{file_key(method)}.capped.npy", "assign"))
    item_ids = run.targets()["item_id"].to_numpy()
    if lists.shape != (item_ids.shape[0], cfg.list_size) or (lists < 0).any():
        raise ValueError(f"{method}: assignment lists do not cover every target with {cfg.list_size} users")
    frame = to_frame(item_ids, run.catalog.users.ids[lists])
    out = cfg.out or (Path(DEFAULT_SUBMISSION) if cfg.mode == "submit" else run.path("submission.parquet"))
    return write_submission(frame, out, item_ids, cfg.list_size, cfg.user_cap)
