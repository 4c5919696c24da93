"""The dbt project builds and passes its tests on the lake the pipeline writes."""

import json
import os
import shutil
import time
from datetime import UTC, datetime

import dagster as dg
import duckdb
import pytest
from dbt.cli.main import dbtRunner, dbtRunnerResult

from nbo_platform.definitions import build_defs
from nbo_platform.defs.marts.assets import PARTIAL_PARSE, dbt_target_path, prepare_mart_dirs
from nbo_platform.lake import Lake
from nbo_platform.mart_dates import MARTS, plan_mart_dates
from nbo_platform.recipe import write_recipe
from nbo_platform.settings import REPO_ROOT


@pytest.mark.e2e
def test_dbt_build_on_recipe_output(settings, run_pipeline, monkeypatch, tmp_path):
    write_recipe(settings.data_dir, start=datetime(2025, 6, 2, 9, tzinfo=UTC))
    run_pipeline()
    monkeypatch.setenv("NBO_DATA_DIR", str(settings.data_dir))
    prepare_mart_dirs(settings.data_dir / "lake")
    project = REPO_ROOT / "dbt_project"
    # A new data dir's first invocation starts from the project's parse state (parsed with another lake
    # path): nothing dbt parses depends on the data dir, so no file is parsed again.
    target = dbt_target_path(settings.data_dir / ".nbo", "0123456789abcdef")
    assert (target / PARTIAL_PARSE).is_file()
    elsewhere = tmp_path / "parsed_elsewhere"
    with monkeypatch.context() as env:
        env.setenv("NBO_LAKE_URI", str(tmp_path / "another_lake"))
        parsed = dbtRunner().invoke(
            ["parse", "--project-dir", str(project), "--profiles-dir", str(project), "--target-path", str(elsewhere)]
            + ["--log-path", str(tmp_path / "parse_logs")]
        )
    assert parsed.success, parsed.exception
    shutil.copyfile(elsewhere / PARTIAL_PARSE, target / PARTIAL_PARSE)
    events = []
    result = dbtRunner(callbacks=[lambda e: events.append(e.info.name)]).invoke(
        [
            "build",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            "--target-path",
            str(target),
            "--log-path",
            str(tmp_path / "logs"),
        ]
    )
    assert result.success, result.exception
    assert "UnableToPartialParse" not in events and "PartialParsingEnabled" in events
    assert "PartialParsingFile" not in events, "a file was parsed again for the new data dir"
    # Nothing is reported to dbt Labs (the project's flag): the platform runs offline.
    assert "'send_anonymous_usage_stats': 'False'" in (tmp_path / "logs" / "dbt.log").read_text()
    statuses = {r.node.name: str(r.status) for r in result.result.results}
    assert {"stg_next_best_offer", "offer_mix", "campaign_effectiveness", "notification_funnel"} <= set(statuses)
    assert len(statuses) > 50 and set(statuses.values()) <= {"success", "pass"}, statuses
    # Without geo data the geo marts are empty, not failing; the recipe's offers are all there.
    assert (settings.data_dir / "lake" / "marts" / "offer_mix" / "offer_mix_2025-06-02.parquet").exists()


@pytest.mark.e2e
def test_a_mart_selected_alone_is_built_with_the_views_it_reads(settings, run_pipeline):
    """What the web UI does when one mart is materialized: dbt's views exist only in the invocation
    that creates them, so the models are never built apart."""
    write_recipe(settings.data_dir, start=datetime(2025, 6, 2, 9, tzinfo=UTC))
    run_pipeline()
    mart = settings.data_dir / "lake" / "marts" / "offer_mix" / "offer_mix_2025-06-02.parquet"
    built_before = mart.stat().st_mtime_ns
    defs = build_defs(settings)
    assets = [*defs.assets, *defs.asset_checks]
    # A selection that splits the models is refused before anything runs ...
    with pytest.raises(dg.DagsterInvalidDefinitionError) as refused:
        dg.materialize(assets, selection=dg.AssetSelection.assets("offer_mix"), resources=defs.resources)
    assert "does not support subsetting" in str(refused.value.__cause__)
    # ... and the web UI's selection of one mart takes the models it cannot be built without.
    selection = dg.AssetSelection.assets("offer_mix").required_multi_asset_neighbors()
    full = {"ops": {"nbo_dbt_models": {"config": {"full_refresh": True}}}}
    result = dg.materialize(assets, selection=selection, resources=defs.resources, run_config=full)
    assert result.success
    built = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"offer_mix", "stg_next_best_offer", "int_notification_outcomes", "campaign_effectiveness"} <= built
    checks = result.get_asset_check_evaluations()
    assert len(checks) > 50 and all(c.passed for c in checks)
    assert mart.stat().st_mtime_ns > built_before
    # The pipeline's builds run the data tests, not the SQL's unit tests (the test suite runs those).
    runs = settings.data_dir / ".nbo" / "dbt_runs"
    newest = max(runs.iterdir(), key=lambda p: p.stat().st_mtime)
    kinds = {r["unique_id"].split(".")[0] for r in json.loads((newest / "run_results.json").read_text())["results"]}
    assert kinds == {"model", "test"}


