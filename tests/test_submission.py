from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from audience.errors import SubmissionError
from audience.submission import read_submission, to_frame, validate_submission, write_submission

LIST_SIZE = 4
CAP = 2
TARGETS = np.array([10, 20, 30, 40], dtype=np.uint32)


def _valid() -> pl.DataFrame:
    users = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [1, 2, 9, 10], [3, 4, 5, 6]], dtype=np.uint32)
    return to_frame(TARGETS, users)


LIST_DTYPE = pl.List(pl.UInt32)


def _with_lists(lists: list, dtype: pl.DataType = LIST_DTYPE) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": pl.Series(TARGETS[: len(lists)], dtype=pl.UInt32),
            "user_id": pl.Series(lists, dtype=dtype),
        }
    )


def _check(df: pl.DataFrame, targets=TARGETS) -> None:
    validate_submission(df, targets, list_size=LIST_SIZE, user_cap=CAP)


def test_to_frame_builds_the_submission_schema():
    df = _valid()
    assert df.schema == pl.Schema({"item_id": pl.UInt32, "user_id": pl.List(pl.UInt32)})
    assert df.get_column("user_id").to_list()[2] == [1, 2, 9, 10]
    assert df.get_column("item_id").to_list() == TARGETS.tolist()
    with pytest.raises(ValueError, match=r"UInt32"):
        to_frame(TARGETS, -np.ones((4, 2), dtype=np.int64))
    with pytest.raises(ValueError, match=r"expected item_ids"):
        to_frame(TARGETS, np.ones((3, 2), dtype=np.uint32))


def test_valid_submission_passes_as_list_and_as_array():
    _check(_valid())
    _check(_valid().with_columns(pl.col("user_id").cast(pl.Array(pl.UInt32, LIST_SIZE))))
    _check(_valid(), pl.Series(TARGETS.astype(np.int64)))


@pytest.mark.parametrize(
    "df",
    [
        _valid().with_columns(pl.col("item_id").cast(pl.Int64)),
        _valid().with_columns(pl.col("user_id").cast(pl.List(pl.Int64))),
        _valid().drop("user_id"),
        _valid().with_columns(score=pl.lit(1.0)),
        _valid().rename({"user_id": "users"}),
    ],
)
def test_schema_rule(df):
    with pytest.raises(SubmissionError, match=r"rule 'schema'"):
        _check(df)


def test_schema_rule_array_of_wrong_width():
    df = _with_lists([[1, 2, 3]] * 4, pl.Array(pl.UInt32, 3))
    with pytest.raises(SubmissionError, match=r"rule 'schema'.*Array"):
        _check(df)


def test_no_nulls_rule():
    df = _valid()
    with pytest.raises(SubmissionError, match=r"rule 'no nulls' broken by 1 row.*item_id is null"):
        _check(
            df.with_columns(
                pl.when(pl.col("item_id") == 20).then(None).otherwise(pl.col("item_id")).alias("item_id")
            )
        )
    lists = df.get_column("user_id").to_list()
    with pytest.raises(
        SubmissionError, match=r"rule 'no nulls' broken by 1 row.*list is null for item_id 30"
    ):
        _check(_with_lists([*lists[:2], None, lists[3]]))
    with pytest.raises(SubmissionError, match=r"rule 'no nulls' broken by 2 row.*item_id 10 holds null"):
        _check(_with_lists([[1, None, 3, 4], lists[1], lists[2], [3, 4, None, 6]]))


def test_one_row_per_clip_rule():
    df = pl.concat([_valid(), _valid().tail(1)])
    with pytest.raises(SubmissionError, match=r"rule 'one row per clip' broken by 1 clip.*item_id 40"):
        _check(df)


def test_every_target_present_rule():
    with pytest.raises(
        SubmissionError, match=r"rule 'every target present' broken by 1 .*item_id 50 missing"
    ):
        _check(_valid(), np.append(TARGETS, 50))


def test_only_target_clips_rule():
    with pytest.raises(SubmissionError, match=r"rule 'only target clips' broken by 1 row.*item_id 40 is not"):
        _check(_valid(), TARGETS[:3])


