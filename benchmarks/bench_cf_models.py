"""EASE, SLIM and BPR (user -> clips) beside implicit's BPR and ALS: fit time, parameter size, latency,
throughput, recall@10/50, on one synthetic preset.

    .venv/bin/python benchmarks/bench_cf_models.py --preset small [--matrix positives|views] [--threads 1]
        [--parts ease_cholesky,bpr_popularity,...] [--timeout 600]

Data: the CSR of the train weeks (rows = every user seen in train, columns = clips with at least one
interaction in the matrix, ids mapped densely with np.unique), binary: ``positives`` = (user, clip) pairs
with at least one positive flag (like, share, bookmark, click_on_author, open_comments), ``views`` = every
pair. Evaluation: user -> clips recall@10 and @50 on the validation week's positives, seen clips filtered,
over users with at least one validation positive on a clip the model knows (a column of the matrix);
recall = hits / relevant clips of the user, averaged over users. Models that keep only the most popular
clips (EASE, max_items) are scored on the same users and truth, so their unreachable clips count as misses.

Each model (a "part") runs in its own child process under ``--timeout`` seconds, on the matrix prepared once
and cached in artifacts/bench-cf-<preset>/; a part that runs out of time is reported as such. Timings: fit
once (numba code compiled beforehand on a toy matrix); single-query latency = median of 200 one-user
``recommend(k=50)`` calls, users/s one at a time = 200 / their total time; batch = users/s of one
``recommend(k=50)`` over all evaluation users. Thread counts are pinned (numba, BLAS, joblib, implicit) to
``--threads``.

Comparisons: sklearn vs numba SLIM on the same ``max_items`` clips (fit time ratio, max abs weight
difference at tight tolerance), np.linalg.inv vs Cholesky EASE (time, max abs difference of B), our BPR vs
implicit's BPR (samples/s, recall; same matrix, epochs, factors, learning rate) and implicit's ALS,
popularity vs uniform vs adaptive BPR sampling.

Writes benchmarks/results/cf_models_<preset>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numba as nb
import numpy as np
import polars as pl
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine
from _suite import (
    RESULTS,
    ROOT,
    data_dir,
    ensure_data,
    publish,
    read_json,
    run_child,
    write_json,
)

from audience.arrays import top_k
from audience.config import GmmConfig
from audience.data.embeddings import load_embeddings
from audience.data.layout import DatasetLayout
from audience.markdown import table
from audience.metrics import diversity_at_k, novelty_at_k
from audience.models import BPR, EASE, SLIM
from audience.profiles.gmm import fit_gmm

FLAGS = ("like", "share", "bookmark", "click_on_author", "open_comments")
SEED = 20250101
K = 50
SINGLE_CALLS = 200

# parameters (chosen by a short manual sweep on small's validation week; the same at every size)
EASE_PARAMS = {"regularization": 5000.0, "max_items": 10_000}
SLIM_PARAMS = {"alpha": 5e-4, "l1_ratio": 0.5}  # exact skip threshold n*alpha*l1_ratio
SLIM_COMPARE_ITEMS = 2_000  # clips for the sklearn vs numba comparison (sklearn is slow)
BPR_PARAMS = {"factors": 64, "learning_rate": 0.02, "regularization": 0.01, "epochs": 30}
ADAPTIVE_PARAMS = {"warmup_epochs": 15, "warmup_sampling": "uniform", "temperature": 1.0, "n_candidates": 32}
ALS_PARAMS = {"factors": 64, "regularization": 0.01, "iterations": 15, "alpha": 1.0}

PARTS = (
    "popular",
    "ease_cholesky",
    "ease_inv",
    "slim_numba",
    "slim_numba_top",
    "slim_sklearn_top",
    "bpr_popularity",
    "bpr_uniform",
    "bpr_adaptive",
    "bpr_popularity_2threads",
    "implicit_bpr",
    "implicit_als",
)


def cache_dir(preset: str, matrix: str) -> Path:
    return ROOT / "artifacts" / f"bench-cf-{preset}-{matrix}"


# --- data: built once per preset and matrix, cached for the parts ---------------------------------------


def build(data: Path, matrix: str) -> dict:
    """The users x clips matrix of the train weeks, the validation truth and the clips' groups."""
    layout = DatasetLayout(data)
    train_files = layout.train_weeks()
    frames = [pl.read_parquet(f, columns=["user_id", "item_id", *FLAGS]) for f in train_files]
    train = pl.concat(frames)
    del frames
    users = np.unique(train["user_id"].to_numpy())
    pairs = train.filter(pl.any_horizontal(FLAGS)) if matrix == "positives" else train
    pairs = pairs.select("user_id", "item_id").unique()
    train_rows = train.height
    del train
    items, col = np.unique(pairs["item_id"].to_numpy(), return_inverse=True)
    row = np.searchsorted(users, pairs["user_id"].to_numpy())
    X = sp.csr_matrix(
        (np.ones(row.size, np.float32), (row, col.astype(np.int64))), shape=(users.size, items.size)
    )
    X.sort_indices()
    val_week = layout.validation_week()
    val = pl.read_parquet(val_week, columns=["user_id", "item_id", *FLAGS])
    val = val.filter(pl.any_horizontal(FLAGS)).select("user_id", "item_id").unique()
    vu = np.searchsorted(users, val["user_id"].to_numpy())
    vi = np.searchsorted(items, val["item_id"].to_numpy())
    ok = (vu < users.size) & (vi < items.size)
    ok[ok] &= (users[vu[ok]] == val["user_id"].to_numpy()[ok]) & (
        items[vi[ok]] == val["item_id"].to_numpy()[ok]
    )
    truth = sp.csr_matrix(
        (np.ones(int(ok.sum()), np.float32), (vu[ok], vi[ok])), shape=(users.size, items.size)
    )
    truth.sum_duplicates()
    truth.sort_indices()
    groups = item_groups(data, items, np.asarray(X.sum(axis=0)).ravel())
    info = {
        "matrix": matrix,
        "train_weeks": len(train_files),
        "train_rows": train_rows,
        "validation_week": val_week.name,
        "users": int(users.size),
        "items": int(items.size),
        "nnz": int(X.nnz),
        "val_positive_pairs": int(val.height),
        "val_pairs_on_known": int(ok.sum()),
        "eval_users": int((np.diff(truth.indptr) > 0).sum()),
    }
    return {"X": X, "truth": truth, "groups": groups, "info": info}


