"""Geo-marketing end to end: generated data through every asset, re-runs, late files, delivery."""

import hashlib
import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest

from nbo_platform.campaign_report import report_path
from nbo_platform.cli import main as cli_main
from nbo_platform.definitions import build_defs
from nbo_platform.duck import connect
from nbo_platform.generate import PRESETS, generate
from nbo_platform.lake import Lake
from nbo_platform.mart_dates import MARTS, mart_file
from nbo_platform.runner import run_pipeline as run
from nbo_platform.settings import load_settings
from nbo_platform.warehouse import connect_read_only

pytestmark = pytest.mark.e2e


def tree_digest(root: Path, pattern: str = "**/*") -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.glob(pattern))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The small preset, generated and run once for the module's tests."""
    data = tmp_path_factory.mktemp("geo") / "data"
    report = generate(data, PRESETS["small"], seed=11)
    settings = load_settings({"NBO_DATA_DIR": str(data)})
    instance = dg.DagsterInstance.ephemeral()
    run(settings, instance=instance, echo=lambda _: None)

    def query(sql: str):
        con = connect_read_only(settings.warehouse_path)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    return settings, report, instance, query


def test_every_row_is_accepted_or_quarantined_and_only_the_malformed_are_quarantined(demo):
    _, report, _, query = demo
    manifest = dict(
        (feed, (read, accepted, quarantined, discarded))
        for feed, read, accepted, quarantined, discarded in query(
            "SELECT feed, sum(rows_read), sum(rows_accepted), sum(rows_quarantined), sum(coalesce(rows_discarded, 0)) "
            "FROM landing_manifest GROUP BY ALL"
        )
    )
    for feed, (read, accepted, quarantined, discarded) in manifest.items():
        assert read == accepted + quarantined + discarded
        assert quarantined == report.malformed[feed], feed
        assert (discarded > 0) == (feed == "location_pings"), feed  # some generated customers never opted in
    assert sum(report.malformed.values()) > 0  # the generator does send broken rows


def test_one_decision_per_entry_and_each_sent_notification_delivered_once(demo):
    settings, _, _, query = demo
    entries = query("SELECT count(*) FROM geofence_hits WHERE is_entry")[0][0]
    reasons = dict(query("SELECT reason, count(*) FROM notifications GROUP BY ALL"))
    assert sum(reasons.values()) == entries > 0
    assert set(reasons) <= {"sent", "holdout", "throttled", "no_campaign", "no_consent", "unknown_customer"}
    sent = reasons["sent"]
    assert query("SELECT count(*), count(DISTINCT notification_id) FROM all_notifications") == [(sent, sent)]
    assert query("SELECT count(DISTINCT notification_id) FROM delivery_log") == [(sent,)]
    outbox = [json.loads(line) for f in settings.outbox_dir.rglob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(outbox) == len({r["notification_id"] for r in outbox}) == sent
    assert all(r["message"] and r["address"] for r in outbox)
    # Each record as the notification was sent: its time (text a datetime parses), in time order per file.
    sent_at = dict(query("SELECT notification_id, event_time FROM all_notifications"))
    assert all(datetime.fromisoformat(r["event_time"]) == sent_at[r["notification_id"]] for r in outbox)
    for f in settings.outbox_dir.rglob("*.jsonl"):
        times = [datetime.fromisoformat(json.loads(line)["event_time"]) for line in f.read_text().splitlines()]
        assert times == sorted(times), f


def test_each_hits_file_is_in_customer_time_and_store_order(demo):
    settings, _, _, _ = demo
    lake = Lake(settings.lake_uri)
    con = connect()
    files = sorted(lake.table_dir("geofence_hits").rglob("*.parquet"))
    assert files
    for f in files:
        rows = con.execute(
            f"SELECT customer_id, hit_at, store_id FROM read_parquet('{f}', file_row_number = true) "
            "ORDER BY file_row_number"
        ).fetchall()
        assert rows == sorted(rows), f


def test_no_raw_contact_data_in_the_warehouse(demo):
    settings, _, _, query = demo
    emails = {
        r[0]
        for r in query(
            "SELECT email FROM read_csv_auto('"
            + str(settings.reference_dir / "customers.csv")
            + "') WHERE email IS NOT NULL"
        )
    }
    con = connect_read_only(settings.warehouse_path)
    try:
        views = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()]
        for v in views:
            cols = {r[0] for r in con.execute(f"DESCRIBE {v}").fetchall()}
            assert not cols & {"email", "phone", "ip_address", "address"}, v
        text_cols = con.execute("SELECT string_agg(message, ' ') FROM all_notifications").fetchone()[0]
    finally:
        con.close()
    assert not any(e in text_cols for e in list(emails)[:50])


