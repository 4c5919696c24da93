import tempfile
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbo_platform.domain.offers import (
    account_for_activities,
    lookup_text_values,
    offer_lookup_sql,
    versions_of_day_sql,
    write_offers,
)
from nbo_platform.domain.policy import Policy, PolicyError, parse_policy
from nbo_platform.domain.rules import DEFAULT_RULES_PATH, load_rules
from nbo_platform.duck import Matching, connect
from nbo_platform.lake import Lake


def setup(con, versions, activities):
    con.execute(
        "CREATE TABLE customers (customer_id BIGINT, version INT, valid_from TIMESTAMPTZ, "
        "income BIGINT, fico BIGINT, gender VARCHAR)"
    )
    con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, NULL)", versions)
    # Versions as the customers asset stores them: valid until the next version of the customer.
    con.execute(
        "CREATE OR REPLACE TABLE customers AS SELECT *, lead(valid_from) OVER "
        "(PARTITION BY customer_id ORDER BY valid_from) AS valid_to FROM customers"
    )
    con.execute(
        "CREATE TABLE activity (customer_id BIGINT, activity_id BIGINT, activity_type VARCHAR, "
        "propensity_to_buy DOUBLE, event_time TIMESTAMPTZ)"
    )
    if activities:
        con.executemany("INSERT INTO activity VALUES (?, ?, 'deposit', ?, ?)", activities)


def t(h: int, m: int = 0) -> datetime:
    return datetime(2025, 1, 1, h, m, tzinfo=UTC)


DAY = t(0).date()


def offers(con, lake, rules=None):
    """Write the day's offers; the two tables as written."""
    result = write_offers(con, lake, DAY, "activity", "customers", rules or load_rules(DEFAULT_RULES_PATH))

    def table(name):
        return f"read_parquet('{lake.partition_dir(name, DAY.isoformat())}/data.parquet', hive_partitioning = false)"

    return result, table("next_best_offer"), table("next_best_offer_unassigned")


def test_each_activity_uses_the_customer_version_valid_at_its_event_time(con, lake):
    setup(
        con,
        [(2, 1, t(0), 109825, 705), (2, 2, t(12), 109825, 624)],
        [(2, 1, 0.5, t(11, 59)), (2, 2, 0.5, t(12)), (2, 3, 0.5, t(13))],
    )
    result, assigned, _ = offers(con, lake)
    got = con.execute(
        f"SELECT activity_id, fico, offer_id, rule_id, customer_version FROM {assigned} ORDER BY 1"
    ).fetchall()
    assert got == [(1, 705, 3, "new_home_loan", 1), (2, 624, 1, "new_savings", 2), (3, 624, 1, "new_savings", 2)]
    assert (result.assigned, result.unassigned) == (3, 0)


def test_versions_that_ended_before_the_day_or_start_after_it_take_no_part(con, lake):
    # A version that ended before the day, the one valid through it, one that starts the next day.
    setup(
        con,
        [
            (2, 1, t(0) - timedelta(days=30), 20000, 500),
            (2, 2, t(0) - timedelta(days=1), 109825, 705),
            (2, 3, t(0) + timedelta(days=1), 20000, 500),
        ],
        [(2, 1, 0.5, t(0)), (2, 2, 0.5, t(23, 59))],
    )
    _, assigned, _ = offers(con, lake)
    assert con.execute(f"SELECT activity_id, customer_version FROM {assigned} ORDER BY 1").fetchall() == [
        (1, 2),
        (2, 2),
    ]


def test_activity_of_unknown_customer_gets_no_offer_and_is_recorded_with_the_reason(con, lake):
    setup(con, [(1, 1, t(10), 403646, 465)], [(1, 1, 0.4, t(9)), (7, 2, 0.4, t(11)), (1, 3, 0.4, t(11))])
    result, assigned, unassigned = offers(con, lake)
    assert (result.assigned, result.unassigned) == (1, 2)
    assert con.execute(f"SELECT activity_id, offer_id FROM {assigned}").fetchall() == [(3, 1)]
    assert con.execute(f"SELECT activity_id, reason, detail FROM {unassigned}").fetchall() == [
        (1, "unknown_customer", "no profile before 2025-01-01T10:00:00Z"),
        (2, "unknown_customer", "no profile for this customer"),
    ]


