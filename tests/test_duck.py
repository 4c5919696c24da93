"""Helpers of the DuckDB connections the pipeline computes with."""

import pytest

from nbo_platform.duck import connect, count_repeats


def _values(values: list[str | None]) -> str:
    rows = ", ".join("(NULL)" if v is None else f"('{v}')" for v in values)
    return f"SELECT v::VARCHAR AS v FROM (VALUES {rows}) t(v)"


@pytest.mark.parametrize(
    ("values", "repeats"),
    [
        (["a", "b", "c"], 0),
        (["a", "b", "a", "a"], 2),  # the second and third 'a'
        (["a", None, "b", None], 2),  # a missing value counts as a repeat, as in count(*) - count(DISTINCT)
        (["a", "a", None], 2),
        ([None], 1),
    ],
)
def test_count_repeats_is_rows_minus_distinct_values(values, repeats):
    con = connect()
    assert count_repeats(con, _values(values), "v") == repeats
    (exact,) = con.execute(f"SELECT count(*) - count(DISTINCT v) FROM ({_values(values)})").fetchone()
    assert repeats == exact


def test_count_repeats_settles_a_shared_hash_by_the_values():
    # Two distinct values whose hashes are taken as one (as a 64-bit collision would be) are not a repeat.
    con = connect()
    con.create_function("hash", lambda v: 1, ["VARCHAR"], "UBIGINT")
    assert count_repeats(con, _values(["a", "b", "c"]), "v") == 0
