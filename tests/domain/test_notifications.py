"""Notification decisions: each step of the contract, the cooldown, holdout and channels."""

import hashlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nbo_platform.domain.notifications import cooldown_notified, decide_notifications, notification_id_sql
from nbo_platform.domain.policy import Policy

T0 = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def customer(cid, valid_from=EPOCH, version=1, loc=True, mkt=True, channel="push", email="a@b.co", phone="+57 300"):
    return dict(
        customer_id=cid,
        version=version,
        valid_from=valid_from,
        location_opt_in=loc,
        marketing_opt_in=mkt,
        preferred_channel=channel,
        email=email,
        phone=phone,
    )


def campaign(cid, ally, priority=1, holdout=0.0, start=T0 - timedelta(days=1), end=T0 + timedelta(days=1)):
    return dict(campaign_id=cid, ally_id=ally, starts_at=start, ends_at=end, priority=priority, holdout_pct=holdout)


def decide_table(con, entries, customers, campaigns, prior=None, cooldown=60) -> str:
    """The decisions table of entries: (customer_id, store_id, ally_id, minutes after T0, distance_m)."""
    con.register(
        "e",
        pd.DataFrame(
            [(c, s, a, T0 + timedelta(minutes=m), d) for c, s, a, m, d in entries],
            columns=["customer_id", "store_id", "ally_id", "hit_at", "distance_m"],
        ),
    )
    con.register("c", pd.DataFrame(customers))
    con.register("k", pd.DataFrame(campaigns))
    prior_sql = None
    if prior:
        con.register(
            "p", pd.DataFrame([(c, T0 + timedelta(minutes=m)) for c, m in prior], columns=["customer_id", "event_time"])
        )
        prior_sql = "SELECT * FROM p"
    table = decide_notifications(
        con,
        "SELECT * FROM e",
        "SELECT * FROM c",
        "SELECT * FROM k",
        Policy(cooldown_minutes=cooldown),
        prior_notified=prior_sql,
    )
    return table


def decide(con, entries, customers, campaigns, prior=None, cooldown=60):
    """entries: (customer_id, store_id, ally_id, minutes after T0, distance_m)."""
    table = decide_table(con, entries, customers, campaigns, prior, cooldown)
    return con.execute(
        f"SELECT customer_id, store_id, campaign_id, reason, channel, status, "
        f"epoch(event_time - TIMESTAMPTZ '{T0.isoformat()}') / 60 AS minute FROM {table} "
        "ORDER BY event_time, customer_id, distance_m, store_id"
    ).fetchall()


def test_each_suppression_reason(con):
    rows = decide(
        con,
        [(1, 100, 10, 0, 5), (2, 100, 10, 0, 5), (3, 100, 10, 0, 5), (4, 200, 20, 0, 5)],
        [customer(2, loc=False), customer(3, mkt=None), customer(4)],
        [campaign(7, 10)],
    )
    assert [(r[0], r[3]) for r in rows] == [
        (1, "unknown_customer"),
        (2, "no_consent"),
        (3, "no_consent"),
        (4, "no_campaign"),
    ]
    assert all(r[5] == "suppressed" and r[4] is None for r in rows)


def test_consent_as_of_the_moment_of_the_entry(con):
    withdrawn = T0 + timedelta(minutes=30)
    rows = decide(
        con,
        [(1, 100, 10, 0, 5), (1, 100, 10, 90, 5)],
        [customer(1), customer(1, valid_from=withdrawn, version=2, mkt=False)],
        [campaign(7, 10)],
    )
    assert [r[3] for r in rows] == ["sent", "no_consent"]


def test_customer_unknown_before_first_version(con):
    rows = decide(
        con,
        [(1, 100, 10, 0, 5), (1, 100, 10, 90, 5)],
        [customer(1, valid_from=T0 + timedelta(minutes=1))],
        [campaign(7, 10)],
    )
    assert [r[3] for r in rows] == ["unknown_customer", "sent"]


