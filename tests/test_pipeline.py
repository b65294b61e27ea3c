"""The whole pipeline on tiny data: artifacts, the results table, the submission, leakage, fallbacks, CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import tiny_config

from audience import timing
from audience.assign import assign_with_cap
from audience.data.embeddings import load_embeddings
from audience.data.layout import DatasetLayout
from audience.data.presets import preset
from audience.data.schema import FLAG_COLUMNS
from audience.data.synthetic import generate
from audience.io import read_json
from audience.matching import gain_pairs, list_gain
from audience.pipeline import run_all, run_stage
from audience.stages import holdout_runs, training_data
from audience.stages.assign import ndcg_weighted
from audience.submission import read_submission, validate_submission

ROOT = Path(__file__).resolve().parents[1]


def methods(run) -> dict[str, dict]:
    return {row["method"]: row for row in read_json(run.path("results.json"))["methods"]}


def test_results_table_has_every_method_and_sane_order(tiny_run):
    rows = methods(tiny_run)
    sources = set(tiny_run.cfg.sources)
    assert "author_fans" in sources and "coengagement" in sources
    reported = {"random", "hnsw:all", "exact:all", "blend", "reranked", "oracle", "union of sources"}
    assert set(rows) == sources | reported | {"pool_ceiling"}
    union = rows.pop("union of sources")
    rows.pop("pool_ceiling")
    for row in rows.values():
        assert 0.0 <= row["ndcg_capped"] <= 1.0
    for method in sources:
        assert union["recall@100"] >= rows[method]["recall@100"]
        assert rows[method]["recall@100"] <= rows[method]["recall@150"]
    assert rows["oracle"]["ndcg_capped"] > max(r["ndcg_capped"] for m, r in rows.items() if m != "oracle")
    assert rows["popular"]["ndcg_capped"] > 2 * rows["random"]["ndcg_capped"]
    assert rows["hnsw:all"]["ndcg_capped"] > rows["random"]["ndcg_capped"]
    # the target: the default pipeline beats every single source alone (tiny: 0.3077 vs 0.2959)
    assert rows["reranked"]["ndcg_capped"] > max(rows[m]["ndcg_capped"] for m in sources | {"blend"})
    assert "| oracle |" in tiny_run.path("results.md").read_text()


def test_decomposition_orders_the_ceilings(tiny_run):
    """The oracle beats its own order restricted to our pool, which beats our ranking of that pool; no
    assignment of our scores gains more than the bound."""
    parts = read_json(tiny_run.path("results.json"))["decomposition"]
    assert parts["oracle_uncapped"] >= parts["pool_ceiling_uncapped"] >= parts["ranking_uncapped"]
    assert parts["pool_ceiling_uncapped"] > parts["ranking_uncapped"]  # our ranking is not the truth
    assert parts["assignment_gap"] >= -1e-9
    assert parts["assignment_bound"] >= parts["final_capped"] > 0
    assert parts["oracle_share"] == pytest.approx(parts["final_capped"] / parts["oracle_capped"])
    bound = read_json(tiny_run.path("lists", "bound.json"))
    assert bound["uncapped_gain"] >= bound["bound"] >= bound["capped_gain"] > 0
    assert "Where the gap goes" in tiny_run.path("results.md").read_text()


def test_the_priced_assignments_bound_serves_bound_json(tiny_run):
    """bound.json comes from the final method's priced assignment: its capped gain is that of the saved
    lists under the weighted scores, and no other assignment of those scores (the margin greedy) gains more
    than its bound."""
    cfg, n_clips, n_users = tiny_run.cfg, tiny_run.targets().height, tiny_run.catalog.n_users
    assert cfg.final_assignment == "prices" and cfg.ndcg_weights
    final = ndcg_weighted(tiny_run.candidates(cfg.final_method), n_clips, cfg.list_size)
    clip, user, score = (final[c].to_numpy() for c in ("clip", "user", "score"))
    pairs = gain_pairs(clip, user, score, n_clips, n_users)
    bound = read_json(tiny_run.path("lists", "bound.json"))
    capped = np.load(tiny_run.path("lists", f"{cfg.final_method}.capped.npy"))
    assert bound["capped_gain"] == pytest.approx(list_gain(capped, pairs, n_users))
    fallback = np.arange(n_users)
    margin = assign_with_cap(
        clip, user, score, n_clips, n_users, cfg.list_size, cfg.user_cap, fallback, "margin"
    )
    assert bound["bound"] >= list_gain(margin.users, pairs, n_users) > 0


def test_validate_mode_writes_its_submission_in_the_run_folder(tiny_run):
    sub = read_submission(tiny_run.path("submission.parquet"))
    validate_submission(sub, tiny_run.targets()["item_id"].to_numpy())


def test_hnsw_recall_against_exact_is_reported(tiny_run):
    sources = read_json(tiny_run.path("candidates", "sources.json"))
    assert sources["hnsw:all"]["recall_at_100_vs_exact"] > 0.9


def test_assignment_respects_cap_on_every_method(tiny_run):
    cfg = tiny_run.cfg
    for lists in tiny_run.path("lists").glob("*.capped.npy"):
        users = np.load(lists)
        assert users.shape[1] == cfg.list_size and (users >= 0).all()
        assert np.bincount(users.ravel()).max() <= cfg.user_cap
        assert all(len(set(row)) == cfg.list_size for row in users[:50])


def test_split_targets_are_new_clips(tiny_run, tiny_dir):
    layout = DatasetLayout(tiny_dir)
    targets = tiny_run.targets()["item_id"]
    train_items = pl.concat([pl.read_parquet(p, columns=["item_id"]) for p in layout.train_weeks()])[
        "item_id"
    ]
    assert not targets.is_in(train_items.implode()).any()
    val_items = pl.read_parquet(layout.validation_week(), columns=["item_id"])["item_id"]
    assert targets.is_in(val_items.implode()).all()


def test_leakage_truth_week_never_reaches_profiles_or_candidates(tiny_dir, tiny_run, tmp_path):
    """Scramble who did what in the validation week (keep its clip list): fitted artifacts are unchanged."""
    data = tmp_path / "data"
    shutil.copytree(tiny_dir, data)
    week = DatasetLayout(data).validation_week()
    frame = pl.read_parquet(week)
    rng = np.random.default_rng(0)
    all_users = pl.read_parquet(DatasetLayout(data).users_metadata)["user_id"].to_numpy()
    scrambled = frame.with_columns(
        pl.Series("user_id", rng.choice(all_users, frame.height), dtype=pl.UInt32),
        pl.Series("timespent", rng.integers(0, 256, frame.height), dtype=pl.UInt8),
        *(pl.Series(f, rng.random(frame.height) < 0.5) for f in FLAG_COLUMNS),
    ).unique(["user_id", "item_id"])
    scrambled.write_parquet(week)
    cfg = replace(tiny_run.cfg, data_dir=data, run_dir=tmp_path / "run")
    run = run_all(cfg, ("profiles", "candidates", "blend", "rank", "assign"))
    for name in ("fit_data.npz",):
        a, b = np.load(tiny_run.path(name)), np.load(run.path(name))
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
    for path in tiny_run.path("candidates").glob("*.parquet"):
        assert pl.read_parquet(path).equals(pl.read_parquet(run.path("candidates", path.name))), path.name
    for path in tiny_run.path("lists").glob("*.npy"):
        if not path.name.startswith("oracle"):
            np.testing.assert_array_equal(np.load(path), np.load(run.path("lists", path.name)))


def test_submit_mode_with_targets_file_and_fallbacks(tiny_dir, tmp_path):
    """Target clips without embedding or without metadata still get 100 users (popularity fallback)."""
    data = tmp_path / "data"
    shutil.copytree(tiny_dir, data)
    layout = DatasetLayout(data)
    test_items = pl.read_parquet(layout.test_week(), columns=["item_id"])["item_id"].unique().sort()
    no_embedding, no_metadata = int(test_items[0]), 4_123_456_789
    item_id, emb = load_embeddings(layout.item_embeddings)
    keep = item_id != no_embedding
    np.savez(layout.item_embeddings, item_id=item_id[keep], embedding=emb[keep])
    targets = tmp_path / "targets.parquet"
    ids = [*test_items.head(40).to_list(), no_metadata]
    pl.DataFrame({"item_id": pl.Series(ids, dtype=pl.UInt32)}).write_parquet(targets)
    out = tmp_path / "sub" / "submission.parquet"
    cfg = tiny_config(data, tmp_path / "run", mode="submit", targets=targets, out=out)
    run = run_all(cfg)
    split = read_json(run.path("split.json"))
    assert split["targets_without_metadata"] == 1 and split["targets_without_embedding"] == 2
    assert len(split["fit_weeks"]) == len(layout.train_weeks()) + 1
    sub = read_submission(out)
    validate_submission(sub, np.array(ids, dtype=np.uint32))
    assert set(sub["item_id"].to_list()) == set(ids)
    hnsw = run.candidates("hnsw:all")
    clip_of = {int(i): k for k, i in enumerate(run.targets()["item_id"].to_list())}
    assert hnsw.filter(pl.col("clip").is_in([clip_of[no_embedding], clip_of[no_metadata]])).height == 0


def test_users_without_history_are_neither_indexed_nor_candidates(tiny_run):
    """The metadata's late joiners (no train history) stay out of the run's index: no list needs them."""
    fit = tiny_run.fit_data()
    index = read_json(tiny_run.path("split.json"))["index"]
    assert index["metadata_users"] > index["users_with_history"], "tiny data has late joiners"
    assert index["users_added"] == 0 and (fit.user_views > 0).all()
    assert fit.user_views.shape[0] == index["users_with_history"] == tiny_run.catalog.n_users
    for path in tiny_run.path("candidates").glob("*.parquet"):
        users = pl.read_parquet(path)["user"].to_numpy()
        assert (fit.user_views[users] > 0).all(), path.name


def test_stage_order_is_enforced(tiny_dir, tmp_path):
    cfg = tiny_config(tiny_dir, tmp_path / "fresh")
    with pytest.raises(FileNotFoundError, match="run the 'profiles' stage first"):
        run_stage(cfg, "candidates")


def test_cli_runs_on_a_subsample_layout(tmp_path):
    """The one entry point, on another directory (subsample layout), in submit mode, default targets."""
    generate(
        tmp_path / "d",
        preset("tiny", n_users=600, n_items=900, n_authors=60, n_train_weeks=3, seed=9),
        subsample="ur0.1",
        progress=False,
    )
    out = tmp_path / "submission.parquet"
    cmd = [
        sys.executable,
        "-m",
        "audience",
        "run",
        "--data-dir",
        str(tmp_path / "d"),
        "--subsample",
        "ur0.1",
        "--mode",
        "submit",
        "--out",
        str(out),
        "--run-dir",
        str(tmp_path / "run"),
        "--quiet",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert read_submission(out).height == read_json(tmp_path / "run" / "split.json")["n_targets"]
    bad = subprocess.run(
        [*cmd[:5], str(tmp_path / "nowhere"), *cmd[6:]], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "nowhere/metadata/users_metadata.parquet: file not found" in bad.stderr


def test_numbered_scripts_run_in_order(tiny_dir, tmp_path):
    run_dir = tmp_path / "scripted"
    common = [
        "--data-dir",
        str(tiny_dir),
        "--run-dir",
        str(run_dir),
        "--quiet",
        "--mode",
        "validate",
        "--out",
        str(tmp_path / "s.parquet"),
    ]
    for script in (
        "02_build_profiles",
        "03_generate_candidates",
        "04_blend",
        "05_rerank",
        "06_assign",
        "07_evaluate",
        "08_make_submission",
    ):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / f"{script}.py"), *common],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"{script}: {proc.stderr}"
    assert (run_dir / "results.md").is_file() and (tmp_path / "s.parquet").is_file()
    assert read_json(run_dir / "config.json")["mode"] == "validate"


def test_holdout_runs_are_shared_and_reused(tiny_run):
    """The reranker's training runs live beside the run, keyed by content; a rerun of 'rank' reuses them."""
    holdout = sorted((tiny_run.dir.parent / f"{tiny_run.cfg.dataset_name}-holdout").iterdir())
    assert len(holdout) == tiny_run.cfg.reranker.train_weeks
    stamps = {p: (p / "fit_data.npz").stat().st_mtime_ns for p in holdout}
    run_stage(tiny_run.cfg, "rank")
    assert {p: (p / "fit_data.npz").stat().st_mtime_ns for p in holdout} == stamps
    fit_weeks = [read_json(p / "holdout.json")["fit_weeks"] for p in holdout]
    assert sorted(len(w) for w in fit_weeks) == [
        len(read_json(tiny_run.path("split.json"))["fit_weeks"]) - h for h in (2, 1)
    ]


