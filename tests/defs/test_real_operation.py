"""The contract's promises under real operation: crashes, refused deliveries, edits after sending."""

import json
from datetime import timedelta

import pytest

from nbo_platform.domain.delivery import LocalOutbox
from nbo_platform.lake import Lake
from tests.defs.scenario import DAY1, drop, ping, write_reference

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