def test_rerunning_never_changes_or_resends_a_decision(demo):
    settings, _, instance, query = demo
    before = query("SELECT * EXCLUDE (decided_at) FROM notifications ORDER BY notification_id")
    outbox = tree_digest(settings.outbox_dir)
    defs = build_defs(settings)
    day = query("SELECT min(date)::VARCHAR FROM notifications")[0][0]
    result = dg.materialize(
        list(defs.assets),
        selection=dg.AssetSelection.groups("geo", "notifications", "lake"),
        partition_key=day,
        resources=defs.resources,
        instance=instance,
    )
    assert result.success
    run(settings, instance=instance, echo=lambda _: None)
    assert query("SELECT * EXCLUDE (decided_at) FROM notifications ORDER BY notification_id") == before
    assert tree_digest(settings.outbox_dir) == outbox


def test_marts_add_up(demo):
    _, _, _, query = demo
    funnel = query(
        "SELECT sum(entries), sum(unknown_customer + no_consent + no_campaign + throttled + holdout + sent), "
        "sum(sent), sum(effective) FROM notification_funnel"
    )[0]
    assert funnel[0] == funnel[1]
    sent, effective = query("SELECT sum(notifications_sent), sum(effective_notifications) FROM campaign_effectiveness")[
        0
    ]
    assert (sent, effective) == (funnel[2], funnel[3])
    assert query("SELECT count(DISTINCT notification_id) FROM effective_notifications") == [(effective,)]
    lake = Lake(demo[0].lake_uri)
    days = lake.dates("notifications")
    assert len(days) == 2 and all(mart_file(lake, "campaign_effectiveness", d).exists() for d in days)


def _rounded(rows: list[tuple]) -> list[tuple]:
    """Rows with doubles rounded: sums of doubles may differ in their last bits from one build to the next."""
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in r) for r in rows]


def test_the_marts_rebuild_only_the_days_whose_inputs_changed(demo):
    settings, _, instance, query = demo
    lake = Lake(settings.lake_uri)
    days = lake.dates("notifications")
    defs = build_defs(settings)
    assets = [*defs.assets, *defs.asset_checks]
    dbt_models = dg.AssetSelection.assets("offer_mix").required_multi_asset_neighbors()

    def build_marts(**config) -> dg.ExecuteInProcessResult:
        run_config = {"ops": {"nbo_dbt_models": {"config": config}}}
        result = dg.materialize(
            assets, selection=dbt_models, resources=defs.resources, instance=instance, run_config=run_config
        )
        assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
        return result

    def built(result: dg.ExecuteInProcessResult) -> str:
        (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["offer_mix"]]
        return event.materialization.metadata["dates_built"].value

    build_marts()  # whatever other tests of the module left due
    marts = {m: _rounded(query(f"SELECT * FROM {m} ORDER BY ALL")) for m in MARTS}
    files = {f: f.stat().st_mtime_ns for f in (lake.root / "marts").glob("*/*.parquet")}
    assert len(files) == len(MARTS) * len(days)
    # The second day's attribution written again (the same rows, new files): only that day is rebuilt.
    result = dg.materialize(
        list(defs.assets),
        selection=dg.AssetSelection.assets("effective_notifications").required_multi_asset_neighbors(),
        partition_key=days[1],
        resources=defs.resources,
        instance=instance,
    )
    assert result.success
    assert built(build_marts()) == f"1 ({days[1]})"
    rewritten = {f for f, t in files.items() if f.stat().st_mtime_ns != t}
    assert rewritten == {mart_file(lake, m, days[1]) for m in MARTS}
    assert {m: _rounded(query(f"SELECT * FROM {m} ORDER BY ALL")) for m in MARTS} == marts

    assert built(build_marts()) == "none"  # nothing changed since
    # A full refresh rebuilds every day, to the same rows.
    assert built(build_marts(full_refresh=True)) == f"2 ({days[0]} .. {days[1]})"
    assert all(f.stat().st_mtime_ns != t for f, t in files.items())
    assert {m: _rounded(query(f"SELECT * FROM {m} ORDER BY ALL")) for m in MARTS} == marts