def test_cooldown_within_a_batch_and_against_earlier_notifications(con):
    rows = decide(
        con,
        [(1, 100, 10, 0, 5), (1, 101, 10, 59, 5), (1, 102, 10, 60, 5), (2, 100, 10, 10, 5)],
        [customer(1), customer(2)],
        [campaign(7, 10)],
        prior=[(2, -49)],  # customer 2 was notified 59 minutes before its entry
    )
    assert [(r[0], r[1], r[3]) for r in rows] == [
        (1, 100, "sent"),
        (2, 100, "throttled"),
        (1, 101, "throttled"),
        (1, 102, "sent"),
    ]


def test_entries_of_one_ping_by_priority_then_distance(con):
    rows = decide(
        con,
        [(1, 100, 10, 0, 0.8), (1, 200, 20, 0, 50), (1, 300, 30, 0, 1), (1, 400, 40, 0, 0.5)],
        [customer(1)],
        [campaign(7, 10, priority=1), campaign(8, 20, priority=5), campaign(9, 30, priority=5)],
    )
    # Priority 5 first (the nearer store wins the tie), then priority 1 (nearer still); no campaign last.
    assert {r[1]: r[3] for r in rows} == {300: "sent", 200: "throttled", 100: "throttled", 400: "no_campaign"}


def test_holdout_is_deterministic_and_counts_for_the_cooldown(con):
    customers = [customer(c) for c in range(1, 401)]
    entries = [(c, 100, 10, 0, 5) for c in range(1, 401)] + [(c, 100, 10, 30, 5) for c in range(1, 401)]
    first = decide(con, entries, customers, [campaign(7, 10, holdout=25)])
    again = decide(con, entries, customers, [campaign(7, 10, holdout=25)])
    assert first == again
    at0 = [r for r in first[:400]]
    share = sum(r[3] == "holdout" for r in at0) / 400
    assert 0.18 < share < 0.32
    assert all(r[4] is not None for r in at0 if r[3] == "holdout")  # the channel it would have used
    assert {r[3] for r in first[400:]} == {"throttled"}


def test_channel_falls_back_when_the_contact_is_missing(con):
    rows = decide(
        con,
        [(1, 100, 10, 0, 5), (2, 100, 10, 0, 5), (3, 100, 10, 0, 5), (4, 100, 10, 0, 5)],
        [
            customer(1, channel="email", email=None),
            customer(2, channel="sms"),
            customer(3, channel="voice", phone=" "),
            customer(4, channel=None),
        ],
        [campaign(7, 10)],
    )
    assert [r[4] for r in rows] == ["push", "sms", "push", "push"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 4), st.integers(0, 600)), max_size=60),
    st.integers(0, 1000),
    st.sampled_from([2**62, 1]),
)
# An entry exactly one cooldown after the last notified one is notified; ties in time within a customer.
@example(entries=[(1, 0), (1, 60), (1, 119), (1, 120), (2, 5), (2, 5), (2, 65)], cooldown=60, key_limit=2**62)
@example(entries=[(1, 0), (1, 60), (1, 119), (1, 120), (2, 5), (2, 5), (2, 65)], cooldown=60, key_limit=1)
def test_the_cooldown_chains_equal_the_sequential_rule(entries, cooldown, key_limit):
    # key_limit=1: one customer per block, the path of very long time spans.
    entries = sorted(entries)
    c = np.array([e[0] for e in entries], dtype=np.int64)
    t = np.array([e[1] for e in entries], dtype=np.int64)
    got = cooldown_notified(c, t, cooldown, key_limit=key_limit)
    expected, last = [], {}
    for cust, time in entries:  # the rule as written: one entry after another
        ok = cust not in last or time - last[cust] >= cooldown
        expected.append(ok)
        if ok:
            last[cust] = time
    assert got.tolist() == expected


def test_the_cooldown_keys_of_very_long_time_spans_do_not_overflow():
    # Times 2**61 us apart: one key space for three customers would pass 2**63.
    c = np.array([1, 1, 2, 2, 3, 3], dtype=np.int64)
    t = np.array([0, 2**61, 0, 2**61, 5, 2**61], dtype=np.int64)
    assert cooldown_notified(c, t, 2**61 - 4).tolist() == [True, True, True, True, True, False]


def test_the_cooldown_needs_entries_in_time_order_within_a_customer():
    with pytest.raises(ValueError, match="sorted by customer, then time"):
        cooldown_notified(np.array([1, 1], dtype=np.int64), np.array([5, 3], dtype=np.int64), 10)


