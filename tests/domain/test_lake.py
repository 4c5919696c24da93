import pyarrow.parquet as pq
import pytest

from nbo_platform.lake import Lake


def test_write_split_writes_each_value_to_its_file_in_one_pass(lake, con, tmp_path):
    query = "SELECT range AS id, range % 3 = 0 AS _keep FROM range(10)"
    keep, rest = tmp_path / "keep.parquet", tmp_path / "out" / "rest.parquet"
    assert lake.write_split(con, query, "_keep", {"true": keep, "false": rest}) == {"true": 4, "false": 6}
    assert con.execute(f"SELECT list(id ORDER BY id) FROM '{keep}'").fetchone() == ([0, 3, 6, 9],)
    assert con.execute(f"DESCRIBE SELECT * FROM '{rest}'").fetchall()[0][0] == "id"  # the split column is left out
    assert not any((lake.root / ".staging").iterdir())


def test_write_split_replaces_a_value_without_rows_by_an_empty_file(lake, con, tmp_path):
    keep, rest = tmp_path / "keep.parquet", tmp_path / "rest.parquet"
    lake.write_split(con, "SELECT range AS id, true AS _keep FROM range(3)", "_keep", {"true": keep, "false": rest})
    rest.write_bytes(b"stale")
    written = lake.write_split(
        con, "SELECT range AS id, true AS _keep FROM range(5)", "_keep", {"true": keep, "false": rest}
    )
    assert written == {"true": 5, "false": 0}
    assert pq.read_table(rest).column_names == ["id"]


def test_write_split_refuses_a_value_without_a_target(lake, con, tmp_path):
    with pytest.raises(ValueError, match=r"_keep: no target for the value\(s\) \['false'\]"):
        lake.write_split(con, "SELECT 1 AS id, false AS _keep", "_keep", {"true": tmp_path / "keep.parquet"})


@pytest.mark.parametrize("known", [False, True], ids=["dates found", "dates given"])
def test_write_partitioned_writes_a_file_per_date_in_the_query_order(lake, con, known):
    days = "['2025-01-01', '2025-01-02', '2025-01-03']"
    query = f"SELECT range AS id, {days}[1 + (range // 4)::INT]::DATE AS date FROM range(10) ORDER BY id DESC"
    dates = ["2025-01-01", "2025-01-02", "2025-01-03"] if known else None
    assert lake.write_partitioned(con, query, "t", "b.parquet", dates) == {
        "2025-01-01": 4,
        "2025-01-02": 4,
        "2025-01-03": 2,
    }
    one = "SELECT range AS id, DATE '2025-01-05' AS date FROM range(10) ORDER BY id DESC"
    assert lake.write_partitioned(con, one, "t", "b.parquet", ["2025-01-05"] if known else None) == {"2025-01-05": 10}
    for day, ids in (("2025-01-02", [7, 6, 5, 4]), ("2025-01-05", list(range(9, -1, -1)))):
        [path] = lake.partition_files("t", day)
        assert pq.read_table(path).column_names == ["id"]  # the date is the folder's
        assert pq.read_table(path).column("id").to_pylist() == ids
    assert not any((lake.root / ".staging").iterdir())


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_files_are_written_in_the_configured_parquet_version(con, tmp_path, version):
    lake = Lake(str(tmp_path / "lake"), parquet_version=version)
    target = lake.partition_dir("t", "2025-01-01") / "data.parquet"
    lake.write(con, "SELECT range AS id, range / 7 AS x FROM range(100000)", target)
    encodings = pq.ParquetFile(target).metadata.row_group(0).column(0).encodings
    assert ("DELTA_BINARY_PACKED" in encodings) == (version == "v2")
    with pytest.raises(ValueError, match="expected one of v1, v2"):
        Lake(str(tmp_path / "lake"), parquet_version="v3")