def test_nbo_run_and_the_daily_schedule_build_the_marts_when_days_of_them_are_due(demo):
    settings, _, instance, _ = demo
    lake = Lake(settings.lake_uri)
    day = lake.dates("notifications")[0]
    defs = build_defs(settings)
    schedule = defs.resolve_schedule_def("marts_daily")

    def tick():
        with dg.build_schedule_context(instance=instance, resources=defs.resources) as context:
            return schedule.evaluate_tick(context)

    lines: list[str] = []
    run(settings, instance=instance, echo=lines.append)  # whatever other tests of the module left due
    lines.clear()
    run(settings, instance=instance, echo=lines.append)
    assert not any("dbt build" in line for line in lines)  # no file pending, no day due: no build
    idle = tick()
    assert not idle.run_requests and "up to date" in idle.skip_message
    mart_file(lake, "offer_mix", day).unlink()
    (request,) = tick().run_requests
    assert request.tags["nbo/mart_dates"] == f"1 ({day})"
    run(settings, instance=instance, echo=lines.append)
    assert any("dbt build" in line for line in lines) and mart_file(lake, "offer_mix", day).exists()
    assert not tick().run_requests


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    spec = PRESETS["small"]
    generate(tmp_path / "a", spec, seed=5)
    generate(tmp_path / "b", spec, seed=5)
    generate(tmp_path / "c", spec, seed=6)
    a, b, c = (tree_digest(tmp_path / x) for x in "abc")
    assert a == b and len(a) > 20
    assert a != c


def test_the_analysts_guide_queries_run_on_the_warehouse(demo):
    _, _, _, query = demo
    guide = (Path(__file__).resolve().parents[2] / "docs" / "analysts.md").read_text()
    blocks = [b.split("```", 1)[0] for b in guide.split("```sql")[1:]]
    assert len(blocks) >= 6
    for sql in blocks:
        assert query(sql), sql  # every question has an answer on the sample data


