"""Benchmark of the clip "interest bubble" Gaussian mixture (audience.profiles.gmm).

(a) reference: the notebook configuration (sklearn GaussianMixture, 128 components, full covariance,
    k-means++ init, tol 1e-3, float64) on every training clip, run in chunks of EM iterations for at most
    --reference-minutes, recording the held-out mean log-likelihood after each chunk;
(b) the fast fit (fit_gmm with the default GmmConfig): wall time and held-out mean log-likelihood;
(c) held-out mean log-likelihood, BIC and fit time for n_components x covariance_type with the fast fit.

Data: the medium preset's clip embeddings if present, else the small preset's (or --embeddings). The clips
are split once (seeded) into a training pool and a held-out set; every model is scored on the same
held-out clips, first `--dim` dimensions, as float64 mean log-density per clip (nats).

Usage:
  python benchmarks/bench_gmm.py                          # all three parts, writes results/gmm.{md,json}
  python benchmarks/bench_gmm.py --part reference --reference-minutes 25 --reference-json /tmp/ref.json
  python benchmarks/bench_gmm.py --reuse-reference /tmp/ref.json   # parts b and c, reference from a file
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine, machine_line  # noqa: E402

from audience.data.schema import load_embeddings  # noqa: E402
from audience.io import atomic_path, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PRESET_PATHS = {
    "medium": ROOT / "data/synthetic-medium/metadata/item_embeddings.npz",
    "small": ROOT / "data/synthetic-small/metadata/item_embeddings.npz",
}


def load_split(path: Path, dim: int, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train float32 (n - holdout, dim), held-out float32 (holdout, dim)), split by a seeded permutation."""
    _, emb = load_embeddings(path)
    x = np.ascontiguousarray(emb[:, :dim], dtype=np.float32)
    order = np.random.default_rng(seed).permutation(x.shape[0])
    return x[order[holdout:]], x[order[:holdout]]


def pick_data(arg: str | None) -> tuple[str, Path]:
    if arg:
        return Path(arg).name, Path(arg)
    for name, path in PRESET_PATHS.items():
        if path.is_file():
            return f"synthetic-{name}", path
    raise SystemExit("no clip embeddings found: run scripts/01_synthetic_data.py --preset small first")


def run_reference(
    train: np.ndarray, held: np.ndarray, minutes: float, chunk: int, seed: int, out: Path | None
) -> dict:
    """The notebook configuration, fitted on every training clip for at most `minutes` (fit time only)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    x = train.astype(np.float64)
    h = held.astype(np.float64)
    gm = GaussianMixture(
        n_components=128, covariance_type="full", init_params="k-means++", tol=1e-3, reg_covar=1e-6,
        max_iter=chunk, warm_start=True, random_state=seed,
    )  # fmt: skip
    trajectory: list[dict] = []
    fit_s = 0.0
    iters = 0
    converged = False
    record: dict = {}
    while fit_s < minutes * 60 and not converged:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(x)
        fit_s += time.perf_counter() - t0
        iters += int(gm.n_iter_)
        converged = bool(gm.converged_)
        held_ll = float(gm.score(h))
        trajectory.append(
            {"iter": iters, "fit_s": round(fit_s, 1), "train_lower_bound": float(gm.lower_bound_), "held_ll": held_ll}
        )
        print(f"reference: iter {iters:4d}  fit {fit_s:7.1f}s  held-out LL {held_ll:.5f}", flush=True)
        record = {
            "config": "sklearn GaussianMixture(n_components=128, covariance_type='full', "
            "init_params='k-means++', tol=1e-3, reg_covar=1e-6), float64, warm-started in chunks of "
            f"{chunk} EM iterations",
            "n_train": int(x.shape[0]),
            "n_held": int(h.shape[0]),
            "dim": int(x.shape[1]),
            "minutes_cap": minutes,
            "iterations": iters,
            "converged": converged,
            "fit_s": round(fit_s, 1),
            "held_ll": held_ll,
            "trajectory": trajectory,
            "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        }
        if out is not None:  # written after every chunk so a killed run still leaves its trajectory
            write_json(record, out)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "reference"), default="all")
    parser.add_argument("--embeddings", help="item_embeddings.npz (default: medium preset, else small)")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--holdout", type=int, default=20_000, help="held-out clips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-minutes", type=float, default=25.0)
    parser.add_argument("--reference-chunk", type=int, default=10, help="EM iterations between held-out checks")
    parser.add_argument("--reference-json", type=Path, help="where the reference run writes its record")
    parser.add_argument("--reuse-reference", type=Path, help="a record written by --part reference")
    args = parser.parse_args(argv)

    data_name, data_path = pick_data(args.embeddings)
    train, held = load_split(data_path, args.dim, args.holdout, args.seed)
    print(f"data {data_name} ({data_path}): train {train.shape}, held-out {held.shape}", flush=True)

    if args.part == "reference":
        rec = run_reference(train, held, args.reference_minutes, args.reference_chunk, args.seed, args.reference_json)
        rec["data"] = {"name": data_name, "path": str(data_path)}
        rec["machine"] = machine()
        if args.reference_json:
            write_json(rec, args.reference_json)
        return 0
    raise NotImplementedError


if __name__ == "__main__":
    raise SystemExit(main())