def test_rewritten_data_or_edited_code_rebuilds_the_holdout_runs(tiny_dir, tmp_path, monkeypatch):
    """Data regenerated under the same paths, or an edit of the code that made them, must not be served stale
    holdout runs: both rebuild them in place, dropping the labelled pools of every pool depth. An edit of the
    pool's code alone (the features) rebuilds the pools and keeps the runs' profiles and candidates."""
    data = tmp_path / "data"
    shutil.copytree(tiny_dir, data)
    cfg = tiny_config(data, tmp_path / "run")
    run_all(cfg, ("profiles", "candidates", "blend", "rank"))
    holdout = sorted((cfg.artifacts.parent / f"{cfg.dataset_name}-holdout").iterdir())

    def fit_stamps() -> dict[Path, int]:
        return {p: (p / "fit_data.npz").stat().st_mtime_ns for p in holdout}

    def pools() -> dict[Path, list[str]]:
        return {p: sorted(f.name for f in p.glob(holdout_runs.LABELLED_POOLS)) for p in holdout}

    stamps, labelled = fit_stamps(), pools()
    assert all(len(names) == 1 for names in labelled.values())
    for p in holdout:  # the pool of a run with another pool depth, labelled before the data was rewritten
        shutil.copy(p / labelled[p][0], p / "labelled_pool_depth7_other.parquet")
    split = read_json(Path(cfg.artifacts) / "split.json")
    first_week = Path(split["fit_weeks"][0])
    first_week = first_week if first_week.is_absolute() else Path.cwd() / first_week
    os.utime(first_week, ns=(first_week.stat().st_atime_ns, first_week.stat().st_mtime_ns + 10**9))
    run_stage(cfg, "rank")
    assert sorted((cfg.artifacts.parent / f"{cfg.dataset_name}-holdout").iterdir()) == holdout
    assert all(fit_stamps()[p] != stamps[p] for p in holdout)
    assert pools() == labelled  # the depth-7 pool is gone, this depth's rebuilt
    stamps = fit_stamps()
    run_stage(cfg, "rank")  # nothing changed: reused
    assert fit_stamps() == stamps
    monkeypatch.setattr(training_data, "POOL_CODE", "features")
    run_stage(cfg, "rank")
    assert fit_stamps() == stamps  # the profiles and candidates are kept
    assert all(names[0].endswith("_codefeatures.parquet") for names in pools().values())
    assert all(len(names) == 1 for names in pools().values())  # the old code's pools are dropped
    monkeypatch.setattr(holdout_runs, "HOLDOUT_CODE", "edited")
    run_stage(cfg, "rank")
    assert sorted((cfg.artifacts.parent / f"{cfg.dataset_name}-holdout").iterdir()) == holdout
    assert all(fit_stamps()[p] != stamps[p] for p in holdout)
    assert all(read_json(p / "holdout.json")["code"] == "edited" for p in holdout)


