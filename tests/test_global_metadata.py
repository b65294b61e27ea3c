"""Global-size metadata: a run indexes only what it needs, so padding the metadata changes nothing."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import polars as pl
import pytest
from conftest import tiny_config

from audience.data.catalog import Catalog, RunNeeds, load_catalog
from audience.data.embeddings import embedding_ids, load_embeddings, read_embedding_rows
from audience.data.ids import unique_sorted
from audience.data.layout import DatasetLayout
from audience.data.metadata_padding import pad_metadata
from audience.errors import DataError
from audience.io import read_json
from audience.pipeline import run_all

PADDED_USERS, PADDED_ITEMS = 120_000, 200_000


@pytest.fixture(scope="module")
def padded(tiny_dir, tmp_path_factory) -> DatasetLayout:
    root = tmp_path_factory.mktemp("tiny-padded") / "data"
    shutil.copytree(tiny_dir, root)
    layout = DatasetLayout(root)
    pad_metadata(layout, PADDED_USERS, PADDED_ITEMS, seed=5, progress=False)
    return layout


def test_padding_keeps_own_rows_in_order(tiny_dir, padded):
    own = DatasetLayout(tiny_dir)
    for path, padded_path, column in (
        (own.users_metadata, padded.users_metadata, "user_id"),
        (own.items_metadata, padded.items_metadata, "item_id"),
    ):
        before = pl.read_parquet(path)
        after = pl.read_parquet(padded_path)
        assert after.height == (PADDED_USERS if column == "user_id" else PADDED_ITEMS)
        assert after[column].n_unique() == after.height
        kept = after.filter(pl.col(column).is_in(before[column].implode()))
        assert kept.equals(before)  # same rows, same values, same relative order
    ids, emb = load_embeddings(padded.item_embeddings)
    own_ids, own_emb = load_embeddings(own.item_embeddings)
    assert ids.shape[0] == PADDED_ITEMS and emb.dtype == np.float16
    position = {int(i): k for k, i in enumerate(ids)}
    np.testing.assert_array_equal(emb[[position[int(i)] for i in own_ids]], own_emb)


def test_read_embedding_rows_matches_a_whole_load(padded, tmp_path):
    ids, whole = load_embeddings(padded.item_embeddings)
    rows = np.sort(np.random.default_rng(0).choice(ids.shape[0], 5_000, replace=False))
    for chunk_rows in (1_000, 1 << 20):  # many chunks, and one
        got = read_embedding_rows(padded.item_embeddings, rows, 16, chunk_rows=chunk_rows)
        np.testing.assert_array_equal(got, whole[rows, :16])
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, item_id=ids[:3_000], embedding=whole[:3_000])
    with zipfile.ZipFile(compressed) as archive:
        assert archive.getinfo("embedding.npy").compress_type == zipfile.ZIP_DEFLATED
    np.testing.assert_array_equal(
        read_embedding_rows(compressed, rows[rows < 3_000]), whole[rows[rows < 3_000]]
    )


def test_a_nan_outside_the_run_is_not_read_but_inside_it_is_named(tiny_dir, tmp_path):
    layout = DatasetLayout(shutil.copytree(tiny_dir, tmp_path / "data"))
    ids, emb = load_embeddings(layout.item_embeddings)
    emb = emb.copy()
    emb[7] = np.nan
    np.savez(layout.item_embeddings, item_id=ids, embedding=emb)
    needs = RunNeeds(np.zeros(0, np.uint32), np.setdiff1d(ids, ids[7:8]))
    assert load_catalog(layout, needs=needs).n_items == ids.shape[0] - 1
    with pytest.raises(DataError, match=rf"item_embeddings\.npz: key 'embedding' has NaN/inf.*{ids[7]}"):
        load_catalog(layout, needs=RunNeeds(np.zeros(0, np.uint32), ids[5:10]))


def test_users_are_added_by_activity_only_when_the_cap_needs_them(tiny_dir):
    layout = DatasetLayout(tiny_dir)
    users = pl.read_parquet(layout.users_metadata)
    with_history = users["user_id"].to_numpy()[:50]
    catalog = load_catalog(layout, needs=RunNeeds(with_history, np.zeros(0, np.uint32), min_users=80))
    assert catalog.index_counts == {
        "metadata_users": users.height,
        "users_with_history": 50,
        "users_added": 30,
        "metadata_items": catalog.index_counts["metadata_items"],
    }
    others = users.filter(~pl.col("user_id").is_in(pl.Series(with_history).implode()))
    expected = others.sort("train_interactions_rank").head(30)["user_id"].to_numpy()
    added = np.setdiff1d(catalog.users.ids, with_history)
    np.testing.assert_array_equal(np.sort(added), np.sort(expected))
    in_metadata_order = users.filter(pl.col("user_id").is_in(pl.Series(catalog.users.ids).implode()))
    np.testing.assert_array_equal(catalog.users.ids, in_metadata_order["user_id"].to_numpy())
    enough = load_catalog(layout, needs=RunNeeds(with_history, np.zeros(0, np.uint32), min_users=10))
    assert enough.n_users == 50


def test_catalog_round_trip(tiny_run, tmp_path):
    catalog = tiny_run.catalog
    again = Catalog.load(catalog.save(tmp_path / "catalog.npz"))
    for name in ("item_author", "item_duration", "embedding", "has_embedding"):
        np.testing.assert_array_equal(getattr(again, name), getattr(catalog, name))
    for name in ("users", "items", "authors"):
        np.testing.assert_array_equal(getattr(again, name).ids, getattr(catalog, name).ids)
    assert again.users_frame.equals(catalog.users_frame) and again.index_counts == catalog.index_counts


def test_unique_sorted_matches_numpy():
    values = np.random.default_rng(1).integers(0, 500, size=2_000).astype(np.uint32)
    np.testing.assert_array_equal(unique_sorted(values), np.unique(values))
    assert unique_sorted(np.zeros(0, np.int32)).shape == (0,)


def test_padded_run_gives_the_unpadded_results(tiny_run, padded, tmp_path):
    """The whole pipeline on metadata padded far beyond the data: same results table, and no array in the
    run folder (holdout runs included) is sized by the metadata's row counts."""
    run = run_all(tiny_config(padded.root, tmp_path / "run"))
    assert (
        read_json(run.path("results.json"))["methods"] == read_json(tiny_run.path("results.json"))["methods"]
    )
    index = read_json(run.path("split.json"))["index"]
    assert index["metadata_users"] == PADDED_USERS and index["metadata_items"] == PADDED_ITEMS
    assert run.catalog.n_users == index["users_with_history"] + index["users_added"] < 2_000
    shapes = [np.load(path, mmap_mode="r").shape for path in tmp_path.rglob("*.npy")]
    for path in tmp_path.rglob("*.npz"):
        with np.load(path) as arrays:
            shapes += [arrays[key].shape for key in arrays.files]
    assert len(shapes) > 10 and embedding_ids(padded.item_embeddings).shape == (PADDED_ITEMS,)
    assert not {PADDED_USERS, PADDED_ITEMS} & {d for shape in shapes for d in shape}
