"""The ksqlDB recipe through the landing zone and every asset (in-process materializations)."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from nbo_platform.cli import main
from nbo_platform.definitions import build_defs
from nbo_platform.defs.ingestion.sensors import landing_zone_sensor, plan_landing_runs
from nbo_platform.defs.resources import build_resources
from nbo_platform.domain.rules import DEFAULT_RULES_PATH
from nbo_platform.duck import connect
from nbo_platform.lake import Lake
from nbo_platform.recipe import EXPECTED_LOOKUP, write_recipe
from nbo_platform.runner import ensure_dagster_home

START = datetime(2025, 6, 2, 9, tzinfo=UTC)
LOOKUP = (
    "SELECT offer_id, customer_id, activity_id, propensity_to_buy, activity_type, income, fico, "
    "offer_name, offer_url FROM next_best_offer_lookup"
)

pytestmark = pytest.mark.e2e


def test_recipe_data_gives_exactly_the_recipe_output(settings, run_pipeline, warehouse):
    write_recipe(settings.data_dir, start=START)
    run_pipeline()
    assert sorted(warehouse(LOOKUP)) == sorted(EXPECTED_LOOKUP)
    assert len(warehouse(LOOKUP)) == 10
    assert warehouse("SELECT count(*) FROM next_best_offer_unassigned") == [(0,)]
    assert warehouse("SELECT DISTINCT rule_id FROM next_best_offer ORDER BY 1") == [
        ("default",),
        ("new_home_loan",),
        ("new_savings",),
    ]


def test_second_listing_applies_from_its_time_on(settings, run_pipeline, warehouse):
    change_at = START + timedelta(minutes=4, seconds=30)  # between activities 5 and 6
    write_recipe(settings.data_dir, start=START, second_listing_at=change_at)
    run_pipeline()
    got = {a: (o, f) for o, _, a, _, _, _, f, _, _ in warehouse(LOOKUP)}
    # Before the change: the first listing's offers (customers 2 and 3 get new_home_loan).
    assert got[2] == (3, 705) and got[3] == (3, 750) and got[5] == (3, 705)
    # After it: FICO 624/683 makes customers 2 and 3 eligible for new_savings.
    assert got[6] == (1, 683) and got[8] == (1, 624) and got[9] == (1, 683)
    assert got[7] == (5, 465) and got[10] == (1, 465)  # customer 1 is unchanged
    assert warehouse("SELECT customer_id, count(*) FROM customers GROUP BY 1 ORDER BY 1") == [(1, 2), (2, 2), (3, 2)]


def test_late_customer_change_recomputes_later_offers(settings, run_pipeline, warehouse):
    write_recipe(settings.data_dir, start=START)
    run_pipeline()
    assert {a: o for o, _, a, *_ in warehouse(LOOKUP)}[6] == 3
    change_at = START + timedelta(minutes=4, seconds=30)
    write_recipe(settings.data_dir, start=START, second_listing_at=change_at)
    run_pipeline()
    got = {a: o for o, _, a, *_ in warehouse(LOOKUP)}
    assert (got[5], got[6], got[8]) == (3, 1, 1)


def _snapshot(warehouse) -> dict:
    tables = ["next_best_offer", "next_best_offer_lookup", "next_best_offer_unassigned", "customers", "offers"]
    snap = {t: warehouse(f"SELECT * FROM {t} ORDER BY ALL") for t in tables}
    snap["customer_activity"] = warehouse("SELECT * EXCLUDE (ingested_at) FROM customer_activity ORDER BY ALL")
    return snap


def test_rerunning_a_partition_gives_identical_tables(settings, run_pipeline, warehouse):
    write_recipe(settings.data_dir, start=START, second_listing_at=START + timedelta(minutes=5))
    run_pipeline()
    before = _snapshot(warehouse)
    defs = build_defs(settings)
    result = dg.materialize(
        list(defs.assets) + list(defs.asset_checks),
        partition_key=START.date().isoformat(),
        resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    run_pipeline()
    assert _snapshot(warehouse) == before
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations["rows_conserved"] and evaluations["every_activity_accounted_for"]
    assert evaluations["rules_lint"] is False  # the recipe's rule 4 is shadowed: a warning


def test_the_accounting_check_reports_a_repeated_and_a_lost_offer_row(settings, run_pipeline):
    write_recipe(settings.data_dir, start=START)
    run_pipeline()
    lake = Lake(settings.lake_uri)
    day = START.date().isoformat()
    (assigned,) = lake.partition_files("next_best_offer", day)
    con = connect()
    # Activity 1's row written twice, activity 2's lost.
    con.execute(
        f"COPY (SELECT * FROM read_parquet('{assigned}') WHERE activity_id <> 2 UNION ALL "
        f"SELECT * FROM read_parquet('{assigned}') WHERE activity_id = 1) TO '{assigned}.tmp' (FORMAT parquet)"
    )
    Path(f"{assigned}.tmp").replace(assigned)
    defs = build_defs(settings)
    key = dg.AssetCheckKey(dg.AssetKey("next_best_offer"), "every_activity_accounted_for")
    result = dg.materialize(
        list(defs.assets) + list(defs.asset_checks),
        selection=dg.AssetSelection.checks(key),
        resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.metadata["details"].value == (
        f"{day}: 1 activities without a row, 0 rows without activity, 1 repeated"
    )


def test_bad_activity_rows_are_quarantined_and_accounted_for(settings, run_pipeline, warehouse):
    write_recipe(settings.data_dir, start=START)
    bad = settings.landing_dir / "customer_activity" / "activity-bad.jsonl"
    bad.write_text(
        '{"customer_id": 1, "activity_id": 11, "activity_type": "deposit", "propensity_to_buy": 2}\n'
        "not json\n"
        '{"customer_id": 9, "activity_id": 12, "activity_type": "deposit", "propensity_to_buy": 0.1, '
        f'"event_time": "{START.isoformat()}"}}\n'
    )
    run_pipeline()
    assert warehouse("SELECT file, line, reason FROM quarantine ORDER BY line") == [
        ("activity-bad.jsonl", 1, "propensity_to_buy: outside [0, 1]: 2.0"),
        ("activity-bad.jsonl", 2, "unparseable JSON"),
    ]
    assert warehouse("SELECT activity_id, reason FROM next_best_offer_unassigned") == [(12, "unknown_customer")]
    assert warehouse("SELECT sum(rows_read), sum(rows_accepted), sum(rows_quarantined) FROM landing_manifest") == [
        (13, 11, 2)
    ]


def test_warehouse_has_no_raw_contact_data_or_ip(settings, run_pipeline, warehouse):
    write_recipe(settings.data_dir, start=START)
    run_pipeline()
    for (table,) in warehouse("SELECT view_name FROM duckdb_views() WHERE NOT internal"):
        cols = {c for c, *_ in warehouse(f"DESCRIBE {table}")}
        assert not cols & {"email", "phone", "ip_address"}, table
        text = json.dumps(warehouse(f"SELECT * FROM {table}"), default=str)
        assert "@hc360.com" not in text and "121.219.110.170" not in text, table


def test_sensor_plan_names_exactly_the_partitions_and_assets_a_new_file_touches(settings, run_pipeline, lake):
    write_recipe(settings.data_dir, start=START)
    landing = build_resources(settings)["landing"]
    [run] = plan_landing_runs(lake, landing)
    assert run.date == "2025-06-02"
    assert run.assets == {
        "customer_activity",
        "next_best_offer",
        "next_best_offer_unassigned",
        "next_best_offer_lookup",
    }
    run_pipeline()
    assert plan_landing_runs(lake, landing) == []
    later = settings.landing_dir / "customer_activity" / "activity-later.jsonl"
    later.write_text(
        '{"customer_id": 1, "activity_id": 50, "activity_type": "deposit", "propensity_to_buy": 0.1, '
        '"event_time": "2025-06-04T23:59:59Z"}\n'
    )
    assert [r.date for r in plan_landing_runs(lake, landing)] == ["2025-06-04"]


def test_sensor_requests_each_file_once(settings):
    write_recipe(settings.data_dir, start=START)
    resources = build_resources(settings)
    instance = dg.DagsterInstance.ephemeral()
    with dg.build_sensor_context(resources=resources, instance=instance) as ctx:
        requests = list(landing_zone_sensor(ctx))
        assert [r.partition_key for r in requests] == ["2025-06-02"]
        cursor = ctx.cursor
    with dg.build_sensor_context(resources=resources, cursor=cursor, instance=instance) as ctx:
        assert isinstance(next(iter(landing_zone_sensor(ctx))), dg.SkipReason)


def test_the_sensors_runs_queue_one_at_a_time_in_the_local_dagster_home(settings, monkeypatch):
    """The daemon's queue starts up to ten runs at once; the sensor's date runs must follow one another."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = Path(ensure_dagster_home(settings))
    queue = dg.DagsterInstance.from_config(str(home)).get_concurrency_config().run_queue_config
    assert {"key": "nbo/trigger", "value": "landing_zone_sensor", "limit": 1} in queue.tag_concurrency_limits
    # A home with its own settings keeps them; only what it lacks is added, once.
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: true\nconcurrency:\n  runs:\n    max_concurrent_runs: 3\n"
    )
    ensure_dagster_home(settings)
    ensure_dagster_home(settings)
    text = (home / "dagster.yaml").read_text()
    assert text.startswith("telemetry:\n  enabled: true\nconcurrency:") and text.count("freshness:") == 1
    assert "tag_concurrency_limits" not in text