def item_groups(data: Path, items: np.ndarray, popularity: np.ndarray) -> dict[str, np.ndarray]:
    """Popularity, author and GMM soft-cluster (hard assignment) of each clip, for novelty/diversity."""
    meta = pl.read_parquet(data / "metadata" / "items_metadata.parquet", columns=["item_id", "author_id"])
    author = meta.join(
        pl.DataFrame({"item_id": pl.Series(items, dtype=pl.UInt32)}), on="item_id", how="right"
    )
    emb_ids, emb = load_embeddings(data / "metadata" / "item_embeddings.npz")
    order = np.argsort(emb_ids)
    pos = order[np.searchsorted(emb_ids[order], items)]
    vectors = emb[pos].astype(np.float32)
    gmm = fit_gmm(vectors, GmmConfig(n_components=min(128, max(2, items.size // 20)), covariance_type="diag"))
    return {
        "popularity": popularity,
        "author": author["author_id"].to_numpy().astype(np.int64),
        "cluster": gmm.predict(vectors),
    }


def save_cache(folder: Path, built: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    sp.save_npz(folder / "X.npz", built["X"])
    sp.save_npz(folder / "truth.npz", built["truth"])
    np.savez(folder / "groups.npz", **built["groups"])
    write_json(folder / "info.json", built["info"])


def load_cache(folder: Path) -> dict:
    X = sp.csr_matrix(sp.load_npz(folder / "X.npz"))
    truth = sp.csr_matrix(sp.load_npz(folder / "truth.npz"))
    with np.load(folder / "groups.npz") as g:
        groups = {k: g[k] for k in g.files}
    return {"X": X, "truth": truth, "groups": groups, "info": read_json(folder / "info.json")}


# --- measuring one model ---------------------------------------------------------------------------------


def recall(ids: np.ndarray, eval_users: np.ndarray, truth: sp.csr_matrix, k: int) -> float:
    """Mean over `eval_users` of (hits in the top k) / (the user's relevant clips)."""
    vals = []
    for r, u in enumerate(eval_users):
        rel = truth.indices[truth.indptr[u] : truth.indptr[u + 1]]
        vals.append(np.isin(ids[r, :k], rel).sum() / rel.size)
    return float(np.mean(vals))


def measure(name: str, model, fit_seconds: float, d: dict, extra: dict | None = None) -> dict:
    X, truth, groups = d["X"], d["truth"], d["groups"]
    eval_users = np.flatnonzero(np.diff(truth.indptr) > 0).astype(np.int64)
    rng = np.random.default_rng(SEED)
    single = rng.choice(eval_users, SINGLE_CALLS)
    model.recommend(single[:1], X, K)  # warm
    lat = []
    for u in single:
        t = time.perf_counter()
        model.recommend(np.array([u]), X, K)
        lat.append(time.perf_counter() - t)
    t = time.perf_counter()
    ids, _ = model.recommend(eval_users, X, K)
    batch_s = time.perf_counter() - t
    row = {
        "model": name,
        "fit_s": fit_seconds,
        "params_mb": model.n_parameter_bytes / 2**20,
        "latency_ms": 1000 * float(np.median(lat)),
        "single_qps": len(lat) / float(np.sum(lat)),
        "users_per_s": eval_users.size / batch_s,
        "recall@10": recall(ids, eval_users, truth, 10),
        "recall@50": recall(ids, eval_users, truth, 50),
        "novelty@50": novelty_at_k(ids, groups["popularity"], 50),
        "authors@50": diversity_at_k(ids, groups["author"], 50),
        "clusters@50": diversity_at_k(ids, groups["cluster"], 50),
    }
    row.update(extra or {})
    print(json.dumps(row), flush=True)
    return row


class Popular:
    """Reference: most popular unseen clips."""

    def __init__(self, X):
        self.counts = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float32)
        self.n_parameter_bytes = self.counts.nbytes

    def recommend(self, user_rows, X, k):
        out = [np.empty((0, k), np.int32)], [np.empty((0, k), np.float32)]
        for s in range(0, len(user_rows), 512):
            rows = user_rows[s : s + 512]
            scores = np.broadcast_to(self.counts, (len(rows), self.counts.size)).copy()
            Xr = X[rows]
            scores[np.repeat(np.arange(len(rows)), np.diff(Xr.indptr)), Xr.indices] = -np.inf
            ids, top = top_k(scores, k)
            out[0].append(ids)
            out[1].append(top)
        return np.concatenate(out[0]), np.concatenate(out[1])


def timed_fit(model, X) -> tuple[object, float]:
    t = time.perf_counter()
    model.fit(X)
    return model, time.perf_counter() - t


def warm_numba() -> None:
    rng = np.random.default_rng(0)
    Xs = sp.csr_matrix((rng.random((60, 30)) < 0.2).astype(np.float32))
    SLIM(alpha=1e-3).fit(Xs)
    BPR(factors=4, epochs=2, sampling="adaptive", warmup_epochs=1).fit(Xs)


def wrap_factors(user_factors, item_factors, n_items: int) -> BPR:
    """implicit's factors behind our BPR's recommend (same scoring and seen-filtering for every model)."""
    wrapped = BPR(factors=item_factors.shape[1])
    wrapped.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
    wrapped.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    wrapped.n_items = n_items
    wrapped.scored_items = np.arange(n_items, dtype=np.int32)
    return wrapped


def bpr_samples_per_s(model: BPR, X, with_tables: bool = False) -> float:
    seconds = sum(h["sgd_seconds"] + (h["table_seconds"] if with_tables else 0.0) for h in model.history)
    return BPR_PARAMS["epochs"] * X.nnz / seconds


def run_part(part: str, d: dict, folder: Path, threads: int) -> dict:
    """Fit and measure one model; returns its row (+ a note for the comparisons)."""
    X = d["X"]
    if part == "popular":
        start = time.perf_counter()
        popular = Popular(X)
        return measure("popular (reference)", popular, time.perf_counter() - start, d)
    if part in ("ease_cholesky", "ease_inv"):
        method = part.split("_")[1]
        ease, t = timed_fit(EASE(**EASE_PARAMS, method=method), X)
        kept = np.isin(d["truth"].indices, ease.scored_items).mean() if d["truth"].nnz else float("nan")
        extra = {
            "family": "EASE",
            "gram_s": ease.fit_seconds["gram"],
            "solve_s": ease.fit_seconds["solve"],
            "kept_clips": int(ease.scored_items.size),
            "truth_share_on_kept": float(kept),
        }
        if method == "cholesky":
            np.save(folder / "ease_cholesky_B.npy", ease.item_item)
        elif (folder / "ease_cholesky_B.npy").is_file():
            other = np.load(folder / "ease_cholesky_B.npy", mmap_mode="r")
            extra["max_abs_diff_vs_cholesky"] = float(np.abs(ease.item_item - other).max())
        label = (
            f"EASE {'Cholesky' if method == 'cholesky' else 'np.linalg.inv'} (top {ease.scored_items.size})"
        )
        return measure(label, ease, t, d, extra)
    if part == "slim_numba":
        slim, t = timed_fit(SLIM(**SLIM_PARAMS), X)
        extra = {
            "family": "SLIM",
            "nnz_W": int(slim.item_item.nnz),
            "threshold": slim.threshold_,
            "median_sweeps": float(np.median(slim.n_sweeps)) if slim.n_sweeps is not None else None,
        }
        return measure("SLIM numba (all clips)", slim, t, d, extra)
    if part in ("slim_numba_top", "slim_sklearn_top"):
        backend = part.split("_")[1]
        cmp = {**SLIM_PARAMS, "max_items": SLIM_COMPARE_ITEMS, "tol": 1e-6, "max_iter": 10_000}
        extra_kw = {"n_jobs": threads} if backend == "sklearn" else {}
        slim, t = timed_fit(SLIM(**cmp, backend=backend, **extra_kw), X)
        extra = {"family": "SLIM", "nnz_W": int(slim.item_item.nnz), "threshold": slim.threshold_}
        if backend == "numba":
            sp.save_npz(folder / "slim_numba_top_W.npz", slim.item_item)
        elif (folder / "slim_numba_top_W.npz").is_file():
            other = sp.load_npz(folder / "slim_numba_top_W.npz")
            diff = abs(slim.item_item - other)
            extra["max_abs_diff_vs_numba"] = float(diff.max()) if diff.nnz else 0.0
        n_top = slim.scored_items.size
        return measure(f"SLIM {backend} (top {n_top}, tol 1e-6)", slim, t, d, extra)
    if part.startswith("bpr_"):
        sampling = part.split("_")[1]
        n = 2 if part.endswith("2threads") else threads
        extra_kw = ADAPTIVE_PARAMS if sampling == "adaptive" else {}
        nb.set_num_threads(min(n, nb.config.NUMBA_NUM_THREADS))
        bpr, t = timed_fit(BPR(**BPR_PARAMS, **extra_kw, sampling=sampling, n_threads=n, seed=SEED), X)
        nb.set_num_threads(min(threads, nb.config.NUMBA_NUM_THREADS))
        extra = {
            "family": "BPR",
            "samples_per_s": bpr_samples_per_s(bpr, X, with_tables=sampling == "adaptive"),
            "false_negative_share": sum(h["false_negatives"] for h in bpr.history)
            / (BPR_PARAMS["epochs"] * X.nnz),
            "final_loss": bpr.history[-1]["loss"],
            "threads": n,
        }
        if sampling == "adaptive":
            extra["table_s"] = sum(h["table_seconds"] for h in bpr.history)
        label = f"BPR {sampling}" + (", 2 threads" if n == 2 and part.endswith("2threads") else "")
        return measure(label, bpr, t, d, extra)
    if part == "implicit_bpr":
        from importlib.metadata import version

        from implicit.cpu.bpr import BayesianPersonalizedRanking

        p = BPR_PARAMS
        model = BayesianPersonalizedRanking(
            factors=p["factors"] - 1,  # implicit adds an item-bias column: factors - 1 + 1 = same dot size
            learning_rate=p["learning_rate"],
            regularization=p["regularization"],
            iterations=p["epochs"],
            num_threads=threads,
            random_state=SEED,
        )
        t = time.perf_counter()
        model.fit(X, show_progress=False)
        fit_s = time.perf_counter() - t
        wrapped = wrap_factors(model.user_factors, model.item_factors, X.shape[1])
        extra = {"family": "implicit BPR", "samples_per_s": p["epochs"] * X.nnz / fit_s}
        return measure(f"implicit {version('implicit')} BPR", wrapped, fit_s, d, extra)
    if part == "implicit_als":
        from importlib.metadata import version

        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(**ALS_PARAMS, num_threads=threads, random_state=SEED)
        t = time.perf_counter()
        model.fit(X, show_progress=False)
        fit_s = time.perf_counter() - t
        wrapped = wrap_factors(model.user_factors, model.item_factors, X.shape[1])
        return measure(f"implicit {version('implicit')} ALS", wrapped, fit_s, d, {"family": "implicit ALS"})
    raise ValueError(f"unknown part {part!r}; one of {PARTS}")


# --- the whole benchmark: prepare, every part in a child, comparisons, report ----------------------------


def bench_preset(preset: str, matrix: str, threads: int, parts: tuple[str, ...], timeout: float) -> dict:
    ensure_data(preset)
    folder = cache_dir(preset, matrix)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve()), "--preset", preset, "--matrix", matrix]
    me += ["--threads", str(threads)]
    prepare = run_child([*me, "--part", "prepare"], None, folder / "logs" / "prepare.log")
    if prepare["status"] != "ok":
        raise SystemExit(f"preparing the {preset} matrix failed: {prepare}")
    rows = []
    for part in parts:
        if part == "bpr_popularity_2threads" and (threads != 1 or nb.config.NUMBA_NUM_THREADS < 2):
            continue
        out = folder / "logs" / f"{part}.json"
        out.unlink(missing_ok=True)
        child = run_child([*me, "--part", part], timeout, folder / "logs" / f"{part}.log")
        row = {"part": part, "status": child["status"], "child": child}
        if child["status"] == "ok":
            row.update(read_json(out))
        rows.append(row)
    info = read_json(folder / "info.json")
    return {
        "machine": machine(),
        "preset": preset,
        "threads": threads,
        "timeout_s": timeout,
        "info": info,
        "prepare": prepare,
        "params": {"EASE": EASE_PARAMS, "SLIM": SLIM_PARAMS, "BPR": BPR_PARAMS, "adaptive": ADAPTIVE_PARAMS}
        | {"ALS": ALS_PARAMS},
        "rows": rows,
    }


def _ok(rows: list[dict], part: str) -> dict | None:
    found = [r for r in rows if r["part"] == part and r["status"] == "ok"]
    return found[0] if found else None


def comparisons(rows: list[dict]) -> list[str]:
    """One line per peer comparison, from the rows measured (a missing side is said so)."""
    notes = []
    chol, inv = _ok(rows, "ease_cholesky"), _ok(rows, "ease_inv")
    if chol and inv:
        notes.append(
            f"EASE {chol['kept_clips']} clips: Cholesky (potrf+potri) fit {chol['fit_s']:.1f} s (gram "
            f"{chol['gram_s']:.1f} s, solve {chol['solve_s']:.1f} s) vs np.linalg.inv {inv['fit_s']:.1f} s "
            f"(solve {inv['solve_s']:.1f} s): solve {inv['solve_s'] / chol['solve_s']:.2f}x faster; "
            f"max |B_chol - B_inv| = {inv.get('max_abs_diff_vs_cholesky', float('nan')):.2e}"
        )
    nbt, skt = _ok(rows, "slim_numba_top"), _ok(rows, "slim_sklearn_top")
    if nbt and skt:
        notes.append(
            f"SLIM on the top {SLIM_COMPARE_ITEMS} clips (tol 1e-6, threshold {nbt['threshold']:.2f}): "
            f"sklearn {skt['fit_s']:.2f} s vs numba {nbt['fit_s']:.2f} s = "
            f"{skt['fit_s'] / nbt['fit_s']:.1f}x; max "
            f"|W_sklearn - W_numba| = {skt.get('max_abs_diff_vs_numba', float('nan')):.1e} (nnz "
            f"{skt['nnz_W']} vs {nbt['nnz_W']})"
        )
    ours, imp = _ok(rows, "bpr_popularity"), _ok(rows, "implicit_bpr")
    if ours and imp:
        notes.append(
            f"BPR (popularity sampling, {BPR_PARAMS['epochs']} epochs): ours "
            f"{ours['samples_per_s'] / 1e6:.2f}M samples/s vs implicit {imp['samples_per_s'] / 1e6:.2f}M/s = "
            f"{ours['samples_per_s'] / imp['samples_per_s']:.2f}x; recall@50 {ours['recall@50']:.4f} vs "
            f"{imp['recall@50']:.4f}"
        )
    als = _ok(rows, "implicit_als")
    if ours and als:
        notes.append(
            f"implicit ALS ({ALS_PARAMS['iterations']} iterations) fit {als['fit_s']:.2f} s vs our BPR "
            f"{ours['fit_s']:.2f} s; recall@50 {als['recall@50']:.4f} vs {ours['recall@50']:.4f}"
        )
    for r in rows:
        if r["status"] != "ok":
            notes.append(f"{r['part']}: {r['status']} after {r['child']['wall_s']:.0f} s, not measured")
    return notes


CAVEATS = (
    "Hyperparameters were picked by a short manual sweep on small's validation week (no separate tuning "
    "split) and kept at every size, so recall is optimistic there and untuned elsewhere, for every model "
    "alike; synthetic data rewards popularity, which the popularity reference shows.",
    "EASE keeps the most popular clips (max_items); its other clips count as misses (the share of the "
    "validation positives on its kept clips is in the json, `truth_share_on_kept`).",
    "SLIM's exact threshold n * alpha * l1_ratio grows with the number of users n, so W gets sparser on "
    "bigger presets at the same alpha.",
    "implicit's BPR samples negatives by popularity (the clip of a random interaction) like our "
    "'popularity' mode; it learns an item bias (factors = 63 + bias column, same dot size as our 64) and "
    "has its own initialisation, so equal learning rates do not make the runs identical. Its factors are "
    "scored through our BPR.recommend, so latency and throughput compare the models, not the libraries' "
    "serving code. The same holds for implicit's ALS.",
    "samples/s counts attempted samples (false negatives included) over SGD time (ours) or over the whole "
    "fit (implicit); for adaptive BPR it includes the table rebuilds.",
)


def markdown(figures: dict) -> str:
    m, info = figures["machine"], figures["info"]
    lines = [
        f"# Collaborative-filtering models (user -> clips) on synthetic-{figures['preset']}",
        "",
        f"Generated by `benchmarks/bench_cf_models.py --preset {figures['preset']} --matrix {info['matrix']} "
        f"--threads {figures['threads']}`.",
        "",
        f"- Machine: {m['date']}, {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB RAM, "
        f"Python {m['python']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- Threads: {figures['threads']} for numba, BLAS, joblib and implicit (unless a row says "
        f"otherwise); each model in its own process, limit {figures['timeout_s']:.0f} s",
        f"- Data: {info['train_weeks']} train weeks ({info['train_rows']:,} rows) -> {info['matrix']} matrix "
        f"{info['users']:,} users x {info['items']:,} clips, {info['nnz']:,} nonzeros; validation "
        f"{info['validation_week']}: {info['val_positive_pairs']:,} positive pairs, "
        f"{info['val_pairs_on_known']:,} on known users and clips, {info['eval_users']:,} evaluation users",
        "- Parameters: " + "; ".join(f"{k} {v}" for k, v in figures["params"].items()),
        "",
    ]
    rows = []
    for r in figures["rows"]:
        child = r["child"]
        process = [f"{child['wall_s']:.0f}", f"{child['peak_rss_gib']:.2f}"]
        if r["status"] != "ok":
            rows.append([r["part"], f"{r['status']} after {child['wall_s']:.0f} s", *[""] * 10, *process])
            continue
        sps = f"{r['samples_per_s'] / 1e6:.2f} M" if "samples_per_s" in r else ""
        rows.append(
            [
                r["model"],
                f"{r['fit_s']:.2f}",
                f"{r['params_mb']:.1f}",
                f"{r['latency_ms']:.2f}",
                f"{r['single_qps']:,.0f}",
                f"{r['users_per_s']:,.0f}",
                sps,
                f"{r['recall@10']:.4f}",
                f"{r['recall@50']:.4f}",
                f"{r['novelty@50']:.2f}",
                f"{r['authors@50']:.3f}",
                f"{r['clusters@50']:.3f}",
                *process,
            ]
        )
    header = [
        "model",
        "fit s",
        "params MB",
        "latency ms (1 user, k=50)",
        "users/s (1 at a time)",
        "users/s (batch)",
        "samples/s",
        "recall@10",
        "recall@50",
        "novelty@50 (bits)",
        "distinct authors@50",
        "distinct GMM clusters@50",
        "process wall s",
        "peak RSS GiB",
    ]
    lines += table(header, rows)
    lines += ["", "## Comparisons", ""] + [f"- {n}" for n in comparisons(figures["rows"])]
    lines += ["", "## Caveats", ""] + [f"- {n}" for n in CAVEATS]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--matrix", choices=["positives", "views"], default="positives")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per model process")
    ap.add_argument("--part", help=argparse.SUPPRESS)  # child mode: prepare, or one model
    args = ap.parse_args()
    folder = cache_dir(args.preset, args.matrix)
    if args.part == "prepare":
        with threadpool_limits(limits=args.threads):
            save_cache(folder, build(data_dir(args.preset), args.matrix))
        return
    if args.part:
        nb.set_num_threads(min(args.threads, nb.config.NUMBA_NUM_THREADS))
        with threadpool_limits(limits=args.threads):
            d = load_cache(folder)
            warm_numba()
            row = run_part(args.part, d, folder, args.threads)
        write_json(folder / "logs" / f"{args.part}.json", row)
        return
    parts = tuple(p for p in args.parts.split(",") if p)
    figures = bench_preset(args.preset, args.matrix, args.threads, parts, args.timeout)
    suffix = "" if args.matrix == "positives" else f"_{args.matrix}"
    out = RESULTS / f"cf_models_{args.preset}{suffix}"
    publish(out, figures, markdown(figures))


if __name__ == "__main__":
    main()