def test_written_tables_keep_their_types_and_a_rerun_replaces_both_files(con, lake):
    setup(con, [(1, 1, t(0), 403646, 465)], [(1, 1, 0.4, t(9)), (7, 2, 0.4, t(11))])
    _, assigned, unassigned = offers(con, lake)
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {assigned})").fetchall())
    # ENUMs while computing, text in the files: readers see strings.
    assert types["rule_id"] == types["activity_type"] == "VARCHAR"
    assert set(types) == {
        "customer_id",
        "activity_id",
        "propensity_to_buy",
        "activity_type",
        "income",
        "fico",
        "offer_id",
        "rule_id",
        "event_time",
        "customer_version",
    }
    # The unknown customer's profile arrives; the re-run empties the unassigned file instead of keeping it.
    con.execute("INSERT INTO customers VALUES (7, 1, TIMESTAMPTZ '2024-06-01', 30000, 600, NULL, NULL)")
    result, assigned, unassigned = offers(con, lake)
    assert (result.assigned, result.unassigned) == (2, 0)
    assert con.execute(f"SELECT count(*) FROM {unassigned}").fetchone() == (0,)
    assert con.execute(f"SELECT activity_id, offer_id FROM {assigned} ORDER BY 1").fetchall() == [(1, 1), (2, 2)]


def test_a_day_without_activity_writes_empty_tables(con, lake):
    setup(con, [(1, 1, t(0), 403646, 465)], [])
    result, assigned, unassigned = offers(con, lake)
    assert (result.assigned, result.unassigned) == (0, 0)
    assert con.execute(f"SELECT count(*) FROM {assigned}").fetchone() == (0,)
    assert con.execute(f"SELECT count(*) FROM {unassigned}").fetchone() == (0,)


def test_lookup_with_enum_text_gives_the_same_rows_as_text(con, lake):
    setup(
        con,
        [(c, 1, t(0), income, 650) for c, income in ((1, 150000), (2, 30000), (3, 80000))],
        [(c % 4, 10 + i, 0.5, t(i % 24, i % 60)) for i, c in enumerate(range(40))],  # customer 0: unknown
    )
    _, assigned, _ = offers(con, lake)
    con.execute(
        "CREATE TABLE offer_list AS SELECT * FROM (VALUES (1, 'new_savings', 'https://x/1'), (2, 'new_checking', "
        "'https://x/2'), (3, 'new_home_loan', NULL)) o(offer_id, offer_name, offer_url)"
    )
    values = lookup_text_values(con, assigned, "offer_list")
    assert values == {
        "activity_type": ["deposit"],
        "rule_id": ["new_checking", "new_home_loan", "new_savings"],
        "offer_name": ["new_checking", "new_home_loan", "new_savings"],
        "offer_url": ["https://x/1", "https://x/2"],
    }
    plain, typed = (lake.root / "plain.parquet", lake.root / "typed.parquet")
    lake.write(con, offer_lookup_sql(assigned, "offer_list"), plain)
    lake.write(con, offer_lookup_sql(assigned, "offer_list", values), typed)
    read = [con.execute(f"SELECT * FROM '{f}' ORDER BY ALL").fetchall() for f in (plain, typed)]
    assert read[0] == read[1] and len(read[0]) == 30
    assert con.execute(f"SELECT DISTINCT typeof(offer_name), typeof(rule_id) FROM '{typed}'").fetchall() == [
        ("VARCHAR", "VARCHAR")
    ]


def _ids(values: list[int | None]) -> str:
    rows = ", ".join(f"({'NULL' if v is None else v})" for v in values) or "(NULL)"
    where = "" if values else " WHERE false"
    return f"SELECT activity_id::BIGINT AS activity_id FROM (VALUES {rows}) v(activity_id){where}"


@pytest.mark.parametrize(
    ("activities", "rows", "expected"),
    [
        ([1, 2, 3], [3, 1, 2], Matching(0, 0, 0, 0)),
        ([], [], Matching(0, 0, 0, 0)),
        ([1, 2, 3], [1, 3], Matching(1, 0, 0, 0)),  # activity 2 has no row
        ([1, 2], [1, 2, 9], Matching(0, 1, 0, 0)),  # row 9 has no activity
        ([1, 2], [1, 2, 2, 2], Matching(0, 0, 2, 0)),  # activity 2 has three rows
        ([1, 2, 2], [1, 2], Matching(0, 0, 0, 1)),  # two activities share id 2, one row for both
        ([1, 2, 2], [1, 2, 2], Matching(0, 0, 2, 2)),  # as many rows as activities, but not one each
        ([1, None], [1, None], Matching(1, 1, 0, 0)),  # a NULL id matches nothing
        ([1, 2], [3, 3], Matching(2, 2, 0, 0)),  # repeats among rows without activity count as extra
    ],
)
def test_accounting_for_activities_finds_each_kind_of_gap(con, activities, rows, expected):
    found = account_for_activities(con, _ids(activities), _ids(rows))
    assert found == expected
    assert found.exact == (expected == Matching(0, 0, 0, 0))