def test_saved_reranker_reproduces_the_reranked_scores(tiny_run):
    from audience.rank.reranker import Reranker
    from audience.stages.training_data import pool_features

    model = Reranker.load(tiny_run.path("ranker"))
    frame = pool_features(tiny_run)
    scored = frame.select("clip", "user").with_columns(pl.Series("again", model.predict(frame)))
    joined = tiny_run.candidates("reranked").join(scored, on=["clip", "user"])
    assert joined.height == frame.height
    np.testing.assert_allclose(joined["score"].to_numpy(), joined["again"].to_numpy(), rtol=1e-6)
    assert set(read_json(tiny_run.path("ranker", "meta.json"))["importance"]) <= set(model.features)


def test_every_stage_records_wall_time_and_peak_memory(tiny_run):
    timings = read_json(tiny_run.path("timings.json"))
    memory = read_json(tiny_run.path("memory.json"))
    substeps = timings.pop("substeps")
    assert set(memory) == set(timings) >= {"profiles", "candidates", "rank", "evaluate"}
    assert all(0.05 < gib < 24 for gib in memory.values()), memory
    # each substep's peak so far is at most its stage's peak; every timed substep has one
    peaks = read_json(tiny_run.path("memory_substeps.json"))
    assert set(peaks) == set(memory)
    for stage, by_substep in peaks.items():
        assert all(0.05 < gib <= memory[stage] for gib in by_substep.values()), (stage, by_substep)
        assert set(by_substep) == set(substeps[stage]), stage
    cfg = tiny_run.cfg
    timed_sources = {f"{s} fit" for s in cfg.sources} | {f"{s} query" for s in cfg.sources}
    assert timed_sources <= set(substeps["candidates"])
    rank = substeps["rank"]
    assert {"boosting", "pair features", "prediction"} <= set(rank)
    # the rank stage's own substeps and its holdout runs' stages account for its wall time, within it
    assert 0.5 * timings["rank"] < sum(rank.values()) <= timings["rank"] * 1.001
    # the priced assignment's own bound serves bound.json: no second bound
    assert f"reranked ({cfg.final_assignment})" in substeps["assign"] and "bound" not in substeps["assign"]
    assert sum(substeps["assign"].values()) <= timings["assign"] * 1.001