def test_campaign_window_edges(con):
    start, end = T0, T0 + timedelta(minutes=120)
    rows = decide(
        con,
        [(1, 100, 10, -0.001, 5), (2, 100, 10, 0, 5), (3, 100, 10, 119.999, 5), (4, 100, 10, 120, 5)],
        [customer(c) for c in (1, 2, 3, 4)],
        [campaign(7, 10, start=start, end=end)],
    )
    # The window is [starts_at, ends_at).
    assert [r[3] for r in rows] == ["no_campaign", "sent", "sent", "no_campaign"]


def test_overlapping_campaigns_of_one_ally_the_highest_priority_active_one_wins(con):
    at = lambda m: T0 + timedelta(minutes=m)  # noqa: E731
    minutes = [-5, 0, 10, 15, 19.999, 20, 29.999, 30, 45, 60]
    rows = decide(
        con,
        [(i + 1, 100, 10, m, 5) for i, m in enumerate(minutes)],
        [customer(i + 1) for i in range(len(minutes))],
        [
            campaign(7, 10, priority=1, start=at(0), end=at(60)),
            campaign(9, 10, priority=5, start=at(15), end=at(30)),
            campaign(8, 10, priority=5, start=at(10), end=at(20)),  # ties with 9: the lower id wins
            campaign(6, 20, priority=9, start=at(0), end=at(60)),  # another ally's
        ],
    )
    assert [(round(r[6], 3), r[2]) for r in rows] == [
        (-5, None),
        (0, 7),
        (10, 8),
        (15, 8),
        (19.999, 8),
        (20, 9),
        (29.999, 9),
        (30, 7),
        (45, 7),
        (60, None),
    ]


scenario = st.lists(
    st.tuples(
        st.integers(1, 3),  # customer
        st.sampled_from([(100, 10), (200, 20), (300, 30)]),  # store, ally
        st.integers(0, 600),  # minute of the entry
    ),
    min_size=1,
    max_size=30,
    unique_by=lambda e: (e[0], e[1][0], e[2]),
)


@settings(max_examples=40, deadline=None)
@given(
    entries=scenario, cut=st.integers(0, 600), consent_change=st.integers(0, 600), holdout=st.sampled_from([0, 30, 60])
)
def test_decisions_hold_the_contract_however_the_entries_are_split(entries, cut, consent_change, holdout):
    from nbo_platform.duck import connect

    customers = [customer(1), customer(2), customer(3, mkt=False)]
    customers.append(customer(1, valid_from=T0 + timedelta(minutes=consent_change), version=2, loc=False))
    campaigns = [campaign(7, 10, holdout=holdout), campaign(8, 20, priority=3, holdout=holdout)]
    rows = [(c, s, a, m, 5.0) for c, (s, a), m in entries]
    whole = decide(connect(), rows, customers, campaigns)
    assert decide(connect(), rows, customers, campaigns) == whole  # re-running gives the same decisions

    # The same entries in two batches (files arriving one after the other): the second batch sees the
    # first batch's notifications as earlier ones.
    first = [r for r in rows if r[3] < cut]
    second = [r for r in rows if r[3] >= cut]
    con = connect()
    part1 = decide(con, first, customers, campaigns) if first else []
    notified = [(r[0], r[6]) for r in part1 if r[3] in ("sent", "holdout")]
    part2 = decide(connect(), second, customers, campaigns, prior=notified) if second else []
    key = lambda r: (r[0], r[1], r[6], r[3])  # noqa: E731
    assert sorted(map(key, part1 + part2)) == sorted(map(key, whole))

    # No customer is notified twice within the cooldown, and nobody without consent at that moment.
    by_customer: dict[int, list[float]] = {}
    for r in whole:
        if r[3] in ("sent", "holdout"):
            by_customer.setdefault(r[0], []).append(r[6])
            assert r[0] != 3 and not (r[0] == 1 and r[6] >= consent_change)
    for ts in by_customer.values():
        ts.sort()
        assert all(b - a >= 60 for a, b in zip(ts, ts[1:], strict=False))