UNIT_TESTS = {
    "credit_segments_are_the_fico_bands_and_unknown_without_a_score",
    "outcomes_measure_sent_and_holdout_notifications_with_every_credited_purchase",
    "campaign_effectiveness_rates_uplift_and_its_interval",
    "ally_performance_counts_entries_and_visitors_of_allies_without_notifications",
    "notification_funnel_counts_each_reason_and_the_effective_per_day",
    "offer_mix_counts_activities_and_distinct_customers_per_offer_rule_and_segment",
}


def test_the_metrics_sql_passes_its_unit_tests(tmp_path, monkeypatch):
    """The dbt unit tests (``unit_tests:`` in the models' yml): the SQL of the outcomes and metrics on
    fixed rows. dbt reads the fixtures' column types from the models' parents, so they run inside a
    build, here on an empty lake (every staging model an empty typed relation)."""
    monkeypatch.setenv("NBO_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NBO_LAKE_URI", raising=False)
    project = REPO_ROOT / "dbt_project"
    target = dbt_target_path(tmp_path / ".nbo", "0123456789abcdef")
    common = ["--project-dir", str(project), "--profiles-dir", str(project), "--target-path", str(target)]
    result = dbtRunner().invoke(["build", *common, "--log-path", str(tmp_path / "logs")])
    assert result.success, result.exception
    units = {r.node.name: str(r.status) for r in result.result.results if r.node.resource_type == "unit_test"}
    assert units == dict.fromkeys(UNIT_TESTS, "pass")


def _build_on(tmp_path, monkeypatch, lake, select: str, *callbacks) -> dbtRunnerResult:
    """``dbt build --select <select>`` (without unit tests) on a lake written by the test, its marts
    exported under ``tmp_path/marts``."""
    monkeypatch.setenv("NBO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NBO_LAKE_URI", str(lake))
    monkeypatch.setenv("NBO_MART_OUTPUT", str(tmp_path / "marts"))
    for mart in MARTS:
        (tmp_path / "marts" / mart).mkdir(parents=True, exist_ok=True)
    project = REPO_ROOT / "dbt_project"
    target = dbt_target_path(tmp_path / ".nbo", "0123456789abcdef")
    return dbtRunner(callbacks=list(callbacks)).invoke(
        ["build", "--select", select, "--exclude-resource-type", "unit_test"]
        + ["--project-dir", str(project), "--profiles-dir", str(project), "--target-path", str(target)]
        + ["--log-path", str(tmp_path / "logs")]
    )


def _failed(result: dbtRunnerResult) -> dict[str, int]:
    """The failing tests of a build, with their failing rows."""
    return {r.node.name: r.failures for r in result.result.results if str(r.status) == "fail"}


