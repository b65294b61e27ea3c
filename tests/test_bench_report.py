"""The benchmark suite's pure parts: number formatting, ratios, tables, the peer rows, the report rendering,
the child-process runner's time limit, and the CF benchmark's data preparation on tiny data."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _suite
import bench_cf_models
import bench_dask
import bench_rankers
import report


def test_fmt_significant_digits_and_missing():
    assert report.fmt(None) == ""
    assert report.fmt(float("nan")) == ""
    assert report.fmt(0) == "0"
    assert report.fmt(1234567.8) == "1,234,568"
    assert report.fmt(123.4) == "123"
    assert report.fmt(12.34) == "12.3"
    assert report.fmt(0.0123456) == "0.0123"
    assert report.fmt(3.8e-05) == "3.8e-05"


def test_fmt_duration():
    assert report.fmt_duration(42.4) == "42 s"
    assert report.fmt_duration(185) == "3 min 05 s"
    assert report.fmt_duration(3725) == "1 h 02 min"


def test_ratio_guards_missing_and_zero():
    assert report.ratio(6.0, 2.0) == 3.0
    assert report.ratio(None, 2.0) is None
    assert report.ratio(1.0, None) is None
    assert report.ratio(1.0, 0.0) is None
    assert report.fmt_ratio(2.6612) == "2.66x"
    assert report.fmt_ratio(None) == ""


def test_table_alignment_row():
    lines = report.table(["a", "b", "c"], [["x", "1", "2"]])
    assert lines == ["| a | b | c |", "|---|---:|---:|", "| x | 1 | 2 |"]
    assert report.table(["a", "b"], [], "ll")[1] == "|---|---|"


def test_order_presets_smallest_first():
    assert report.order_presets(["medium", "tiny", "custom", "small"]) == [
        "tiny",
        "small",
        "medium",
        "custom",
    ]


def _child(wall=1.0):
    return {"status": "ok", "wall_s": wall, "peak_rss_gib": 0.1}


def test_growth_rows_reports_timeouts_and_growth():
    by = {
        "tiny": {"a": {"status": "ok", "fit_s": 0.5, "child": _child()}, "b": {"status": "ok", "fit_s": 1.0}},
        "small": {"a": {"status": "ok", "fit_s": 2.0, "child": _child()}},
        "medium": {
            "a": {"status": "ok", "fit_s": 10.0, "child": _child()},
            "b": {"status": "timeout", "child": _child(601.0)},
        },
    }
    rows = report.growth_rows(by, ["tiny", "small", "medium"], "fit_s")
    assert rows[0] == ["a", "0.500", "2.00", "10.0", "20.0x"]
    assert rows[1] == ["b", "1.00", "", "timeout (10 min 01 s)", ""]  # one finished size: no growth


def _cf_rows():
    return {
        "ease_cholesky": {"kept_clips": 1000, "solve_s": 1.0, "fit_s": 1.5},
        "ease_inv": {"solve_s": 3.0, "fit_s": 3.5, "max_abs_diff_vs_cholesky": 0.0},
        "slim_numba_top": {"fit_s": 0.5},
        "slim_sklearn_top": {"fit_s": 10.0, "max_abs_diff_vs_numba": 1e-6},
        "bpr_popularity": {"samples_per_s": 4e6, "fit_s": 2.0, "recall@50": 0.05},
        "implicit_bpr": {"samples_per_s": 2e6, "fit_s": 4.0, "recall@50": 0.04},
        "implicit_als": {"fit_s": 1.0, "recall@50": 0.06},
    }


def test_cf_peer_rows_ratios():
    rows = report.cf_peer_rows("small", _cf_rows())
    assert [r[4] for r in rows] == ["3.00x", "20.0x", "2.00x", "0.500x"]
    assert all(r[1] == "small" for r in rows)
    partial = {k: v for k, v in _cf_rows().items() if k != "ease_inv"}  # a timed-out side: no EASE row
    assert len(report.cf_peer_rows("small", partial)) == 3


def test_ann_peer_rows_at_the_pipeline_ef():
    figures = {
        "k": 100,
        "users": 500,
        "rows": [
            {"index": "exact", "ef": None, "recall": 1.0, "qps": 1000.0, "single_qps": 500.0, "build_s": 0.0},
            {
                "index": "hnswlib",
                "ef": 256,
                "recall": 0.99,
                "qps": 4000.0,
                "single_qps": 3000.0,
                "build_s": 1.0,
            },
            {
                "index": "voyager",
                "ef": 256,
                "recall": 0.99,
                "qps": 2000.0,
                "single_qps": 1000.0,
                "build_s": 2.0,
            },
            {"index": "voyager", "ef": 512, "recall": 1.0, "qps": 900.0, "single_qps": 800.0, "build_s": 2.0},
        ],
    }
    rows = report.ann_peer_rows("tiny", figures, ef=256)
    assert [r[4] for r in rows] == ["2.00x", "4.00x"]
    assert "one at a time 3.00x" in rows[0][5]


def test_loop_peer_row():
    row = report.loop_peer_row({"vectorized_s": 0.1, "loop_s": 0.35, "max_abs_diff": 1e-7, "repeat": 3})
    assert row[4] == "3.50x" and "best of 3" in row[5]


def _figures():
    child = _child(2.0)
    gen = {
        "preset": "tiny",
        "timeout_s": 600,
        "candidate_depth": 300,
        "split": {
            "n_users": 100,
            "n_items": 200,
            "fit_interactions": 5000,
            "n_targets": 20,
            "users_with_history": 90,
        },
        "profiles_stage": {"wall_s": 1.0, "peak_rss_gib": 0.2},
        "oracle_ndcg@100": 0.3,
        "union_recall@300": 0.9,
        "rows": [
            {
                "generator": "popular",
                "status": "ok",
                "child": child,
                "fit_s": 0.001,
                "stored_mb": 0.01,
                "latency_ms": 0.1,
                "single_qps": 1000.0,
                "batch_qps": 9000.0,
                "ndcg@100": 0.05,
                "recall@300": 0.4,
            },
            {"generator": "ease_bridge", "status": "timeout", "child": _child(600.5)},
        ],
    }
    cf_row = {
        "part": "bpr_popularity",
        "status": "ok",
        "child": child,
        "model": "BPR popularity",
        "fit_s": 0.1,
        "params_mb": 0.5,
        "latency_ms": 0.2,
        "single_qps": 3000.0,
        "users_per_s": 20000.0,
        "samples_per_s": 3e6,
        "recall@10": 0.07,
        "recall@50": 0.17,
    }
    cf = {
        "timeout_s": 600,
        "info": {"users": 90, "items": 150, "nnz": 800, "eval_users": 30, "train_rows": 5000},
        "rows": [cf_row],
    }
    return {
        "generators": {"tiny": gen},
        "cf": {"tiny": cf},
        "ann": {"tiny": None},
        "rankers": {"tiny": _rankers_figures()},
        "loop": None,
        "ndcg": "",
    }


def _rankers_figures():
    model = {"fit_s": 0.5, "train_rows": 1000, "stored_mb": 0.1, "best_iteration": 9}
    speed = {"latency_ms": 2.0, "single_clips_per_s": 400.0, "batch_clips_per_s": 5000.0}
    return {
        "pipeline": {"status": "ok", "wall_s": 11.0, "peak_rss_gib": 0.6},
        "stages_s": {"blend": 7.0, "rank": 1.0},
        "quota": {"tune_s": 3.0, "shares": {"author_fans": 0.9}},
        "models": {"mixigen": {**model, "fit_s": 0.7}, "reranker": model},
        "scoring": {"mixigen": speed, "reranker": speed},
        "results": {
            "blend": {"ndcg_capped": 0.2},
            "quota": {"ndcg_capped": 0.28},
            "mixigen": {"ndcg_capped": 0.27, "recall@100": 0.48},
            "reranked": {"ndcg_capped": 0.3, "recall@100": 0.53},
            "oracle": {"ndcg_capped": 0.38},
        },
    }


def test_ranker_rows_per_booster_and_failed_pipeline():
    failed = {"pipeline": {"status": "timeout", "wall_s": 3600.0}}
    rows = report.ranker_rows({"tiny": _rankers_figures(), "small": failed}, ["tiny", "small"])
    assert rows[0] == [
        "tiny",
        "mixigen",
        "0.700",
        "1,000",
        "0.100",
        "2.00",
        "400",
        "5,000",
        "0.2700",
        "0.4800",
    ]
    assert rows[1][1] == "reranker" and rows[1][8] == "0.3000"
    assert rows[2][:2] == ["small", "pipeline timeout after 1 h 00 min"] and len(rows[2]) == len(rows[0])
    stages = report.ranker_stage_rows({"tiny": _rankers_figures(), "small": failed}, ["tiny", "small"])
    assert stages == [
        ["tiny", "11.0", "7.00", "3.00", "1.00", "0.600", "0.2000", "0.2800", "0.2700", "0.3000", "0.3800"]
    ]


def test_training_points_put_rankers_against_their_training_rows():
    panels = report.training_points(_figures(), ["tiny"])
    titles = [title for title, _, _ in panels]
    assert titles[2].startswith("rankers")
    assert panels[2][2] == {"mixigen": [(1000, 0.7)], "reranker": [(1000, 0.5)]}
    assert panels[0][2] == {"popular": [(5000, 0.001)]}  # the timed-out generator has no point


def test_render_shows_measured_rows_and_names_the_timeout():
    text = report.render(_figures(), None, ["tiny"])
    assert "| popular | 0.00100 | 0.0100 | 0.100 | 1,000 | 9,000 | 0.0500 | 0.4000 |" in text
    assert "| ease_bridge | timeout after 10 min 00 s |" in text
    assert "tiny: `ease_bridge` timeout after 10 min 00 s (limit 10 min 00 s per process)" in text
    assert "| BPR popularity | 0.100 |" in text
    assert "| tiny | reranker | 0.500 | 1,000 |" in text and "## Rankers" in text
    assert "--collect-only" in text  # no suite: said to be a re-render, no duration claimed


def test_render_states_the_suite_duration():
    suite = {
        "wall_s": 125.0,
        "started": "2026-01-01 00:00:00 UTC",
        "presets": {"tiny": {"wall_s": 100.0, "generated_s": 0.5, "pieces": {"g": {"load_before": 0.5}}}},
    }
    text = report.render(_figures(), suite, ["tiny"])
    assert 'BENCH_PRESETS="tiny"` took 2 min 05 s**' in text
    assert "tiny 1 min 40 s" in text


def test_run_child_kills_on_timeout_and_reports_failures(tmp_path):
    slow = _suite.run_child([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert slow["status"] == "timeout" and slow["wall_s"] < 10
    failed = _suite.run_child([sys.executable, "-c", "raise SystemExit(3)"], timeout=None)
    assert failed["status"] == "failed (rc 3)"
    ok = _suite.run_child([sys.executable, "-c", "print('hi')"], timeout=10, log=tmp_path / "log.txt")
    assert ok["status"] == "ok" and (tmp_path / "log.txt").read_text().strip() == "hi"


def test_write_atomic_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "out.md"
    _suite.write_atomic(path, "one")
    _suite.write_atomic(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in path.parent.iterdir()] == ["out.md"]  # no temporary left behind


def test_cf_recall_counts_hits_over_relevant():
    truth = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float32))
    ids = np.array([[0, 2, 3], [3, 1, 0]], dtype=np.int32)
    assert bench_cf_models.recall(ids, np.array([0, 1]), truth, 1) == pytest.approx((0.5 + 1.0) / 2)
    assert bench_cf_models.recall(ids, np.array([0, 1]), truth, 3) == pytest.approx((0.5 + 1.0) / 2)


def test_cf_build_and_cache_on_tiny(tiny_dir, tmp_path):
    built = bench_cf_models.build(tiny_dir, "positives")
    X, truth, info = built["X"], built["truth"], built["info"]
    assert X.shape == truth.shape == (info["users"], info["items"])
    assert info["nnz"] == X.nnz > 0 and info["eval_users"] == int((np.diff(truth.indptr) > 0).sum()) > 0
    assert set(np.unique(X.data)) == {1.0}
    bench_cf_models.save_cache(tmp_path, built)
    again = bench_cf_models.load_cache(tmp_path)
    assert (again["X"] != X).nnz == 0 and again["info"] == info
    row = bench_cf_models.run_part("popular", again, tmp_path, threads=1)
    assert 0.0 <= row["recall@10"] <= row["recall@50"] <= 1.0 and row["single_qps"] > 0


def test_cf_comparisons_name_parts_that_did_not_finish():
    rows = [{"part": "ease_inv", "status": "timeout", "child": _child(601.0)}]
    assert bench_cf_models.comparisons(rows) == ["ease_inv: timeout after 601 s, not measured"]


def test_clip_slices_one_clip_each_spread_over_the_targets():
    clips = np.array([0, 0, 1, 2, 2, 2, 5, 7, 7])
    slices = bench_rankers.clip_slices(clips, 3)
    assert [clips[s].tolist() for s in slices] == [[0, 0], [2, 2, 2], [7, 7]]
    assert len(bench_rankers.clip_slices(clips, 50)) == 5  # never more calls than clips


def test_dask_client_growth_and_the_local_contrast():
    def run(users, by_stage):
        return {"users": users, "client_peak_gib_by_stage": by_stage}

    shards = "dask, 4 user shards"
    sharded = {
        "many-users-half": {
            "machine": {},
            shards: run(500_000, {"profiles": 0.5, "candidates": 0.8, "rank": 3.0}),
            "local": run(500_000, {"profiles": 2.0, "candidates": 3.0}),
        },
        "many-users": {
            "machine": {},
            shards: run(1_000_000, {"profiles": 0.6, "candidates": 0.9, "rank": 3.2}),
            "local": run(1_000_000, {"profiles": 4.0, "candidates": 5.5}),
        },
    }
    # every stage on shards: the rank stage's peak, 3.0 -> 3.2 over half a million users
    assert bench_dask.client_growth(sharded) == pytest.approx(0.2 / 500_000)
    assert bench_dask.client_growth(sharded, False) == pytest.approx(2.5 / 500_000)
    contrast = bench_dask.growth_contrast(sharded)
    assert contrast == {"stages": ["profiles", "candidates"], "local": 5.0, "user_shards": 0.2}
    del sharded["many-users-half"]["local"]
    assert bench_dask.growth_contrast(sharded) is None
    assert bench_dask.client_growth({"many-users": sharded["many-users"]}) is None


def test_dask_compare_leaves_runs_without_a_table_out():
    runs = {
        "local": {"ndcg_capped": {"a": 0.12341, "b": 0.5}},
        "dask": {"ndcg_capped": {"a": 0.12344, "b": 0.6}},
        "local, some stages": {"ndcg_capped": None},
    }
    bench_dask.compare(runs)
    assert runs["dask"]["identical"] is False and runs["dask"]["differs"] == ["b"]
    assert runs["local"]["identical"] is True
    assert runs["local, some stages"]["identical"] is None and runs["local, some stages"]["differs"] is None
