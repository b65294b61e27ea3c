"""Command line: `python -m audience run ...` runs every stage in order; `stage NAME` runs one; `synth`
writes a synthetic dataset. Every stage takes the same flags, so the numbered scripts can run one by one."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from audience import progress
from audience.config import ENGINES, MODES, STAGES, load_config
from audience.data.presets import PRESETS, SHAPES, preset
from audience.errors import USER_ERRORS, ConfigError


def _run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file with RunConfig keys (CLI flags win)")
    parser.add_argument("--data-dir", type=Path, help="root of a VK-LSVD-layout dataset")
    parser.add_argument("--subsample", help="subsample name under subsamples/ (omit for the full layout)")
    parser.add_argument("--mode", choices=MODES)
    parser.add_argument("--targets", type=Path, help="parquet with an item_id column (submit mode)")
    parser.add_argument(
        "--out", type=Path, help="submission path (default: submissions/submission.parquet in submit mode)"
    )
    parser.add_argument("--run-dir", type=Path, help="artifacts folder (default artifacts/<dataset>-<mode>)")
    parser.add_argument(
        "--weeks-dir",
        type=Path,
        help="weekly aggregates cache (default <run folder's parent>/<dataset>-weeks)",
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument("--threads", type=int, dest="n_threads")
    parser.add_argument("--sources", help="comma-separated candidate sources, e.g. popular,hnsw:all")
    parser.add_argument("--final-method", help="method whose lists become the submission (default reranked)")
    parser.add_argument("--embedding-dim", type=int, help="keep the first N embedding dimensions")
    parser.add_argument("--candidate-depth", type=int)
    parser.add_argument(
        "--learned-blend",
        action="store_true",
        default=None,
        help="also train MixiGen and tune the fixed quota on the holdout weeks (methods mixigen, quota)",
    )
    parser.add_argument("--quiet", action="store_true", default=None)
    parser.add_argument("--engine", choices=ENGINES, help="local (default) or dask: see engine/")
    parser.add_argument(
        "--scheduler", help="Dask scheduler address (tcp://host:8786); default a LocalCluster on this machine"
    )
    parser.add_argument("--workers", type=int, help="LocalCluster workers (default one per core)")
    parser.add_argument(
        "--user-shards",
        type=int,
        help="Dask: cut the users into N shards held by the workers (0: every user's state on the client)",
    )


def config_from_args(args: argparse.Namespace):
    keys = (
        "data_dir",
        "subsample",
        "mode",
        "targets",
        "out",
        "run_dir",
        "weeks_dir",
        "seed",
        "n_threads",
        "sources",
        "final_method",
        "embedding_dim",
        "candidate_depth",
        "learned_blend",
        "quiet",
        "engine",
    )
    cfg = load_config(args.config, **{k: getattr(args, k) for k in keys})
    options = ("scheduler", "workers", "user_shards")
    cluster = {k: getattr(args, k) for k in options if getattr(args, k) is not None}
    return replace(cfg, dask=replace(cfg.dask, **cluster)) if cluster else cfg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audience", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every stage in order")
    _run_flags(run)
    run.add_argument("--stages", help=f"comma-separated subset of {','.join(STAGES)}")
    stage = sub.add_parser("stage", help="run one stage")
    stage.add_argument("name", choices=STAGES)
    _run_flags(stage)
    synth = sub.add_parser("synth", help="write a synthetic dataset in the VK-LSVD layout")
    synth.add_argument("--preset", choices=sorted(PRESETS), default="small")
    synth.add_argument("--data-dir", type=Path, help="default data/synthetic-<preset>")
    synth.add_argument("--subsample", help="write under subsamples/<name>/ instead of interactions/")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--shape", choices=SHAPES, default="rolling", help="stocked: no new clips in train weeks"
    )
    synth.add_argument(
        "--warm-targets",
        type=int,
        default=0,
        help="targets/mixed_<split>.parquet: new + this many warm clips",
    )
    synth.add_argument("--overwrite", action="store_true")
    synth.add_argument(
        "--global-metadata",
        action="store_true",
        help="pad the metadata to the real dataset's global sizes (10,000,000 users, 19,627,601 clips)",
    )
    synth.add_argument(
        "--local-metadata",
        action="store_true",
        help="keep the dataset's own metadata even when the preset pads it (global_metadata, e.g. vk)",
    )
    synth.add_argument("--metadata-users", type=int, help="pad users_metadata to this many rows")
    synth.add_argument(
        "--metadata-items", type=int, help="pad items_metadata and the embeddings to this many"
    )
    synth.add_argument("--quiet", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "synth":
            from audience.data.metadata_padding import REAL_ITEMS, REAL_USERS, pad_metadata
            from audience.data.synthetic import generate

            out = args.data_dir or Path(f"data/synthetic-{args.preset}")
            progress.configure(not args.quiet)
            explicit = bool(args.global_metadata or args.metadata_users or args.metadata_items)
            synth_cfg = preset(args.preset, seed=args.seed, shape=args.shape, warm_targets=args.warm_targets)
            if explicit or args.local_metadata:  # padded below (or not at all), not by the preset
                synth_cfg = replace(synth_cfg, global_metadata=False)
            layout = generate(out, synth_cfg, args.subsample, not args.quiet, args.overwrite)
            print(f"wrote synthetic '{args.preset}' dataset to {out}")
            if synth_cfg.global_metadata:
                print("padded its metadata to the real global sizes (the preset's global_metadata)")
            if explicit:
                default_users, default_items = (REAL_USERS, REAL_ITEMS) if args.global_metadata else (0, 0)
                padded = pad_metadata(
                    layout,
                    max(args.metadata_users or default_users, synth_cfg.n_users),
                    max(args.metadata_items or default_items, synth_cfg.n_items),
                    args.seed,
                    not args.quiet,
                )
                print(
                    f"padded its metadata to {padded['users']['padded_to']:,} users, "
                    f"{padded['items']['padded_to']:,} clips"
                )
            return 0
        from audience.pipeline import run_all, run_stage

        cfg = config_from_args(args)
        progress.configure(not cfg.quiet)
        if args.command == "stage":
            run_stage(cfg, args.name)
        else:
            stages = tuple(args.stages.split(",")) if args.stages else STAGES
            unknown = set(stages) - set(STAGES)
            if unknown:
                raise ConfigError(f"unknown stage(s) {sorted(unknown)}; stages: {STAGES}")
            run_all(cfg, stages)
        return 0
    # bad input, a bad setting or a cluster that does not answer: one line, exit 2; anything else is a bug and
    # keeps its traceback (exit 1)
    except (*USER_ERRORS, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