def test_substeps_add_up_in_the_innermost_recorder():
    with timing.recorder() as outer:
        with timing.substep("a"):
            pass
        with timing.recorder() as inner:
            timing.add("b", 2.0)
            timing.add("b", 1.0)
        timing.add("c", 0.5)
    timing.add("nowhere", 1.0)  # no recorder open: nothing happens
    assert inner.times == {"b": 3.0}
    assert set(outer.times) == {"a", "c"} and outer.times["c"] == 0.5 and 0 <= outer.times["a"] < 1
    assert outer.peaks == inner.peaks == {}  # no probe, no peaks


def test_a_substeps_peak_is_the_probes_value_at_its_end_in_the_outermost_recorder():
    """The probe is read as each substep ends, nested stages' substeps included; the largest reading per
    name is kept (the stage's peak only grows)."""
    readings = iter([1.0, 3.0, 2.0, 5.0])
    with timing.recorder(lambda: next(readings)) as outer:
        with timing.substep("load"):
            pass
        with timing.recorder() as inner:  # a holdout run's stage: its substeps count in the outer memory
            with timing.substep("holdout pairs"):
                pass
        timing.add("load", 0.1)
        timing.add("score", 0.1)
    assert outer.peaks == {"load": 2.0, "holdout pairs": 3.0, "score": 5.0}
    assert set(inner.times) == {"holdout pairs"} and inner.peaks == {}
