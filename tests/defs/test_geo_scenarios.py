"""Hand-written geo scenarios through the real pipeline: midnight, file order, late pings, the simulation."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from nbo_platform.defs.ingestion.sensors import plan_landing_runs
from nbo_platform.defs.resources import build_resources
from nbo_platform.generate import PRESETS, Spec, generate
from nbo_platform.generate.events import Behaviour
from nbo_platform.lake import Lake
from nbo_platform.simulate import Trip, default_start_time, entries_of, pick_customer, write_trip
from tests.defs.scenario import DAY1, drop, ping, purchase, write_reference

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("transactions_first", [True, False])
def test_purchase_after_midnight_is_credited_whatever_the_file_order(
    settings, run_pipeline, warehouse, transactions_first
):
    write_reference(settings)
    notified_at = DAY1 + timedelta(hours=23, minutes=50)
    steps = [
        lambda: drop(
            settings,
            "location_pings",
            "pings-1.csv",
            [ping(notified_at - timedelta(minutes=1), False), ping(notified_at)],
        ),
        lambda: drop(
            settings,
            "transactions",
            "tx-1.csv",
            [
                purchase(1, notified_at + timedelta(minutes=15)),  # 00:05 next day, exactly at the window's end
                purchase(2, notified_at + timedelta(minutes=15, seconds=1)),  # one second too late
            ],
        ),
    ]
    for step in steps if not transactions_first else steps[::-1]:
        step()
        run_pipeline()
    assert warehouse("SELECT reason FROM notifications") == [("sent",)]
    assert warehouse("SELECT transaction_id, minutes_to_purchase FROM effective_notifications") == [("1", 15.0)]
    assert warehouse("SELECT sum(effective_notifications) FROM campaign_effectiveness") == [(1,)]


@pytest.mark.parametrize("next_day_later", [False, True], ids=["one file", "next day's pings later"])
def test_a_purchase_after_midnight_goes_to_the_latest_notification_whatever_its_day(
    settings, run_pipeline, warehouse, next_day_later
):
    """A cooldown shorter than the window: notified at 23:50 and again at 00:01, a purchase at 00:05 is
    credited once, to 00:01, also when the next day's pings arrive after the day before was credited."""
    write_reference(settings)
    (settings.reference_dir / "policy.yaml").write_text("cooldown_minutes: 5\nattribution_window_minutes: 15\n")
    first = DAY1 + timedelta(hours=23, minutes=50)
    second = first + timedelta(minutes=11)  # 00:01 the next day
    day1 = [ping(first - timedelta(minutes=1), False), ping(first), ping(first + timedelta(minutes=2), False)]
    day2 = [ping(second)]
    drop(settings, "transactions", "tx-1.csv", [purchase(1, second + timedelta(minutes=4))])
    if next_day_later:
        drop(settings, "location_pings", "pings-1.csv", day1)
        run_pipeline()
        assert warehouse("SELECT notification_id IS NOT NULL FROM effective_notifications") == [(True,)]
        drop(settings, "location_pings", "pings-2.csv", day2)
    else:
        drop(settings, "location_pings", "pings-1.csv", day1 + day2)
    run_pipeline()
    assert warehouse("SELECT event_time, reason FROM notifications ORDER BY 1") == [(first, "sent"), (second, "sent")]
    assert warehouse("SELECT transaction_id, notified_at, minutes_to_purchase FROM effective_notifications") == [
        ("1", second, 4.0)
    ]
    assert warehouse("SELECT sum(effective_notifications) FROM campaign_effectiveness") == [(1,)]


@pytest.mark.parametrize("cooldown", [5, 60])
def test_the_day_before_is_credited_again_after_a_days_decisions_when_the_cooldown_is_shorter(settings, cooldown):
    write_reference(settings)
    (settings.reference_dir / "policy.yaml").write_text(f"cooldown_minutes: {cooldown}\n")
    first = DAY1 + timedelta(hours=23, minutes=50)
    drop(settings, "location_pings", "pings-1.csv", [ping(first), ping(first + timedelta(minutes=11))])
    plan = plan_landing_runs(Lake(settings.lake_uri), build_resources(settings)["landing"])
    geo = {"location_pings", "geofence_hits", "notifications", "all_notifications", "notification_deliveries"}
    attribution = {"effective_notifications", "holdout_conversions", "transactions"}
    steps = [(r.date, r.assets) for r in plan]
    assert steps[:2] == [("2025-06-02", geo | attribution), ("2025-06-03", geo | attribution)]
    # Once the 3rd's notifications are decided, a purchase of the 3rd may be theirs, not the 2nd's.
    assert steps[2:] == ([("2025-06-02", attribution)] if cooldown < 15 else [])


