"""Bad input stops the run with an error naming file, column and expectation, or takes a tested fallback."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from audience.data.catalog import load_catalog
from audience.data.embeddings import load_embeddings
from audience.data.ids import IdMap
from audience.data.layout import DatasetLayout
from audience.data.schema import INTERACTIONS_SCHEMA, check_schema
from audience.data.weeks import iter_weeks, read_week
from audience.errors import DataError
from audience.split import read_targets_file


@pytest.fixture
def copy(tiny_dir, tmp_path) -> DatasetLayout:
    root = tmp_path / "data"
    shutil.copytree(tiny_dir, root)
    return DatasetLayout(root)


def test_truncated_parquet_names_the_file(copy):
    week = copy.train_weeks()[1]
    data = week.read_bytes()
    week.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=rf"{week.name}.*not a readable parquet"):
        check_schema(week, INTERACTIONS_SCHEMA)


def test_missing_column_and_wrong_dtype(copy):
    week = copy.train_weeks()[0]
    frame = pl.read_parquet(week)
    frame.drop("like").write_parquet(week)
    with pytest.raises(DataError, match=r"week_00\.parquet: missing column 'like' \(expected Boolean"):
        check_schema(week, INTERACTIONS_SCHEMA)
    frame.with_columns(pl.col("user_id").cast(pl.Int64)).write_parquet(week)
    with pytest.raises(DataError, match=r"column 'user_id' has dtype Int64, expected UInt32"):
        check_schema(week, INTERACTIONS_SCHEMA)


def test_missing_metadata_file(copy):
    copy.items_metadata.unlink()
    with pytest.raises(DataError, match=r"items_metadata\.parquet: file not found"):
        load_catalog(copy)


def test_empty_week_is_skipped_with_warning(copy, caplog):
    catalog = load_catalog(copy)
    week = copy.train_weeks()[2]
    pl.read_parquet(week).clear().write_parquet(week)
    with caplog.at_level(logging.WARNING):
        batches = list(iter_weeks(copy.train_weeks(), catalog.users, catalog.items))
    assert len(batches) == len(copy.train_weeks()) - 1
    assert "week has no rows" in caplog.text
    for path in copy.train_weeks():
        pl.read_parquet(path).clear().write_parquet(path)
    with pytest.raises(DataError, match="every week file is empty"):
        list(iter_weeks(copy.train_weeks(), catalog.users, catalog.items))


def test_nan_in_embedding(copy):
    item_id, emb = load_embeddings(copy.item_embeddings)
    emb = emb.copy()
    emb[3, 5] = np.nan
    np.savez(copy.item_embeddings, item_id=item_id, embedding=emb)
    with pytest.raises(
        DataError, match=rf"item_embeddings\.npz: key 'embedding' has NaN/inf in 1 row.*{item_id[3]}"
    ):
        load_embeddings(copy.item_embeddings)


def test_embedding_file_wrong_keys(copy):
    item_id, emb = load_embeddings(copy.item_embeddings)
    np.savez(copy.item_embeddings, ids=item_id, embedding=emb)
    with pytest.raises(DataError, match=r"missing key\(s\) \['item_id'\]"):
        load_embeddings(copy.item_embeddings)


def test_unknown_user_in_interactions(copy):
    catalog = load_catalog(copy)
    week = copy.train_weeks()[0]
    frame = pl.read_parquet(week)
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit(4_000_000_000, pl.UInt32))
        .otherwise(pl.col("user_id"))
        .alias("user_id")
    ).write_parquet(week)
    with pytest.raises(
        DataError, match=r"week_00\.parquet: column 'user_id' has 1 id\(s\) not in .*4000000000"
    ):
        read_week(week, catalog.users, catalog.items)


def test_null_values_in_interactions(copy):
    catalog = load_catalog(copy)
    week = copy.train_weeks()[0]
    frame = pl.read_parquet(week)
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise(pl.col("like")).alias("like")
    ).write_parquet(week)
    with pytest.raises(DataError, match=r"column 'like' has 3 null"):
        read_week(week, catalog.users, catalog.items, ["like"])


def test_duplicate_target_rows(tmp_path):
    path = tmp_path / "targets.parquet"
    pl.DataFrame({"item_id": pl.Series([5, 7, 5, 9], dtype=pl.UInt32)}).write_parquet(path)
    with pytest.raises(
        DataError, match=r"targets\.parquet: column 'item_id' has 2 duplicate row\(s\), e\.g\. \[5\]"
    ):
        read_targets_file(path)
    pl.DataFrame({"clip": [1]}).write_parquet(path)
    with pytest.raises(DataError, match="missing column 'item_id'"):
        read_targets_file(path)
    pl.DataFrame({"item_id": ["a"]}).write_parquet(path)
    with pytest.raises(DataError, match="dtype String, expected UInt32"):
        read_targets_file(path)


def test_duplicate_ids_in_metadata():
    with pytest.raises(DataError, match="duplicate ids"):
        IdMap(np.array([3, 4, 3], dtype=np.uint32), "users_metadata.parquet (user_id)")


def test_idmap_large_ids_use_binary_search():
    ids = np.array([4_000_000_000, 7, 3_999_999_999], dtype=np.uint32)
    idmap = IdMap(ids, "x")
    np.testing.assert_array_equal(idmap.lookup(np.array([7, 4_000_000_000, 8], dtype=np.uint32)), [1, 0, -1])


def test_missing_validation_week(copy):
    copy.validation_week().unlink()
    with pytest.raises(DataError, match=r"validation: expected exactly one week_NN\.parquet, found 0"):
        copy.validation_week()


def test_layout_requires_train_weeks(tmp_path):
    with pytest.raises(DataError, match=r"train: no week_NN\.parquet files"):
        DatasetLayout(Path(tmp_path)).train_weeks()


def test_config_rejects_unknown_flags_methods_and_table_keys(tmp_path):
    from audience.config import load_config

    with pytest.raises(ValueError, match=r"positive_flags.*each must be one of"):
        load_config(positive_flags="likes")
    with pytest.raises(ValueError, match="final_method 'oracle' must be one of"):
        load_config(final_method="oracle")
    with pytest.raises(ValueError, match="primal_every >= 1"):
        load_config(primal_every=0)
    toml = tmp_path / "run.toml"
    for text, message in (
        ("[hnsw]\nefc = 10\n", r"unknown \[hnsw\] key\(s\) \['efc'\]"),
        (
            "[source.coengagement]\nneighbours = 10\n",
            r"unknown \[source.coengagement\] key\(s\) \['neighbours'\]",
        ),
        ("[source.popular]\nk = 10\n", r"unknown \[source\] key\(s\) \['popular'\]"),  # no settings
        ("[picks]\nshare = 3.0\n", r"\[picks\] is now \[source.picks\]"),
        ("[sources.coengagement]\npower = 3.0\n", r"settings go in \[source.NAME\]"),
    ):
        toml.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_config(toml)


def test_embedding_ids_outside_uint32(copy):
    item_id, emb = load_embeddings(copy.item_embeddings)
    np.savez(copy.item_embeddings, item_id=item_id.astype(np.int64) + 2**32, embedding=emb)
    with pytest.raises(DataError, match="outside UInt32"):
        load_embeddings(copy.item_embeddings)
