"""The contract's promises under real operation: crashes, refused deliveries, edits after sending."""

import json
from datetime import timedelta

import pytest

from nbo_platform.domain.delivery import LocalOutbox
from nbo_platform.lake import Lake
from tests.defs.scenario import CUSTOMERS_HEADER, DAY1, customer_row, drop, pii_in_warehouse, ping, write_reference

pytestmark = pytest.mark.e2e


class Killed(BaseException):
    """Stands for SIGKILL: no ``except Exception`` handler sees it, nothing after it runs."""


def outbox_ids(settings) -> list[str]:
    return [
        json.loads(line)["notification_id"]
        for f in sorted(settings.outbox_dir.rglob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]


def test_delivery_exactly_once_after_a_crash_between_the_outbox_and_the_delivery_log(
    settings, run_pipeline, warehouse, monkeypatch
):
    write_reference(settings, customers=(8, 9))
    at = DAY1 + timedelta(hours=10)
    drop(settings, "location_pings", "pings-1.csv", [ping(at, customer=c) for c in (7, 8)])
    real = LocalOutbox.deliver

    def deliver_then_die(self, *args):
        real(self, *args)
        raise Killed

    monkeypatch.setattr(LocalOutbox, "deliver", deliver_then_die)
    with pytest.raises(Killed):
        run_pipeline()
    monkeypatch.setattr(LocalOutbox, "deliver", real)
    assert len(outbox_ids(settings)) == 2  # handed over, never logged
    # One more ping file for that day: the retried batch must not take the new notification in.
    drop(settings, "location_pings", "pings-2.csv", [ping(at + timedelta(minutes=5), customer=9)])
    run_pipeline()
    run_pipeline()
    ids = outbox_ids(settings)
    sent = {r[0] for r in warehouse("SELECT notification_id FROM all_notifications")}
    assert len(ids) == len(set(ids)) == 3 and set(ids) == sent
    assert warehouse("SELECT count(*), count(DISTINCT notification_id) FROM delivery_log") == [(3, 3)]


def test_delivery_exactly_once_a_refused_delivery_is_recorded_as_failed_and_retried(
    settings, run_pipeline, warehouse, monkeypatch
):
    write_reference(settings)
    drop(settings, "location_pings", "pings-1.csv", [ping(DAY1 + timedelta(hours=10))])

    def refuse(self, *args):
        raise ConnectionError("gateway unreachable")

    monkeypatch.setattr(LocalOutbox, "deliver", refuse)
    run_pipeline()
    [(status, error)] = warehouse("SELECT status, error FROM delivery_log")
    assert status == "failed" and "gateway unreachable" in error
    assert outbox_ids(settings) == []
    monkeypatch.undo()
    run_pipeline()  # no new file: the refused batch is due all the same
    [sent] = warehouse("SELECT notification_id FROM all_notifications")
    assert outbox_ids(settings) == [sent[0]]
    assert warehouse("SELECT status FROM delivery_log ORDER BY delivered_at") == [("failed",), ("delivered",)]
    run_pipeline()
    assert outbox_ids(settings) == [sent[0]]


def test_all_notifications_are_written_once_and_frozen_against_later_edits(settings, run_pipeline, warehouse):
    write_reference(settings, offer_text="10% off")
    drop(settings, "location_pings", "pings-1.csv", [ping(DAY1 + timedelta(hours=10))])
    run_pipeline()
    first = warehouse("SELECT notification_id, offer_text, message FROM all_notifications")
    assert "10% off" in first[0][2]
    # The campaign is edited afterwards, and a later file brings another entry of the same day.
    write_reference(settings, offer_text="50% off", customers=(8,))
    drop(settings, "location_pings", "pings-2.csv", [ping(DAY1 + timedelta(hours=12), customer=8)])
    run_pipeline()
    rows = warehouse("SELECT notification_id, offer_text, message FROM all_notifications ORDER BY event_time")
    assert rows[0] == first[0]  # what the lake says was sent is what was sent
    assert len(rows) == 2 and "50% off" in rows[1][2]


def test_a_crash_after_a_manifest_write_leaves_nothing_missing_for_the_next_run(
    settings, run_pipeline, warehouse, monkeypatch
):
    from nbo_platform.domain import landing

    write_reference(settings)
    drop(settings, "location_pings", "pings-1.csv", [ping(DAY1 + timedelta(hours=10))])
    real = landing._write_manifest

    def write_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise Killed

    monkeypatch.setattr(landing, "_write_manifest", write_then_die)
    with pytest.raises(Killed):
        run_pipeline()
    monkeypatch.undo()
    assert Lake(settings.lake_uri).has_files("landing_manifest")  # the file counts as ingested
    run_pipeline()
    run_pipeline()
    assert warehouse("SELECT count(*) FROM geofence_hits WHERE is_entry") == [(1,)]
    assert warehouse("SELECT reason FROM notifications") == [("sent",)]
    assert len(outbox_ids(settings)) == 1


def test_time_bound_offers_an_entry_older_than_its_files_watermark_by_more_than_the_delay_is_expired(
    settings, run_pipeline, warehouse
):
    write_reference(settings, customers=(8, 9))
    ten = DAY1 + timedelta(hours=10)
    drop(settings, "location_pings", "pings-1.csv", [ping(ten, customer=8)])
    run_pipeline()
    # The next file meets a watermark of 10:00: 09:29 is more than 30 minutes older, 09:31 is not.
    drop(
        settings,
        "location_pings",
        "pings-2.csv",
        [ping(ten - timedelta(minutes=31)), ping(ten - timedelta(minutes=29), customer=9)],
    )
    run_pipeline()
    assert warehouse("SELECT customer_id, reason FROM notifications ORDER BY customer_id") == [
        (7, "expired"),
        (8, "sent"),
        (9, "sent"),
    ]
    # A ping 36 days old, after all that, never becomes an SMS today.
    drop(settings, "location_pings", "pings-3.csv", [ping(ten - timedelta(days=36), customer=8)])
    run_pipeline()
    assert warehouse("SELECT reason FROM notifications WHERE event_time < TIMESTAMPTZ '2025-06-01'") == [("expired",)]
    assert len(outbox_ids(settings)) == 2
    assert warehouse("SELECT expired FROM notification_funnel WHERE date = DATE '2025-06-02'") == [(1,)]


def test_time_bound_offers_no_limit_when_max_delay_is_null(settings, run_pipeline, warehouse):
    write_reference(settings, customers=(8,))
    (settings.reference_dir / "policy.yaml").write_text("max_delay_minutes: null\n")
    ten = DAY1 + timedelta(hours=10)
    drop(settings, "location_pings", "pings-1.csv", [ping(ten, customer=8)])
    run_pipeline()
    drop(settings, "location_pings", "pings-2.csv", [ping(ten - timedelta(hours=5))])
    run_pipeline()
    assert warehouse("SELECT reason FROM notifications ORDER BY customer_id") == [("sent",), ("sent",)]


def test_no_raw_contact_data_reaches_the_warehouse_error_texts_included(settings, run_pipeline, warehouse):
    write_reference(settings)
    folder = settings.landing_dir / "customers"
    folder.mkdir(parents=True)
    # A change file with an extra field: a row the CSV reader cannot fit, its e-mail and phone in the error.
    (folder / "changes-1.csv").write_text(
        CUSTOMERS_HEADER + "8,Luis,Rey,luis@example.com,+57 310 7654321,Male,1,700,true,true,sms,2025-06-01T00:00:00Z,"
        "extra 300.555.1234\n"
    )
    drop(settings, "customer_activity", "a-1.csv", [
        {"customer_id": 7, "activity_id": 1, "ip_address": "2001:db8::7", "activity_type": "deposit",
         "propensity_to_buy": "0.5 from 10.1.2.3 ana@example.com", "event_time": "2025-06-02T10:00:00Z"}])  # fmt: skip
    drop(settings, "location_pings", "p-1.csv", [ping(DAY1 + timedelta(hours=10))])
    run_pipeline()
    quarantined = dict(warehouse("SELECT feed, raw || ' ' || reason FROM quarantine"))
    assert "<phone>" in quarantined["customers"] and "<email>" in quarantined["customers"]
    assert "<ip>" in quarantined["customer_activity"]  # the IPv6 address too
    assert pii_in_warehouse(settings.warehouse_path) == {}


def test_a_file_still_being_written_is_not_read_until_it_rests(tmp_path):
    from nbo_platform.defs.resources import build_resources
    from nbo_platform.domain.feeds import LOCATION_PINGS
    from nbo_platform.domain.landing import list_landing_files, settling_files
    from nbo_platform.settings import load_settings

    settings = load_settings({"NBO_DATA_DIR": str(tmp_path / "data"), "NBO_LANDING_SETTLE_SECONDS": "30"})
    drop(settings, "location_pings", "pings-1.csv", [ping(DAY1 + timedelta(hours=10))])
    landing = build_resources(settings)["landing"]
    assert landing.settle_seconds == 30
    assert list_landing_files(settings.landing_dir, LOCATION_PINGS, 30) == []
    assert [f.relpath for f in settling_files(settings.landing_dir, LOCATION_PINGS, 30)] == ["pings-1.csv"]
    path = settings.landing_dir / "location_pings" / "pings-1.csv"
    old = path.stat().st_mtime - 31
    import os

    os.utime(path, (old, old))
    assert [f.relpath for f in list_landing_files(settings.landing_dir, LOCATION_PINGS, 30)] == ["pings-1.csv"]


def test_a_file_that_changed_after_it_was_read_is_reported_and_retaken_whole(settings, run_pipeline, warehouse):
    """A producer still writing: 2 of 4 pings read; the file grows; the change fails the check and the
    manifest says so until `nbo retake` takes the file in, its first records kept once."""
    from nbo_platform.cli import main as cli_main
    from nbo_platform.defs.ingestion.checks import feed_checks
    from nbo_platform.defs.resources import build_resources

    write_reference(settings, customers=(8, 9, 10))
    rows = [ping(DAY1 + timedelta(hours=10), customer=c) for c in (7, 8, 9, 10)]
    drop(settings, "location_pings", "pings-1.csv", rows[:2])
    run_pipeline()
    drop(settings, "location_pings", "pings-1.csv", rows)  # the producer finishes the file
    run_pipeline()
    assert warehouse("SELECT count(*) FROM location_pings") == [(2,)]
    [(status, error)] = warehouse(
        "SELECT status, error FROM landing_manifest WHERE feed = 'location_pings' AND status <> 'ingested'"
    )
    assert status == "changed" and "nbo retake location_pings/pings-1.csv" in error
    resources = build_resources(settings)
    [check] = [c for c in feed_checks if "location_pings" in str(c.check_keys)][1:]
    result = check(lake=resources["lake"], landing=resources["landing"])
    assert not result.passed and result.metadata["changed_files"].value == 1

    assert cli_main(["retake", "location_pings/pings-1.csv", "--data-dir", str(settings.data_dir)]) == 0
    assert warehouse("SELECT count(*), count(DISTINCT customer_id) FROM location_pings") == [(4, 4)]
    assert warehouse("SELECT version, rows_read, rows_new, rows_duplicate FROM landing_manifest "
                     "WHERE feed = 'location_pings' AND status = 'ingested' ORDER BY version") == [
        (1, 2, 2, 0), (2, 4, 2, 2)]  # fmt: skip
    assert warehouse("SELECT count(*) FROM notifications WHERE reason = 'sent'") == [(4,)]
    assert check(lake=resources["lake"], landing=resources["landing"]).passed


def test_a_reference_change_applies_whole_or_not_at_all(settings, run_pipeline, warehouse):
    write_reference(settings)
    run_pipeline()
    before = warehouse("SELECT ally_name FROM allies")
    (settings.reference_dir / "allies.csv").write_text("ally_id,ally_name,category\n1,Renamed,coffee\n")
    (settings.reference_dir / "policy.yaml").write_text("cooldown_minuts: 30\n")  # a typo
    with pytest.raises(Exception, match="cooldown_minuts"):
        run_pipeline()
    assert warehouse("SELECT ally_name FROM allies") == before  # nothing of the change applied


def test_two_nbo_runs_at_once_on_a_new_data_dir_both_succeed(settings, warehouse):
    import threading

    import dagster as dg

    from nbo_platform.runner import run_pipeline

    write_reference(settings)
    drop(settings, "location_pings", "pings-1.csv", [ping(DAY1 + timedelta(hours=10))])
    errors, said = [], []

    def run():
        try:
            run_pipeline(settings, instance=dg.DagsterInstance.ephemeral(), echo=said.append)
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert any("another nbo run" in s for s in said)
    assert warehouse("SELECT reason FROM notifications") == [("sent",)]
    assert len(outbox_ids(settings)) == 1


def test_rejected_store_rows_keep_their_record(settings, run_pipeline, warehouse):
    write_reference(settings)
    with open(settings.reference_dir / "stores.csv", "a") as fh:
        fh.write("12,99,Unknown ally store,4.6,-74.0,100\n10,1,Repeated id,4.6,-74.0,100\n")
    run_pipeline()
    rows = warehouse("SELECT reason, raw FROM quarantine WHERE feed = 'reference/stores' ORDER BY line")
    assert len(rows) == 2 and all(raw for _, raw in rows), rows
    assert "Unknown ally store" in rows[0][1] and "Repeated id" in rows[1][1]


def test_consent_at_ingestion_purge_removes_unconsented_pings_a_lake_already_holds(settings, run_pipeline, warehouse):
    from nbo_platform.cli import main as cli_main
    from nbo_platform.defs.ingestion.checks import feed_checks
    from nbo_platform.defs.resources import build_resources
    from nbo_platform.domain.feeds import LOCATION_PINGS
    from nbo_platform.domain.landing import unconsented_sql

    write_reference(settings, customers=(8,))
    drop(settings, "location_pings", "pings-1.csv", [ping(DAY1 + timedelta(hours=h), customer=c) for c in (7, 8)
                                                     for h in (10, 12)])  # fmt: skip
    run_pipeline()
    # A lake written before consent at ingestion: customer 8 turns out never to have consented.
    ref = settings.reference_dir / "customers.csv"
    ref.write_text(ref.read_text().replace(customer_row(8), customer_row(8, location_opt_in=False)))
    run_pipeline()
    assert warehouse("SELECT count(*) FROM location_pings WHERE customer_id = 8") == [(2,)]
    assert LOCATION_PINGS.needs_location_consent and unconsented_sql
    assert cli_main(["purge-unconsented", "--data-dir", str(settings.data_dir)]) == 0
    assert warehouse("SELECT DISTINCT customer_id FROM location_pings") == [(7,)]
    assert warehouse("SELECT DISTINCT customer_id FROM geofence_hits") == [(7,)]
    resources = build_resources(settings)
    [conserved] = [c for c in feed_checks if "location_pings" in str(c.check_keys)][:1]
    assert conserved(lake=resources["lake"]).passed