def test_list_size_rule():
    lists = _valid().get_column("user_id").to_list()
    df = _with_lists([lists[0], [5, 6, 7], lists[2], [*lists[3], 11]])
    with pytest.raises(
        SubmissionError, match=r"rule 'list size' broken by 2 row.*item_id 20 has 3 users, expected 4"
    ):
        _check(df)


def test_distinct_users_rule():
    lists = _valid().get_column("user_id").to_list()
    df = _with_lists([lists[0], [5, 6, 6, 8], lists[2], lists[3]])
    with pytest.raises(
        SubmissionError, match=r"rule 'distinct users' broken by 1 row.*item_id 20 lists user_id 6 twice"
    ):
        _check(df)


def test_user_cap_rule():
    lists = _valid().get_column("user_id").to_list()
    df = _with_lists([lists[0], [1, 6, 7, 8], lists[2], lists[3]])  # user 1 in three lists, cap 2
    with pytest.raises(
        SubmissionError, match=r"rule 'user cap' broken by 1 user.*user_id 1 is in 3 lists.*item_id 10"
    ):
        _check(df)


def test_write_then_read_roundtrip(tmp_path):
    path = tmp_path / "nested" / "dir" / "submission.parquet"
    df = _valid().with_columns(pl.col("user_id").cast(pl.Array(pl.UInt32, LIST_SIZE)))
    assert write_submission(df, path, TARGETS, list_size=LIST_SIZE, user_cap=CAP) == path
    back = read_submission(path)
    assert back.schema == pl.Schema({"item_id": pl.UInt32, "user_id": pl.List(pl.UInt32)})
    assert back.equals(_valid())
    assert sorted(p.name for p in path.parent.iterdir()) == ["submission.parquet"]


def test_writer_validates_first(tmp_path):
    path = tmp_path / "submission.parquet"
    with pytest.raises(SubmissionError, match=r"rule 'every target present'"):
        write_submission(_valid(), path, np.append(TARGETS, 99), list_size=LIST_SIZE, user_cap=CAP)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_writer_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "submission.parquet"
    path.write_bytes(b"previous submission")
    written: list[str] = []

    def broken_write(self, file, *args, **kwargs):
        with open(file, "wb") as handle:  # half a file under the temporary name, then a crash
            handle.write(b"PAR1 half written")
        written.append(str(file))
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", broken_write)
    with pytest.raises(OSError, match=r"disk full"):
        write_submission(_valid(), path, TARGETS, list_size=LIST_SIZE, user_cap=CAP)
    assert len(written) == 1 and written[0] != str(path)
    assert path.read_bytes() == b"previous submission"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.parquet"]


def test_read_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.parquet"
    with pytest.raises(SubmissionError, match=r"nope.parquet: submission file not found"):
        read_submission(missing)
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"not parquet at all")
    with pytest.raises(SubmissionError, match=r"corrupt.parquet: not a readable parquet"):
        read_submission(corrupt)
    wrong = tmp_path / "wrong.parquet"
    _valid().with_columns(pl.col("item_id").cast(pl.Int64)).write_parquet(wrong)
    with pytest.raises(SubmissionError, match=r"wrong.parquet: submission schema"):
        read_submission(wrong)


def test_validator_on_a_large_submission():
    rng = np.random.default_rng(0)
    n_clips, k, n_users = 5_000, 100, 20_000
    users = np.argsort(rng.random((n_clips, 300)), axis=1)[:, :k].astype(np.uint32)
    users += (np.arange(n_clips, dtype=np.uint32) % (n_users // 300))[:, None] * 300
    items = rng.choice(1_000_000, n_clips, replace=False).astype(np.uint32)
    df = to_frame(items, users)
    validate_submission(df, items)
    broken = users.copy()
    broken[17, 5] = broken[17, 6]
    with pytest.raises(SubmissionError, match=rf"rule 'distinct users' broken by 1 row.*item_id {items[17]}"):
        validate_submission(to_frame(items, broken), items)
