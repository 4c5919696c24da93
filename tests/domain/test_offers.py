from datetime import UTC, datetime

import pytest

from nbo_platform.domain.offers import assign_offers
from nbo_platform.domain.policy import Policy, PolicyError, parse_policy
from nbo_platform.domain.rules import DEFAULT_RULES_PATH, load_rules


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
    con.executemany("INSERT INTO activity VALUES (?, ?, 'deposit', ?, ?)", activities)


def t(h: int, m: int = 0) -> datetime:
    return datetime(2025, 1, 1, h, m, tzinfo=UTC)


def test_each_activity_uses_the_customer_version_valid_at_its_event_time(con):
    setup(
        con,
        [(2, 1, t(0), 109825, 705), (2, 2, t(12), 109825, 624)],
        [(2, 1, 0.5, t(11, 59)), (2, 2, 0.5, t(12)), (2, 3, 0.5, t(13))],
    )
    assign_offers(con, "activity", "customers", load_rules(DEFAULT_RULES_PATH))
    got = con.execute(
        "SELECT activity_id, fico, offer_id, rule_id, customer_version FROM next_best_offer ORDER BY 1"
    ).fetchall()
    assert got == [(1, 705, 3, "new_home_loan", 1), (2, 624, 1, "new_savings", 2), (3, 624, 1, "new_savings", 2)]


def test_activity_of_unknown_customer_gets_no_offer_and_is_recorded_with_the_reason(con):
    setup(con, [(1, 1, t(10), 403646, 465)], [(1, 1, 0.4, t(9)), (7, 2, 0.4, t(11)), (1, 3, 0.4, t(11))])
    result = assign_offers(con, "activity", "customers", load_rules(DEFAULT_RULES_PATH))
    assert (result.assigned, result.unassigned) == (1, 2)
    assert con.execute("SELECT activity_id, reason, detail FROM next_best_offer_unassigned ORDER BY 1").fetchall() == [
        (1, "unknown_customer", "no profile before 2025-01-01T10:00:00Z"),
        (2, "unknown_customer", "no profile for this customer"),
    ]


def test_policy_defaults_and_unknown_key():
    assert parse_policy("") == Policy(60, 15, 100)
    assert parse_policy("cooldown_minutes: 30").cooldown_minutes == 30
    with pytest.raises(PolicyError, match=r"unknown key\(s\) \['cooldown'\]"):
        parse_policy("cooldown: 30", source="policy.yaml")
    with pytest.raises(PolicyError, match="must be a non-negative number"):
        parse_policy("max_accuracy_m: -1")
