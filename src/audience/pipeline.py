"""The pipeline's stages. Each reads the previous stage's artifacts from the run folder and writes its own,
so any stage can be rerun alone (the numbered scripts do exactly that).

    profiles    split + id maps + one streamed pass over the fit weeks  -> fit_data.npz, targets.parquet
    candidates  every source and baseline, top-`candidate_depth` users per target clip -> candidates/*.parquet
    blend       reciprocal-rank fusion of the configured sources -> candidates/blend.parquet; MixiGen
                (learned position value, k-way merge) and the tuned fixed quota -> mixigen/, quota
    rank        XGBoost reranker trained on holdout weeks, applied to the pool -> candidates/reranked.parquet
    assign      cap-aware assignment of every method -> lists/<method>.npy (+ uncapped top lists)
    evaluate    NDCG@100 of every method against the truth week (+ the synthetic oracle) -> results.md/json
    submission  the final method's lists -> submissions/submission.parquet (validated)

The runs a run reads are in run.py; the holdout runs that blend (MixiGen) and rank train on, and their
labelled pools, in rank/training_data.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from audience import timing
from audience.arrays import TopK, rank_within_clip
from audience.assign import assign_with_cap
from audience.candidates import ClipQueries, make_source
from audience.candidates.ann import recall_against_exact
from audience.candidates.popular import fallback_order
from audience.candidates.registry import needs_mixture
from audience.config import DEFAULT_SUBMISSION, STAGES, RunConfig
from audience.data.catalog import Catalog, RunNeeds, load_catalog
from audience.data.ids import IdMap, unique_sorted
from audience.errors import DataError, TooLittleData
from audience.evaluation.oracle import oracle_candidates
from audience.io import atomic_path, read_json, write_json, write_parquet
from audience.matching import assign_by_prices, expected_ndcg_weights, gain_pairs, list_gain, pairs_bound
from audience.metrics import ndcg_per_clip, recall_at_depth, truth_positives
from audience.profiles.aggregates import AggregateStore, fit_from_aggregates
from audience.profiles.gmm import fit_gmm
from audience.rank.mixigen import (
    MixiGen,
    kway_merge,
    long_candidates,
    position_trend,
    quota_merge,
    tune_quota,
    value_by_position,
)
from audience.rank.protocol import (
    best_source_on_pools,
    holdout_samples,
    run_target_ids,
)
from audience.rank.reranker import Reranker
from audience.rank.simple_blend import rrf_blend_files
from audience.rank.training_data import pool_features, train_with_fallbacks, training_frames
from audience.resources import peak_rss_gib, reset_peak_rss
from audience.run import Run, file_key
from audience.split import Split
from audience.submission import to_frame, write_submission
from audience.warm import (
    ExcludeSeen,
    fill_unseen,
    group_ndcg,
    seen_pairs,
    write_target_history,
)

log = logging.getLogger(__name__)
ORACLE = "oracle"
# the oracle's order restricted to the final method's pool (pool users it does not list follow in the final
# method's order): the best the pool allows
POOL_CEILING = "pool_ceiling"
POOL_DEPTHS = (100, 300, 1000)  # candidate-pool depths whose recall of the truth week is reported


_stage_depth = 0  # stages run inside a stage (the rank stage's holdout runs) do not reset the peak


@contextmanager
def _timed(run: Run, stage: str):
    """Record the stage wall time (timings.json); an outermost stage also its peak RSS, GiB (memory.json)."""
    global _stage_depth
    outermost = _stage_depth == 0
    if outermost:
        reset_peak_rss()
    _stage_depth += 1
    start = time.perf_counter()
    try:
        with timing.recorder() as substeps:
            yield
    finally:
        _stage_depth -= 1
    seconds = time.perf_counter() - start
    run.record_timing(stage, seconds, substeps)
    if not outermost:  # a holdout run's stage, inside the rank stage
        timing.add(f"holdout {stage}", seconds)
    else:
        path = run.path("memory.json")
        memory = read_json(path) if path.exists() else {}
        memory[stage] = round(peak_rss_gib(), 3)
        write_json(memory, path)


def _index_catalog(
    run: Run, split: Split, pseudo_new: np.ndarray, warm_sample: np.ndarray
) -> tuple[Catalog, np.ndarray]:
    """The run's catalog (only the users and clips it needs) and its target clip ids; saves the catalog.
    `pseudo_new`, `warm_sample`: a holdout run's sampled clips (rank/protocol.holdout_samples)."""
    cfg = run.cfg
    fit_users, fit_items = run.engine.distinct_ids(split.fit_weeks, not cfg.quiet, cfg.weeks_cache)
    # pseudo-new clips count as unseen: their fit-week rows are hidden from the profile pass
    seen = np.setdiff1d(fit_items, pseudo_new, assume_unique=True)  # both sorted, each clip once
    target_ids = run_target_ids(cfg, split, seen, pseudo_new, warm_sample)
    # enough users to fill every list under the cap, plus one list's worth so the lists stay distinct
    min_users = -(-len(target_ids) * cfg.list_size // cfg.user_cap) + cfg.list_size
    needs = RunNeeds(fit_users, unique_sorted(np.concatenate([fit_items, target_ids])), min_users)
    catalog = load_catalog(run.layout, cfg.embedding_dim, needs)
    catalog.save(run.path("catalog.npz"))
    run._catalog = catalog
    return catalog, target_ids


def stage_profiles(run: Run) -> None:
    cfg = run.cfg
    run.layout.check_metadata_present()
    split = run.split()
    pseudo_new, warm_sample = holdout_samples(split, cfg)  # both empty unless a holdout run asks for them
    catalog, target_ids = _index_catalog(run, split, pseudo_new, warm_sample)
    gmm, posteriors = None, None
    if needs_mixture((*cfg.sources, *cfg.baselines)):
        gmm = fit_gmm(catalog.embedding[catalog.has_embedding], cfg.gmm)
        posteriors = gmm.predict_proba(catalog.embedding) * catalog.has_embedding[:, None]
    layout = run.layout
    store = AggregateStore(
        cfg.weeks_cache,
        catalog,
        cfg.positive_flags,
        cfg.profiles,
        (layout.items_metadata, layout.item_embeddings),
    )
    fit = fit_from_aggregates(
        store,
        split.fit_weeks,
        hidden_items=np.isin(catalog.items.ids, pseudo_new) if pseudo_new.size else None,
        posteriors=posteriors,
        progress=not cfg.quiet,
        engine=run.engine,
    )
    fit.gmm = gmm
    seen_ids = catalog.items.ids[fit.item_views > 0]
    queries = ClipQueries.from_catalog(catalog, target_ids)
    warm_targets = np.isin(queries.item_ids, seen_ids)  # targets with interactions in the fit weeks
    if len(queries) * cfg.list_size > catalog.n_users * cfg.user_cap:
        n_meta = catalog.index_counts["metadata_users"]
        raise DataError(
            f"{split.targets_from}: {len(queries)} target clips need {len(queries) * cfg.list_size} slots, "
            f"but {n_meta} users x cap {cfg.user_cap} allow only {n_meta * cfg.user_cap}"
        )
    for what, mask in (("metadata", queries.has_metadata), ("an embedding", queries.has_embedding)):
        if (~mask).any():
            log.warning(
                "%d target clip(s) have no %s; content sources skip them and popularity fills in",
                int((~mask).sum()),
                what,
            )
    fit.save(run.path("fit_data.npz"))
    write_parquet(
        pl.DataFrame(
            {
                "item_id": pl.Series(queries.item_ids, dtype=pl.UInt32),
                "has_metadata": queries.has_metadata,
                "has_embedding": queries.has_embedding,
                "warm": warm_targets,
            }
        ),
        run.path("targets.parquet"),
    )
    write_target_history(
        run.path("target_history.parquet"), split.fit_weeks, queries.item_ids, seen_ids, cfg.positive_flags
    )
    write_json(
        {
            "mode": split.mode,
            "fit_weeks": [str(p) for p in split.fit_weeks],
            "truth_week": str(split.truth_week) if split.truth_week else None,
            "targets_from": split.targets_from,
            "n_targets": len(queries),
            "n_users": catalog.n_users,
            "n_items": catalog.n_items,
            "index": catalog.index_counts,
            "users_with_history": int((fit.user_views > 0).sum()),
            "fit_interactions": int(fit.user_views.sum()),
            "targets_without_metadata": int((~queries.has_metadata).sum()),
            "targets_without_embedding": int((~queries.has_embedding).sum()),
            "warm_targets": int(warm_targets.sum()),
            "pseudo_new_targets": int(pseudo_new.size),
        },
        run.path("split.json"),
    )


def stage_candidates(run: Run) -> None:
    cfg = run.cfg
    fit, queries = run.fit_data(), run.queries()
    report: dict[str, dict] = {}
    results = {}
    history = run.target_history() if cfg.exclude_seen else None
    for name in dict.fromkeys((*cfg.sources, *cfg.baselines)):
        source = make_source(name, cfg) if history is None else ExcludeSeen(make_source(name, cfg), history)
        start = time.perf_counter()
        source.fit(fit, run.catalog)
        fitted = time.perf_counter()
        results[name] = run.engine.recommend(source, queries, cfg.candidate_depth)
        done = time.perf_counter()
        timing.add(f"{name} fit", fitted - start)
        timing.add(f"{name} query", done - fitted)
        write_parquet(results[name].to_frame(name), run.path("candidates", f"{file_key(name)}.parquet"))
        report[name] = {
            "fit_s": round(fitted - start, 3),
            "query_s": round(done - fitted, 3),
            "queries_per_s": round(len(queries) / max(done - fitted, 1e-9), 1),
        }
    for name in results:  # HNSW against its exact twin, when the run has both
        backend, _, profile = name.partition(":")
        if backend == "hnsw" and f"exact:{profile}" in results:
            exact = results[f"exact:{profile}"]
            approx = results[name]
            k = min(cfg.list_size, exact.ids.shape[1])
            recall = recall_against_exact(
                TopK(approx.ids[:, :k], approx.scores[:, :k]), TopK(exact.ids[:, :k], exact.scores[:, :k])
            )
            report[name][f"recall_at_{k}_vs_exact"] = round(recall, 5)
    write_json(report, run.path("candidates", "sources.json"))


def stage_blend(run: Run) -> None:
    """Reciprocal-rank fusion ('blend'); with `learned_blend`, also the holdout-tuned fixed quota ('quota')
    and the MixiGen k-way merge by learned position value ('mixigen')."""
    cfg = run.cfg
    paths = {name: run.candidates_path(name) for name in cfg.sources}
    blended = rrf_blend_files(paths, run.targets().height, k=cfg.blend_rrf_k, depth=cfg.candidate_depth)
    write_parquet(blended, run.path("candidates", "blend.parquet"))
    if not cfg.learned_blend:
        return
    folder = run.path("mixigen")
    mixigen = MixiGen(cfg.mixigen, cfg.sources, cfg.n_threads, cfg.seed)
    model, record, built = train_with_fallbacks(
        run, lambda frame: mixigen.fit(long_candidates(frame, cfg.sources)), "mixigen", run_stage
    )
    if model is None:  # opt-in stage: stop with what was tried (the default chain never comes here)
        raise TooLittleData(f"mixigen: no training protocol could train: {record['tried']}")
    write_json(record, folder / "training.json")
    train = long_candidates(training_frames(run, built, run_stage), cfg.sources)  # cached pools: a re-read
    model.save(folder)
    table = value_by_position(train, model.value(train), cfg.sources)
    write_parquet(table, folder / "value_by_position.parquet")
    tune_start = time.perf_counter()
    objective = cfg.mixigen.quota_objective
    quota_budget = cfg.list_size if objective == "ndcg" else cfg.candidate_depth
    shares, holdout_score = tune_quota(
        train,
        len(cfg.sources),
        quota_budget,
        cfg.mixigen.quota_multipliers,
        cfg.mixigen.quota_rounds,
        objective,
    )
    tune_s = time.perf_counter() - tune_start
    applied = long_candidates(pool_features(run), cfg.sources)
    merged = {
        "mixigen": kway_merge(applied, model.value(applied), cfg.candidate_depth),
        "quota": quota_merge(applied, shares, cfg.candidate_depth),
    }
    contributions = {}
    n_clips = max(run.targets().height, 1)
    for method, frame in merged.items():
        top = frame.filter(pl.col("rank") <= cfg.list_size)
        counts = top.group_by("source").len().sort("source")
        contributions[method] = {cfg.sources[int(s)]: round(n / n_clips, 2) for s, n in counts.iter_rows()}
        out = frame.select("clip", "user", "score", "rank").with_columns(pl.lit(method).alias("source"))
        write_parquet(out, run.path("candidates", f"{method}.parquet"))
    write_json(
        {
            "position_trend_spearman": position_trend(table),
            "quota_shares": {cfg.sources[s]: round(v, 4) for s, v in shares.items()},
            f"quota_holdout_pool_{objective}@{quota_budget}": round(holdout_score, 5),
            "quota_tune_s": round(tune_s, 2),
            f"mean_users_per_clip_by_source_top{cfg.list_size}": contributions,
        },
        folder / "merge.json",
    )


def stage_rank(run: Run) -> None:
    """Train the reranker on `train_weeks` holdout splits, then score this run's candidate pool."""
    cfg = run.cfg
    if not cfg.rerank:
        return
    reranker = Reranker(cfg.reranker, cfg.n_threads, cfg.seed, run.engine.boosting(cfg.n_threads))
    model, record, built = train_with_fallbacks(
        run, timing.substep("boosting")(reranker.fit), "reranker", run_stage
    )
    if model is None:  # the last resort: the source that ranks best on the holdout pools built so far
        pools = training_frames(run, built, run_stage) if built is not None else None
        best, scores = best_source_on_pools(pools, cfg.sources, cfg.list_size)
        record["fallback_source"] = {"source": best, f"holdout_pool_ndcg@{cfg.list_size}": scores}
        log.warning(
            "reranker: cannot train (%s); 'reranked' is the best single source on the holdout weeks, %r "
            "(recorded in %s)",
            "; ".join(str(t["error"]) for t in record["tried"]),
            best,
            run.path("training.json"),
        )
        ranked = run.candidates(best).with_columns(pl.lit("reranked").alias("source"))
    else:
        model.save(run.path("ranker"))
        with timing.substep("pair features"):
            frame = pool_features(run)
        with timing.substep("prediction"):
            score = model.predict(frame)
        scored = frame.select("clip", "user").with_columns(pl.Series("score", score, dtype=pl.Float32))
        ranked = rank_within_clip(scored).with_columns(pl.lit("reranked").alias("source"))
    write_json(record, run.path("training.json"))
    write_parquet(ranked, run.path("candidates", "reranked.parquet"))


def oracle_frame(run: Run, target_ids: np.ndarray) -> tuple[pl.DataFrame, np.ndarray] | None:
    """The synthetic oracle's candidates on user indices, and the external ids those indices name: the
    run's users, then the truth week's users the run never indexed (so the ceiling keeps every user)."""
    oracle = oracle_candidates(run.layout, run.split().truth_week_number, target_ids)
    if oracle is None:
        return None
    known = run.catalog.users.ids
    ids = oracle["user_id"].to_numpy()
    outside = unique_sorted(ids[run.catalog.users.lookup(ids) < 0])
    user_ids = np.concatenate([known, outside]).astype(np.uint32)
    users = IdMap(user_ids, "users of the run and of the oracle")
    return oracle.with_columns(pl.Series("user", users.lookup(ids))).drop("user_id"), user_ids


def list_user_ids(run: Run, method: str) -> np.ndarray:
    """External ids of the user indices in `method`'s lists (the run's users, or the oracle's own)."""
    path = run.path("lists", f"{file_key(method)}.user_ids.npy")
    return np.load(path) if path.is_file() else run.catalog.users.ids


def _assign(
    run: Run,
    method: str,
    frame: pl.DataFrame,
    n_clips: int,
    fallback: np.ndarray,
    strategy: str,
    seen: tuple[np.ndarray, np.ndarray] | None,
    user_ids: np.ndarray | None = None,
) -> dict:
    """Assign `method`'s candidates with and without the cap and save both. `seen` (clip rows, users of the
    targets' fit-week audience, or None): a short warm list is filled with fallback users who have not seen
    the clip. `user_ids` (default the run's users) are the external ids of the frame's user indices, saved
    beside the lists when they differ."""
    cfg = run.cfg
    if seen is not None:
        frame = fill_unseen(frame, *seen, fallback, cfg.list_size)
    clip, user, score = (frame[c].to_numpy() for c in ("clip", "user", "score"))
    n_users = run.catalog.n_users if user_ids is None else len(user_ids)
    if cfg.ndcg_weights and method == "reranked" and score.size and 0 <= score.min() and score.max() <= 1:
        score = score * expected_ndcg_weights(clip, score, n_clips, cfg.list_size)[clip]

    if strategy == "prices":
        result, _ = assign_by_prices(
            clip,
            user,
            _non_negative(score),
            n_clips,
            n_users,
            cfg.list_size,
            cfg.user_cap,
            fallback_order=fallback,
            steps=cfg.bound_steps,
        )
    else:
        result = assign_with_cap(
            clip, user, score, n_clips, n_users, cfg.list_size, cfg.user_cap, fallback, strategy
        )
    # the cap lifted (every strategy then gives each clip its top list), so cap_cost measures the cap alone
    uncapped = assign_with_cap(
        clip, user, score, n_clips, n_users, cfg.list_size, max(n_clips, 1), fallback, "global"
    ).users
    saved = {"capped": result.users, "uncapped": uncapped}
    if user_ids is not None and len(user_ids) != run.catalog.n_users:
        saved["user_ids"] = user_ids
    else:
        run.path("lists", f"{file_key(method)}.user_ids.npy").unlink(missing_ok=True)
    for name, array in saved.items():
        with atomic_path(run.path("lists", f"{file_key(method)}.{name}.npy")) as tmp, open(tmp, "wb") as fh:
            np.save(fh, array if name == "user_ids" else array.astype(np.int32))
    return {
        "from_candidates": int(result.n_from_candidates),
        "from_fallback": int(result.n_from_fallback),
        "displaced_by_cap": int(result.n_displaced),
        "max_user_load": int(result.user_load.max()),
    }


def run_strategy(cfg: RunConfig, method: str) -> str:
    """The assignment of `method`'s lists: `final_assignment` for the final method, else `assignment`."""
    return cfg.final_assignment if method == cfg.final_method else cfg.assignment


def _non_negative(score: np.ndarray) -> np.ndarray:
    """Scores shifted to start at 0 when some are negative (the gain model reads them as probabilities)."""
    low = float(score.min()) if score.size else 0.0
    return score - low if low < 0 else score


def assignment_bound(run: Run, method: str, frame: pl.DataFrame, n_clips: int) -> dict:
    """The Lagrangian bound (matching.py) on the gain of `method`'s capped assignment under its own scores
    (`frame`: its candidates), with the gain of its uncapped top lists and of the lists the assign stage
    chose."""
    cfg = run.cfg
    start = time.perf_counter()
    score = _non_negative(frame["score"].to_numpy().astype(np.float64))
    n_users = run.catalog.n_users
    pairs = gain_pairs(frame["clip"].to_numpy(), frame["user"].to_numpy(), score, n_clips, n_users)
    bound = pairs_bound(pairs, n_users, cfg.list_size, cfg.user_cap, cfg.bound_steps)
    capped = np.load(run.path("lists", f"{file_key(method)}.capped.npy"))
    gain = list_gain(capped, pairs, n_users)
    return {
        "method": method,
        "bound": bound.bound,
        "uncapped_gain": bound.uncapped,
        "capped_gain": gain,
        "gap_to_bound": 1.0 - gain / bound.bound if bound.bound > 0 else 0.0,
        "steps": bound.steps,
        "seconds": round(time.perf_counter() - start, 2),
    }


def pool_ceiling_frame(pool: pl.DataFrame, oracle: pl.DataFrame) -> pl.DataFrame:
    """The pool's pairs scored by the oracle; pairs beyond the oracle's list (its top `oracle_depth`, so
    below every pair it lists) follow in the pool's own order, with negative scores -rank."""
    truth = oracle.select("clip", "user", pl.col("score").cast(pl.Float64).alias("truth"))
    return (
        pool.select("clip", "user", "rank")
        .join(truth, on=["clip", "user"], how="left")
        .select(
            "clip",
            "user",
            pl.coalesce("truth", -pl.col("rank").cast(pl.Float64)).alias("score"),
        )
    )


def stage_assign(run: Run) -> None:
    cfg = run.cfg
    targets = run.targets()
    n_clips = targets.height
    fallback = fallback_order(run.fit_data(), run.catalog)
    item_ids = targets["item_id"].to_numpy()
    seen = seen_pairs(run.target_history(), item_ids, run.catalog) if cfg.exclude_seen else None
    report = {}
    for m in cfg.methods:
        strategy = run_strategy(cfg, m)
        with timing.substep(f"{m} ({strategy})"):
            report[m] = _assign(run, m, run.candidates(m), n_clips, fallback, strategy, seen)
    final = run.candidates(cfg.final_method)
    oracle = oracle_frame(run, item_ids)
    if oracle is not None:
        # the oracle's scores are all ties: it is always drafted by slots, so the ceiling the methods are
        # measured against does not move with the strategy under test
        with timing.substep("oracle and pool ceiling (slots)"):
            report[ORACLE] = _assign(run, ORACLE, oracle[0], n_clips, fallback, "slots", seen, oracle[1])
            ceiling = pool_ceiling_frame(final, oracle[0])
            report[POOL_CEILING] = _assign(
                run, POOL_CEILING, ceiling, n_clips, fallback, "slots", seen, oracle[1]
            )
    write_json(report, run.path("lists", "assignment.json"))
    with timing.substep("bound"):
        bound = assignment_bound(run, cfg.final_method, final, n_clips)
    write_json(bound, run.path("lists", "bound.json"))


def lists_frame(item_ids: np.ndarray, lists: np.ndarray, user_ids: np.ndarray) -> pl.DataFrame:
    """(item_id, user_id list) from a dense index matrix, dropping -1 padding."""
    k = lists.shape[1]
    valid = lists.ravel() >= 0
    return (
        pl.DataFrame({"item_id": np.repeat(item_ids, k)[valid], "user_id": user_ids[lists.ravel()[valid]]})
        .group_by("item_id", maintain_order=True)
        .agg("user_id")
        .cast({"item_id": pl.UInt32, "user_id": pl.List(pl.UInt32)})
    )


def stage_evaluate(run: Run) -> dict:
    cfg = run.cfg
    targets = run.targets()
    item_ids = targets["item_id"].to_numpy()
    user_ids = run.catalog.users.ids
    split = run.split()
    assignment = read_json(run.require("lists/assignment.json", "assign"))
    truth = None
    if split.truth_week is not None:
        try:
            truth = truth_positives(split.truth_week, cfg.positive_flags, item_ids)
        except DataError as exc:
            if cfg.mode == "validate":
                raise
            log.warning("test week cannot be scored, results table left empty: %s", exc)
    rows = []
    depths = sorted(
        {d for d in (cfg.list_size, *POOL_DEPTHS, cfg.candidate_depth) if d <= cfg.candidate_depth}
    )

    def pool_recall(cands: pl.DataFrame) -> dict[str, float]:
        pool = cands.select(
            pl.Series("item_id", item_ids, dtype=pl.UInt32).gather(cands["clip"]),
            pl.Series("user_id", user_ids).gather(cands["user"]),
            "rank",
        )
        found = recall_at_depth(pool, truth, depths, targets=item_ids)
        return {f"recall@{d}": value for d, value in found.items()}

    if truth is not None and truth.height:
        for method in assignment:
            row: dict = {"method": method}
            method_users = list_user_ids(run, method)
            for name in ("uncapped", "capped"):
                lists = np.load(run.path("lists", f"{file_key(method)}.{name}.npy"))
                per_clip = ndcg_per_clip(lists_frame(item_ids, lists, method_users), truth, cfg.list_size)
                row[f"ndcg_{name}"] = float(per_clip["ndcg"].mean()) if per_clip.height else float("nan")
                row.update(group_ndcg(per_clip, targets, name) if name == "capped" else {})
            row["cap_cost"] = row["ndcg_uncapped"] - row["ndcg_capped"]
            if method not in (ORACLE, POOL_CEILING):
                row.update(pool_recall(run.candidates(method)))
            rows.append(row)
        union = pl.concat([run.candidates(m).select("clip", "user", "rank") for m in cfg.sources])
        rows.append({"method": "union of sources", **pool_recall(union)})
    results = {
        "dataset": cfg.dataset_name,
        "mode": cfg.mode,
        "truth_week": str(split.truth_week),
        "n_targets": int(item_ids.shape[0]),
        "n_targets_with_positives": int(truth["item_id"].n_unique()) if truth is not None else 0,
        "final_method": cfg.final_method,
        "methods": rows,
    }
    bound_path = run.path("lists", "bound.json")
    if rows and bound_path.is_file():
        results["decomposition"] = decomposition(rows, read_json(bound_path), cfg.final_method)
    write_json(results, run.path("results.json"))
    table = results_table(results)
    with atomic_path(run.path("results.md")) as tmp:
        tmp.write_text(table + "\n")
    if not cfg.quiet:
        print(table)
    return results


def decomposition(rows: list[dict], bound: dict, final_method: str) -> dict:
    """Where the gap to the oracle goes: the oracle, the pool's ceiling, our ranking uncapped, the best any
    assignment could keep of it, and our capped lists (NDCG@100; None where the run has no oracle).
    `assignment_bound` scales our capped NDCG by bound / capped gain under our own scores: what our lists
    would score if the assignment reached the bound and NDCG moved with our scores' expected gain."""
    by = {row["method"]: row for row in rows}
    final = by[final_method]

    def ndcg(method: str, kind: str) -> float | None:
        return by[method][f"ndcg_{kind}"] if method in by else None

    headroom = bound["bound"] / bound["capped_gain"] if bound["capped_gain"] > 0 else 1.0
    oracle_capped = ndcg(ORACLE, "capped")
    return {
        "oracle_capped": oracle_capped,
        "oracle_uncapped": ndcg(ORACLE, "uncapped"),
        "pool_ceiling_capped": ndcg(POOL_CEILING, "capped"),
        "pool_ceiling_uncapped": ndcg(POOL_CEILING, "uncapped"),
        "ranking_uncapped": final["ndcg_uncapped"],
        "assignment_bound": final["ndcg_capped"] * headroom,
        "final_capped": final["ndcg_capped"],
        "assignment_gap": bound["gap_to_bound"],
        "oracle_share": final["ndcg_capped"] / oracle_capped if oracle_capped else None,
    }


DECOMPOSITION_LABELS = {
    "oracle_uncapped": "oracle, uncapped",
    "oracle_capped": "oracle, capped",
    "pool_ceiling_uncapped": "oracle within our pool, uncapped",
    "pool_ceiling_capped": "oracle within our pool, capped",
    "ranking_uncapped": "our ranking, uncapped",
    "assignment_bound": "our ranking, capped by the best assignment (bound)",
    "final_capped": "our final lists, capped",
}


def decomposition_table(parts: dict) -> str:
    """The decomposition as a markdown table (NDCG@100, best first)."""
    lines = ["| where | NDCG@100 |", "|---|---:|"]
    for key, label in DECOMPOSITION_LABELS.items():
        if parts.get(key) is not None:
            lines.append(f"| {label} | {parts[key]:.4f} |")
    lines.append(
        f"| assignment's gap to its bound (our scores' expected gain) | {parts['assignment_gap']:.2%} |"
    )
    if parts.get("oracle_share") is not None:
        lines.append(f"| final share of the capped oracle | {parts['oracle_share']:.1%} |")
    return "\n".join(lines)


def results_table(results: dict) -> str:
    head = (
        f"dataset {results['dataset']} | mode {results['mode']} | {results['n_targets']} target clips, "
        f"{results['n_targets_with_positives']} with positives"
    )
    if not results["methods"]:
        return head + "\n(no truth available: nothing to score)"
    columns = [c for c in results["methods"][0] if c != "method"]
    for row in results["methods"][1:]:
        columns += [c for c in row if c != "method" and c not in columns]
    lines = [head, "", "| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    ranked = sorted(results["methods"], key=lambda r: -r.get("ndcg_capped", -1.0))
    for row in ranked:
        cells = [f"{row[c]:.4f}" if isinstance(row.get(c), float) else "" for c in columns]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    if results.get("decomposition"):
        lines += ["", "Where the gap goes:", "", decomposition_table(results["decomposition"])]
    return "\n".join(lines)


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
    run = run or Run(cfg)
    run.dir.mkdir(parents=True, exist_ok=True)
    write_json(cfg.to_dict(), run.path("config.json"))
    with threadpool_limits(limits=cfg.n_threads), _timed(run, stage):
        return STAGE_FUNCTIONS[stage](run)


def run_all(cfg: RunConfig, stages: tuple[str, ...] = STAGES) -> Run:
    run = Run(cfg)
    for stage in stages:
        if not cfg.quiet:
            print(f"== {stage}", flush=True)
        run_stage(cfg, stage, run)
    return run