def test_rules_lint_command(tmp_path, capsys):
    assert main(["rules", "lint", "--file", str(DEFAULT_RULES_PATH)]) == 1
    assert "rule 4 'new_auto_loan' (offer 4) can never fire" in capsys.readouterr().out
    bad = tmp_path / "nbo_rules.yaml"
    bad.write_text(
        "default_offer: 5\nrules:\n  - id: fine\n    offer_id: 1\n  - id: broken\n    offer_id: 2\n"
        "    when: {fico: {below: 3}}\n"
    )
    assert main(["rules", "lint", "--file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "rule 2 'broken'" in err
    good = tmp_path / "good.yaml"
    good.write_text("default_offer: 5\nrules:\n  - {id: a, offer_id: 1, when: {fico: {lt: 600}}}\n")
    assert main(["rules", "lint", "--file", str(good)]) == 0


def test_code_location_loads():
    defs = build_defs()
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {
        "customer_activity",
        "customers",
        "offers",
        "nbo_rules",
        "next_best_offer",
        "next_best_offer_lookup",
    } <= keys
    defs.resolve_all_job_defs()


def test_dbt_models_are_assets_with_lineage_to_the_python_assets_and_tests_as_checks():
    graph = build_defs().resolve_asset_graph()
    parents = lambda key: {p.to_user_string() for p in graph.get(dg.AssetKey(key)).parent_keys}  # noqa: E731
    assert parents("stg_notifications") == {"notifications"}
    assert parents("stg_effective_notifications") == {"effective_notifications"}
    assert parents("campaign_effectiveness") == {"int_notification_outcomes"}
    assert graph.get(dg.AssetKey("campaign_effectiveness")).group_name == "marts"
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("stg_notifications", "not_null_stg_notifications_notification_id") in checks
    assert ("notification_funnel", "each_decision_once_notification_funnel_entries") in checks
    assert ("stg_next_best_offer", "unique_stg_next_best_offer_activity_id") in checks
    assert any(a == "campaign_effectiveness" and n.startswith("rate_between_0_and_1") for a, n in checks)
