"""The block-wise parquet writer: the file equals the frames' concatenation, written whole or not at all."""

from __future__ import annotations

import polars as pl
import pytest

from audience.block_writer import write_parquet_blocks


def _block(lo: int, hi: int) -> pl.DataFrame:
    return pl.DataFrame(
        {"clip": pl.Series(range(lo, hi), dtype=pl.Int32), "score": [i / 7 for i in range(lo, hi)]}
    ).with_columns(pl.col("score").cast(pl.Float32), name=pl.format("u{}", "clip"))


def test_blocks_are_written_as_their_concatenation_one_row_group_each(tmp_path):
    blocks = [_block(0, 5), _block(5, 5), _block(5, 12)]
    path = tmp_path / "pool.parquet"
    assert write_parquet_blocks(iter(blocks), path) == 12
    assert pl.read_parquet(path).equals(pl.concat(blocks))
    assert pl.scan_parquet(path).slice(6, 3).collect().equals(pl.concat(blocks).slice(6, 3))
    assert [p.name for p in tmp_path.iterdir()] == ["pool.parquet"]


def test_a_block_of_other_columns_or_none_leaves_no_file(tmp_path):
    path = tmp_path / "pool.parquet"
    with pytest.raises(ValueError, match=r"pool\.parquet.*differ"):
        write_parquet_blocks([_block(0, 3), _block(3, 4).cast({"clip": pl.Int64})], path)
    with pytest.raises(ValueError, match="no block"):
        write_parquet_blocks([], path)
    assert list(tmp_path.iterdir()) == []
