"""Customers as a history of versions: the snapshot and the change feed, one version per instant."""

from datetime import UTC, datetime, timedelta

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from nbo_platform.domain.customers import BEGINNING_OF_TIME, PROFILE_COLUMNS, customer_versions_sql
from nbo_platform.duck import connect

T0 = datetime(2025, 6, 2, tzinfo=UTC)
SINCE_EVER = datetime.fromisoformat(BEGINNING_OF_TIME.replace(" ", "T"))


def versions(snapshot: list[tuple], updates: list[tuple]) -> list[tuple]:
    """snapshot: (customer, hours after T0 or None, fico); updates: (customer, hours, fico, file, line).
    The history as (customer, version, valid_from, valid_to, fico, source)."""
    con = connect()
    profile = {c: None for c in PROFILE_COLUMNS}

    def frame(rows, extra):
        return pd.DataFrame(
            [
                {**profile, "customer_id": c, "updated_at": None if h is None else T0 + timedelta(hours=h), "fico": f}
                | dict(zip(extra, rest, strict=True))
                for c, h, f, *rest in rows
            ],
            columns=["customer_id", "updated_at", *PROFILE_COLUMNS, *extra],
        ).astype({"customer_id": "int64", "updated_at": "datetime64[us, UTC]", "fico": "int64"})

    con.register("snapshot", frame(snapshot, []))
    con.register("updates", frame(updates, ["source_file", "source_line"]).astype({"source_line": "int64"}))
    sql = customer_versions_sql("snapshot", "updates", pii_salt="salt")
    return con.execute(
        f"SELECT customer_id, version, valid_from, valid_to, fico, source FROM ({sql}) ORDER BY 1, 2"
    ).fetchall()


def test_a_change_at_the_same_instant_as_a_snapshot_row_wins_and_versions_chain():
    got = versions([(1, None, 600), (1, 5, 610)], [(1, 5, 700, "a.jsonl", 1), (1, 9, 720, "a.jsonl", 2)])
    at = lambda h: T0 + timedelta(hours=h)  # noqa: E731
    assert got == [
        (1, 1, SINCE_EVER, at(5), 600, "reference"),
        (1, 2, at(5), at(9), 700, "customers_feed"),
        (1, 3, at(9), None, 720, "customers_feed"),
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 3), st.none() | st.integers(0, 6), st.integers(300, 850)),
        min_size=1,
        max_size=8,
        unique_by=lambda r: (r[0], r[1]),  # a snapshot holds one row per customer and instant
    ),
    st.lists(
        st.tuples(st.integers(1, 3), st.integers(0, 6), st.integers(300, 850)),
        min_size=1,
        max_size=8,
        unique_by=lambda r: (r[0], r[1]),  # the feed's key: ingestion keeps one row per customer and instant
    ),
)
def test_the_history_is_one_version_per_instant_chained_in_time_the_change_feed_winning(snapshot, updates):
    updates = [(c, h, f, "feed.jsonl", n) for n, (c, h, f) in enumerate(updates, start=1)]
    expected: dict[int, dict[datetime, tuple[int, str]]] = {}
    for c, h, f in snapshot:
        expected.setdefault(c, {})[SINCE_EVER if h is None else T0 + timedelta(hours=h)] = (f, "reference")
    for c, h, f, *_ in updates:  # the change feed wins an instant both hold
        expected.setdefault(c, {})[T0 + timedelta(hours=h)] = (f, "customers_feed")
    want = []
    for c in sorted(expected):
        starts = sorted(expected[c])
        for v, start in enumerate(starts, start=1):
            end = starts[v] if v < len(starts) else None
            want.append((c, v, start, end, *expected[c][start]))
    assert versions(snapshot, updates) == want
