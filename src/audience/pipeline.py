"""The wiring: the stages (stages/, one module each) by name, run one at a time or all in order.

    profiles -> candidates -> blend -> rank -> assign -> evaluate -> submission

Each stage reads the previous stages' artifacts from the run folder and writes its own, so any stage can be
rerun alone (the numbered scripts do exactly that); stages/__init__.py says what each one writes."""

from __future__ import annotations

from collections.abc import Callable

from audience.config import STAGES, RunConfig
from audience.stages.assign import stage_assign
from audience.stages.blend import stage_blend
from audience.stages.candidates import stage_candidates
from audience.stages.evaluate import stage_evaluate
from audience.stages.execute import execute
from audience.stages.profiles import stage_profiles
from audience.stages.rank import stage_rank
from audience.stages.run import Run
from audience.stages.submission import stage_submission

STAGE_FUNCTIONS: dict[str, Callable[[Run], object]] = {
    "profiles": stage_profiles,
    "candidates": stage_candidates,
    "blend": stage_blend,
    "rank": stage_rank,
    "assign": stage_assign,
    "evaluate": stage_evaluate,
    "submission": stage_submission,
}


def run_stage(cfg: RunConfig, stage: str, run: Run | None = None) -> object:
    """Run one stage, recording the config it used and its wall time in the run folder."""
    return execute(run or Run(cfg), stage, STAGE_FUNCTIONS[stage])


def run_all(cfg: RunConfig, stages: tuple[str, ...] = STAGES) -> Run:
    run = Run(cfg)
    for stage in stages:
        if not cfg.quiet:
            print(f"== {stage}", flush=True)
        run_stage(cfg, stage, run)
    return run