def test_each_new_file_of_the_next_day_requests_the_day_before_under_a_new_run_key(settings, run_pipeline):
    """The sensor never requests a run key twice: the day before's attribution, planned because of a
    file of the next day, must get a new key with every such file."""
    write_reference(settings)
    notified_at = DAY1 + timedelta(hours=23, minutes=50)
    drop(
        settings, "location_pings", "pings-1.csv", [ping(notified_at - timedelta(minutes=1), False), ping(notified_at)]
    )
    run_pipeline()
    landing, lake = build_resources(settings)["landing"], Lake(settings.lake_uri)
    keys = []
    for n in (1, 2):
        drop(settings, "transactions", f"tx-{n}.csv", [purchase(n, notified_at + timedelta(minutes=10 + n))])
        [before] = [r for r in plan_landing_runs(lake, landing) if r.date == "2025-06-02"]
        assert before.assets == {"effective_notifications", "holdout_conversions", "transactions"}
        keys.append(before.run_key)
        run_pipeline()
    assert keys[0] != keys[1]


def test_cooldown_both_ways_late_pings_recompute_later_hits_but_never_revoke_a_sent_notification(
    settings, run_pipeline, warehouse
):
    write_reference(settings)
    day2 = DAY1 + timedelta(days=1)
    drop(settings, "location_pings", "pings-day2.csv", [ping(day2 + timedelta(minutes=1))])
    run_pipeline()
    assert warehouse("SELECT is_entry FROM geofence_hits") == [(True,)]
    first = warehouse("SELECT notification_id, reason, event_time FROM notifications")
    assert [r[1] for r in first] == ["sent"]
    # The customer was already inside before midnight: the 00:01 ping is no longer an entry.
    drop(settings, "location_pings", "pings-day1-late.csv", [ping(day2 - timedelta(minutes=2))])
    run_pipeline()
    assert warehouse(
        "SELECT hit_at = TIMESTAMPTZ '2025-06-03 00:01:00+00', is_entry FROM geofence_hits ORDER BY hit_at"
    ) == [
        (False, True),
        (True, False),
    ]
    decisions = warehouse("SELECT notification_id, reason, event_time FROM notifications ORDER BY event_time")
    assert first[0] in decisions  # the sent notification stays a fact
    # The late entry at 23:58 lies 3 minutes before the 00:01 notification: inside the cooldown both ways.
    assert [r[1] for r in decisions] == ["throttled", "sent"]


def test_generated_lift_is_recovered_by_the_marts(settings, run_pipeline, warehouse):
    spec = Spec(customers=2500, allies=6, stores=60, days=2, files_per_day=2, behaviour=Behaviour(lift=0.2))
    generate(settings.data_dir, spec, seed=3)
    run_pipeline()
    sent, eff, held, conv = warehouse(
        "SELECT sum(notifications_sent), sum(effective_notifications), sum(holdout_entries), "
        "sum(holdout_converted) FROM campaign_effectiveness"
    )[0]
    p1, p0 = eff / sent, conv / held
    half = 1.96 * (p1 * (1 - p1) / sent + p0 * (1 - p0) / held) ** 0.5
    assert held > 300 and sent > 1500
    # The true lift lies in the 95% confidence interval of the measured uplift.
    assert p1 - p0 - half <= 0.2 <= p1 - p0 + half, (p1 - p0, half)


def test_simulated_trip_past_two_stores_receives_their_offers(settings, run_pipeline):
    generate(settings.data_dir, PRESETS["small"], seed=2)
    (settings.reference_dir / "policy.yaml").write_text("cooldown_minutes: 1\n")
    run_pipeline()
    lake = Lake(settings.lake_uri)
    stores = pd.read_csv(settings.reference_dir / "stores.csv")
    campaigns = pd.read_csv(settings.reference_dir / "campaigns.csv", parse_dates=["starts_at", "ends_at"])
    at = default_start_time(lake)  # just after the feed's watermark: a live trip, not a late one
    assert at > datetime(2025, 6, 3, 12, tzinfo=UTC)
    live = campaigns[(campaigns.starts_at <= at) & (campaigns.ends_at > at + timedelta(hours=3))].ally_id
    candidates = stores[stores.ally_id.isin(live) & stores.geometry_wkt.isna()].head(2)
    a, b = candidates.itertuples()
    customer = pick_customer(lake)
    write_trip(settings, Trip((a.lat, a.lon), (b.lat, b.lon), 30.0, at), customer)
    run_pipeline()
    got = entries_of(lake, customer)
    sent = {e["store_id"] for e in got if e["status"] == "sent"}
    assert {a.store_id, b.store_id} <= sent, got