def test_policy_defaults_and_unknown_key():
    assert parse_policy("") == Policy(60, 15, 100)
    assert parse_policy("cooldown_minutes: 30").cooldown_minutes == 30
    with pytest.raises(PolicyError, match=r"unknown key\(s\) \['cooldown'\]"):
        parse_policy("cooldown: 30", source="policy.yaml")
    with pytest.raises(PolicyError, match="must be a non-negative number"):
        parse_policy("max_accuracy_m: -1")
    assert parse_policy("attribution_window_minutes: 1440").attribution_window_minutes == 1440
    with pytest.raises(PolicyError, match=r"policy.yaml: attribution_window_minutes must be at most 1440 \(a day\)"):
        parse_policy("attribution_window_minutes: 1441", source="policy.yaml")


def test_versions_of_a_day_leave_out_one_ending_at_its_start_and_one_starting_at_its_end(con):
    # Customer 1: a version that ended exactly at midnight, then one that starts inside the day.
    # Customer 2: one version since before the day, still current. Customer 3: starts at the next
    # midnight. Intervals are [valid_from, valid_to): the version ending at midnight is left out.
    setup(
        con,
        [
            (1, 1, t(0) - timedelta(days=2), 10, 700),
            (1, 2, t(0), 10, 700),
            (1, 3, t(12), 10, 700),
            (2, 1, t(0) - timedelta(days=30), 10, 700),
            (3, 1, t(0) + timedelta(days=1), 10, 700),
            (4, 1, t(0) - timedelta(days=3), 10, 700),
            (4, 2, t(23, 59), 10, 700),
        ],
        [],
    )
    kept = con.execute(
        f"SELECT customer_id, version FROM {versions_of_day_sql('customers', DAY)} ORDER BY ALL"
    ).fetchall()
    assert kept == [(1, 2), (1, 3), (2, 1), (4, 1), (4, 2)]


@settings(max_examples=60, deadline=None)
@given(
    # (customer, hours from the day's start, a coarse grid where an activity at a version's start is
    # frequent): versions from the day before to the day after.
    st.lists(st.tuples(st.integers(1, 4), st.integers(-24, 48)), min_size=1, max_size=12, unique=True),
    st.lists(st.tuples(st.integers(1, 5), st.integers(0, 23)), min_size=1, max_size=20),
)
def test_each_activity_joins_the_latest_version_started_at_or_before_it(versions, activities):
    """Against the rule as written, one activity at a time: the customer's version with the latest
    valid_from at or before the event time (a later one ends it), else no offer, reason unknown_customer."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    at = lambda h: start + timedelta(hours=h)  # noqa: E731
    # Each version's own FICO, so that the version taken shows in the offer row.
    rows = [(c, i + 1, at(m), 80000, 600 + i) for i, (c, m) in enumerate(sorted(versions))]
    con = connect()
    setup(con, rows, [(c, i, 0.5, at(m)) for i, (c, m) in enumerate(activities)])
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(tmp)
        result, assigned, unassigned = offers(con, lake)
        got = dict(con.execute(f"SELECT activity_id, customer_version FROM {assigned}").fetchall())
        missing = {i for (i,) in con.execute(f"SELECT activity_id FROM {unassigned}").fetchall()}
        fico = dict(con.execute(f"SELECT activity_id, fico FROM {assigned}").fetchall())
    for i, (c, m) in enumerate(activities):
        started = [(vm_at, version, f) for vc, version, vm_at, _, f in rows if vc == c and vm_at <= at(m)]
        if started:
            _, version, f = max(started)
            assert got[i] == version and fico[i] == f and i not in missing
        else:
            assert i in missing and i not in got
    assert (result.assigned, result.unassigned) == (len(got), len(missing))