def test_purchases_are_credited_only_to_sent_notifications_and_holdout_entries(tmp_path, monkeypatch):
    """A purchase credited to an entry the outcomes do not measure as such (a throttled one, a holdout
    entry for a sent one, or the other way round) fails the build's tests."""
    lake = tmp_path / "lake"
    day = "date=2025-06-02"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")

    def write(table: str, rows: str) -> None:
        (lake / table / day).mkdir(parents=True)
        con.execute(f"COPY ({rows}) TO '{lake / table / day / 'part.parquet'}' (FORMAT parquet)")

    write(
        "notifications",
        "SELECT * FROM (VALUES ('n_sent', 'sent', 'sent', 'push'), ('n_holdout', 'suppressed', 'holdout', 'push'), "
        "('n_throttled', 'suppressed', 'throttled', NULL)) t(notification_id, status, reason, channel), "
        "LATERAL (SELECT 1::BIGINT AS customer_id, 1::BIGINT AS ally_id, 1::BIGINT AS store_id, "
        "1::BIGINT AS campaign_id, TIMESTAMPTZ '2025-06-02 10:00:00+00' AS event_time, 10.0::DOUBLE AS distance_m)",
    )
    credits = (
        "SELECT notification_id, transaction_id::VARCHAR AS transaction_id, 1::BIGINT AS customer_id, "
        "1::BIGINT AS ally_id, 1::BIGINT AS campaign_id, 'push' AS channel, 9.5::DOUBLE AS amount, "
        "TIMESTAMPTZ '2025-06-02 10:00:00+00' AS notified_at, TIMESTAMPTZ '2025-06-02 10:05:00+00' AS purchased_at, "
        "5.0::DOUBLE AS minutes_to_purchase FROM (VALUES {}) t(notification_id, transaction_id)"
    )
    write("effective_notifications", credits.format("('n_sent', 1), ('n_throttled', 2), ('n_holdout', 3)"))
    write("holdout_conversions", credits.format("('n_holdout', 4), ('n_sent', 5)"))
    result = _build_on(tmp_path, monkeypatch, lake, "+int_notification_outcomes")
    assert not result.success
    assert _failed(result) == {
        "measured_notification_stg_effective_notifications_notification_id__False": 2,
        "measured_notification_stg_holdout_conversions_notification_id__True": 1,
    }


def test_a_repeated_decision_fails_the_funnel_test_and_only_it(tmp_path, monkeypatch):
    """A decision written twice (the same notification_id) is counted twice by the funnel: the build's
    ``each_decision_once`` test fails on that day, and no test of a measured notification does."""
    lake = tmp_path / "lake"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for day, ids in (("2025-06-02", ["n_sent", "n_throttled", "n_throttled"]), ("2025-06-03", ["n_other"])):
        (lake / "notifications" / f"date={day}").mkdir(parents=True)
        reasons = ", ".join(f"('{i}', '{'sent' if i == 'n_sent' else 'throttled'}')" for i in ids)
        con.execute(
            "COPY (SELECT notification_id, CASE reason WHEN 'sent' THEN 'sent' ELSE 'suppressed' END AS status, "
            "reason, CASE reason WHEN 'sent' THEN 'push' END AS channel, 1::BIGINT AS customer_id, "
            "1::BIGINT AS ally_id, 1::BIGINT AS store_id, 1::BIGINT AS campaign_id, "
            f"TIMESTAMPTZ '{day} 10:00:00+00' AS event_time, "
            f"10.0::DOUBLE AS distance_m FROM (VALUES {reasons}) t(notification_id, reason)) "
            f"TO '{lake / 'notifications' / f'date={day}' / 'part.parquet'}' (FORMAT parquet)"
        )
    result = _build_on(tmp_path, monkeypatch, lake, "+notification_funnel")
    assert not result.success
    assert _failed(result) == {"each_decision_once_notification_funnel_entries": 1}  # 2025-06-02 only


def test_a_lake_path_with_a_comma_is_refused_by_name(tmp_path, monkeypatch):
    """The sources are read against DuckDB's file search path, a comma-separated list."""
    lake = tmp_path / "lake,2025"
    (lake / "allies").mkdir(parents=True)
    duckdb.connect().execute(
        f"COPY (SELECT 1::BIGINT AS ally_id) TO '{lake / 'allies' / 'a.parquet'}' (FORMAT parquet)"
    )
    messages = []
    result = _build_on(tmp_path, monkeypatch, lake, "stg_allies", lambda e: messages.append(e.info.msg))
    assert not result.success
    assert any(f"lake root '{lake}'" in str(m) and "cannot hold a comma" in str(m) for m in messages)