def _metadata(instance, key: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    assert event is not None, f"{key} was never materialized"
    return event.asset_materialization.metadata


def test_the_ui_gets_previews_pictures_and_no_raw_contacts(demo):
    _, _, instance, _ = demo
    hits = _metadata(instance, "geofence_hits")
    assert hits["map"].md_str.startswith("![map")
    assert {c.name for c in hits["dagster/column_schema"].schema.columns} >= {"customer_id", "store_id", "is_entry"}
    assert len(hits["preview"].records) > 0
    assert _metadata(instance, "campaign_effectiveness")["effectiveness_chart"].md_str.startswith("![")
    assert _metadata(instance, "location_pings")["dagster/row_count"].value > 0
    email = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
    for key in ("all_notifications", "customer_updates", "notifications", "customer_activity"):
        records = _metadata(instance, key)["preview"].records
        assert records, key
        for record in records:
            assert not {"email", "phone", "address", "ip_address"} & set(record.data), key
            assert not any(isinstance(v, str) and email.search(v) for v in record.data.values()), key


def test_the_campaign_report_is_one_self_contained_file(demo, tmp_path):
    settings, _, instance, query = demo
    page = report_path(settings.data_dir).read_text()  # written by the campaign_report asset
    assert _metadata(instance, "campaign_report")["campaigns"].value > 0
    assert page.count("data:image/png;base64,") >= 4  # funnel, campaigns, channels, map
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    (day,) = query("SELECT max(date)::VARCHAR FROM campaign_effectiveness")[0]
    out = tmp_path / "one_day.html"
    assert cli_main(["report", "--data-dir", str(settings.data_dir), "--date", day, "--out", str(out)]) == 0
    one_day = out.read_text()
    assert f"for {day}" in one_day
    for (campaign_id,) in query(f"SELECT DISTINCT campaign_id FROM campaign_effectiveness WHERE date = '{day}'"):
        assert f"#{campaign_id}" in one_day


def test_the_decision_check_looks_at_the_partitions_of_its_run(demo, tmp_path):
    settings = demo[0]
    data = tmp_path / "data"
    shutil.copytree(settings.data_dir, data, ignore=shutil.ignore_patterns(".nbo"))
    copy = load_settings({"NBO_DATA_DIR": str(data)})
    lake = Lake(copy.lake_uri)
    dates = lake.dates("notifications")
    assert len(dates) >= 2
    broken, intact = dates[0], dates[-1]
    decisions = lake.partition_files("notifications", broken)[0]
    shutil.copy(decisions, decisions.with_name("repeated-" + decisions.name))  # every decision of the date twice
    defs = build_defs(copy)
    check_key = dg.AssetCheckKey(dg.AssetKey("notifications"), "one_decision_per_entry")

    def check(date: str | None) -> dg.AssetCheckEvaluation:
        # With a date: the date's notifications again, as a sensor's run would (nothing is left to
        # decide). Without: the check on its own, as from the web UI.
        result = dg.materialize(
            list(defs.assets) + list(defs.asset_checks),
            selection=dg.AssetSelection.assets("notifications") if date else dg.AssetSelection.checks(check_key),
            partition_key=date,
            resources=defs.resources,
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
        (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == check_key.name]
        return evaluation

    failed = check(broken)
    assert not failed.passed and f"{broken}: 0 entries without a decision" in failed.metadata["details"].value
    passed = check(intact)
    assert passed.passed and passed.metadata["dates_checked"].value == 1

    # One decision of the intact date lost: the check on its own looks at every date.
    (kept,) = lake.partition_files("notifications", intact)
    original = tmp_path / "intact.parquet"
    shutil.copy(kept, original)
    con = connect()
    con.execute(f"COPY (SELECT * FROM read_parquet('{kept}') OFFSET 1) TO '{kept}.tmp' (FORMAT parquet)")
    Path(f"{kept}.tmp").replace(kept)
    everything = check(None)
    details = everything.metadata["details"].value
    assert not everything.passed and everything.metadata["dates_checked"].value == len(dates)
    assert f"{intact}: 1 entries without a decision, 0 repeated decisions" in details and f"{broken}: 0" in details

    # The lost decision back, and two decisions of an entry that is gone (as after late pings recomputed
    # the hits): the decision without an entry is reported, not a failure; its second one is a repeat.
    first = f"(SELECT * FROM read_parquet('{original}') LIMIT 1)"
    con.execute(
        f"COPY (SELECT * FROM {first} UNION ALL SELECT d.* REPLACE (d.event_time + INTERVAL 1 SECOND AS event_time) "
        f"FROM {first} d, range(2)) TO '{kept.with_name('more.parquet')}' (FORMAT parquet)"
    )
    again = check(intact)
    assert not again.passed and again.metadata["decisions_without_entry"].value == 2
    assert again.metadata["details"].value == f"{intact}: 0 entries without a decision, 1 repeated decisions"
