"""Helpers of the DuckDB connections the pipeline computes with."""

import pytest

from nbo_platform.duck import Matching, connect, match_rows


def _keys(rows: list[tuple[int | None, int | None]]) -> str:
    values = ", ".join(f"({'NULL' if a is None else a}, {'NULL' if b is None else b})" for a, b in rows) or "(1, 1)"
    return f"SELECT a::BIGINT AS a, b::BIGINT AS b FROM (VALUES {values}) v(a, b)" + ("" if rows else " WHERE false")


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ([(1, 1), (1, 2)], [(1, 2), (1, 1)], Matching(0, 0, 0, 0)),
        ([(1, 1), (1, 2)], [(1, 1), (2, 1)], Matching(1, 1, 0, 0)),  # a key matches on every column
        ([(1, 1)], [(1, 1), (1, 1)], Matching(0, 0, 1, 0)),
        ([(1, 1), (1, 1)], [(1, 1)], Matching(0, 0, 0, 1)),
        ([(1, None)], [(1, None)], Matching(1, 1, 0, 0)),  # a key with a NULL matches nothing
        ([], [(3, 3), (3, 3)], Matching(0, 2, 0, 0)),
    ],
)
def test_matching_rows_on_a_key_of_several_columns(left, right, expected):
    found = match_rows(connect(), _keys(left), _keys(right), ("a", "b"))
    assert found == expected and found.exact == (expected == Matching(0, 0, 0, 0))