def test_dbt_run_folders_carry_the_parse_state_and_are_pruned(tmp_path):
    runs = tmp_path / "dbt_runs"
    now = time.time()
    for age in range(7):  # 7 earlier invocations, an hour apart; the newest left parse state
        folder = runs / f"run-{age}"
        folder.mkdir(parents=True)
        if age in (1, 3):
            (folder / PARTIAL_PARSE).write_text(f"state of run {age}")
        os.utime(folder, (now - 3600 * (age + 1), now - 3600 * (age + 1)))
    young = runs / "still-running"
    young.mkdir()
    os.utime(young, (now - 60, now - 60))

    target = dbt_target_path(tmp_path, "0123456789abcdef")

    assert target.parent == runs
    assert "01234567" in target.name
    # The newest earlier state (run 1: the still-running one has none yet) seeds the new folder.
    assert (target / PARTIAL_PARSE).read_text() == "state of run 1"
    # The newest folders stay (the new one, the running one and three more); older ones go.
    left = sorted(p.name for p in runs.iterdir())
    assert left == sorted([target.name, "still-running", "run-0", "run-1", "run-2"])
    # A second invocation starts from the same state; a young folder is never removed.
    second = dbt_target_path(tmp_path, "fedcba9876543210")
    assert (second / PARTIAL_PARSE).read_text() == "state of run 1"
    assert (runs / "still-running").exists() and target.exists()


def test_a_new_data_dirs_first_dbt_run_starts_from_the_projects_parse_state(tmp_path):
    project_state = tmp_path / "project" / PARTIAL_PARSE
    project_state.parent.mkdir()
    project_state.write_text("the project's state")
    target = dbt_target_path(tmp_path / "new_data_dir", "0123456789abcdef", project_state=project_state)
    assert (target / PARTIAL_PARSE).read_text() == "the project's state"
    # Without any state, dbt parses in full.
    bare = dbt_target_path(tmp_path / "other", "0123456789abcdef", project_state=tmp_path / "missing")
    assert not (bare / PARTIAL_PARSE).exists()


def test_the_dbt_resource_knows_the_cli_version_without_running_it(monkeypatch):
    import subprocess

    import dagster_dbt.core.resource as dbt_resource_module

    from nbo_platform.defs.marts.definitions import dbt_executable, dbt_resource

    printed = subprocess.check_output([dbt_executable(), "--version"]).decode()

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(dbt_resource_module, "check_output", no_subprocess)
    resource = dbt_resource()
    version = resource._cli_version
    assert str(version) in printed and version.major == 1
    # No dbt adapter is loaded in this process: the dbt asset asks nothing of it.
    assert resource._initialize_dbt_core_adapter(["build"]) is None


@pytest.mark.e2e
def test_a_failing_dbt_test_leaves_the_marts_and_their_record_as_they_were(settings, run_pipeline):
    write_recipe(settings.data_dir, start=datetime(2025, 6, 2, 9, tzinfo=UTC))
    run_pipeline()
    lake = Lake(settings.lake_uri)
    marts = lake.root / "marts"

    def state() -> dict:
        return {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in marts.rglob("*") if f.is_file()}

    before = state()
    assert (marts / ".built_from.json") in before
    # Every assignment of the day twice: the uniqueness test of stg_next_best_offer fails.
    (assignments,) = lake.partition_files("next_best_offer", "2025-06-02")
    shutil.copyfile(assignments, assignments.with_name("again.parquet"))
    defs = build_defs(settings)
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        selection=dg.AssetSelection.assets("offer_mix").required_multi_asset_neighbors(),
        resources=defs.resources,
        raise_on_error=False,
    )
    assert not result.success
    failed = {c.check_name for c in result.get_asset_check_evaluations() if not c.passed}
    assert "unique_stg_next_best_offer_activity_id" in failed
    # The marts the failure did not stop (campaign_effectiveness, ...) were built but not published.
    results = max((settings.state_dir / "dbt_runs").glob("*/run_results.json"), key=lambda p: p.stat().st_mtime_ns)
    statuses = {r["unique_id"].split(".")[-1]: r["status"] for r in json.loads(results.read_text())["results"]}
    assert (statuses["campaign_effectiveness"], statuses["offer_mix"]) == ("success", "skipped")
    assert state() == before
    assert not list((lake.root / ".staging").glob("marts-*"))
    assert plan_mart_dates(lake).dates == ["2025-06-02"]  # still due