def test_cooldown_both_ways_a_late_entry_before_a_notification_is_throttled(con):
    # Customer 1 was notified at 10:10; a later file brings its entry at 10:05 (and one at 11:09, 59
    # minutes after, and 11:10, a full cooldown after): the late ones inside the cooldown are throttled.
    rows = decide(
        con,
        [(1, 100, 10, 5, 5), (1, 100, 10, 69, 5), (1, 100, 10, 70, 5), (2, 100, 10, -50, 5)],
        [customer(1), customer(2)],
        [campaign(7, 10)],
        prior=[(1, 10), (2, 10)],  # customer 2: notified 60 minutes after its late entry
    )
    assert [(r[0], round(r[6]), r[3]) for r in rows] == [
        (2, -50, "sent"),
        (1, 5, "throttled"),
        (1, 69, "throttled"),
        (1, 70, "sent"),
    ]


@settings(max_examples=60, deadline=None)
@given(
    entries=scenario,
    batches=st.lists(st.integers(0, 3), min_size=30, max_size=30),
    order=st.permutations(range(4)),
    cooldown=st.sampled_from([0, 30, 60, 240]),
)
def test_cooldown_both_ways_holds_in_any_split_and_arrival_order(entries, batches, order, cooldown):
    """The entries split into up to four files that arrive in any order: whatever was decided before
    counts both ways, so no customer is ever notified twice less than the cooldown apart."""
    from nbo_platform.duck import connect

    customers = [customer(1), customer(2), customer(3)]
    campaigns = [campaign(7, 10, holdout=30), campaign(8, 20, priority=3), campaign(9, 30)]
    rows = [(c, s, a, m, 5.0) for c, (s, a), m in entries]
    decided: list[tuple] = []
    for b in order:
        part = [r for i, r in enumerate(rows) if batches[i] == b]
        if part:
            prior = [(r[0], r[6]) for r in decided if r[3] in ("sent", "holdout")]
            decided += decide(connect(), part, customers, campaigns, prior=prior or None, cooldown=cooldown)
    assert len(decided) == len(rows)
    by_customer: dict[int, list[float]] = {}
    for r in decided:
        if r[3] in ("sent", "holdout"):
            by_customer.setdefault(r[0], []).append(r[6])
    for ts in by_customer.values():
        ts.sort()
        assert all(b - a >= cooldown for a, b in zip(ts, ts[1:], strict=False)), ts
    # Every entry is notified unless a notification lies inside its cooldown (nothing is lost either).
    for r in decided:
        if r[3] == "throttled":
            assert any(abs(t - r[6]) < cooldown for t in by_customer.get(r[0], [])), r


def test_many_entries_are_decided_with_the_cooldown_applied(con):
    rng = np.random.default_rng(5)
    n = 60_000  # rows over many vectors and threads
    entries = [
        (int(c), int(s), 10, float(m), 5.0)
        for c, s, m in zip(rng.integers(1, 300, n), rng.integers(1, 50, n), rng.uniform(0, 600, n), strict=True)
    ]
    rows = con.execute(
        "SELECT customer_id, event_time, reason FROM "
        + decide_table(con, entries, [customer(c) for c in range(1, 300)], [campaign(7, 10, holdout=10.0)])
        + " ORDER BY customer_id, event_time"
    ).fetchall()
    assert len(rows) == n
    notified = {}
    for c, t, reason in rows:  # the cooldown, replayed row by row
        within = c in notified and t - notified[c] < timedelta(minutes=60)
        assert (reason == "throttled") == within, (c, t, reason)
        if reason in ("sent", "holdout"):
            notified[c] = t
    reasons = {r for _, _, r in rows}
    assert reasons == {"sent", "holdout", "throttled"}


def test_notification_id_is_the_digest_of_customer_store_and_instant(con):
    at = "2025-06-02 10:00:00.123456+00"
    (got,) = con.execute(f"SELECT {notification_id_sql('12', '345', f'TIMESTAMPTZ {at!r}')}").fetchone()
    micros = int(datetime(2025, 6, 2, 10, 0, 0, 123456, tzinfo=UTC).timestamp() * 1_000_000)
    assert got == "n" + hashlib.md5(f"12|345|{micros}".encode()).hexdigest()[:20]
