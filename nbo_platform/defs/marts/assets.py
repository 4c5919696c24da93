"""The dbt project as Dagster assets: staging, intermediate and the campaign-effectiveness marts.

Each dbt model is an asset whose lineage reaches the Python assets through the sources' ``meta``
(``dagster.asset_key``); dbt tests appear as asset checks. dbt builds in an in-memory database of its
own (never the analysts' warehouse) and writes each mart as one Parquet file per date; once every
test has passed the files are moved into the lake (``lake/marts/<mart>/<mart>_<date>.parquet``),
where the warehouse's views pick them up. A build covers only the days whose inputs changed since
the last one (``nbo_platform.mart_dates``).
"""

import os
import shutil
import time
import uuid
from pathlib import Path

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets
from pydantic import Field

from nbo_platform import charts
from nbo_platform.campaign_report import campaign_figures, report_path, write_report
from nbo_platform.defs.metadata import image, table_metadata
from nbo_platform.defs.resources import LakeResource, LandingZoneResource, WarehouseResource
from nbo_platform.duck import connect
from nbo_platform.lake import Lake
from nbo_platform.mart_dates import MARTS, build_lock, new_staging, plan_mart_dates, publish_build
from nbo_platform.settings import REPO_ROOT

DBT_DIR = REPO_ROOT / "dbt_project"

dbt_project = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)


def ensure_manifest(project: DbtProject = dbt_project) -> Path:
    """Parse the dbt project (offline) when its manifest is missing or older than the project's files."""
    manifest = project.manifest_path
    sources = [p for d in ("models", "macros", "tests") for p in (DBT_DIR / d).rglob("*") if p.is_file()]
    sources += [DBT_DIR / "dbt_project.yml", DBT_DIR / "profiles.yml"]
    newest = max(p.stat().st_mtime for p in sources)
    if not manifest.exists() or manifest.stat().st_mtime < newest:
        from dbt.cli.main import dbtRunner

        result = dbtRunner().invoke(["parse", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--quiet"])
        if not result.success:
            raise RuntimeError(f"dbt parse failed: {result.exception}")
    return manifest


DBT_RUNS_KEPT = 5
DBT_RUN_GRACE_SECONDS = 600
PARTIAL_PARSE = "partial_parse.msgpack"


def dbt_target_path(
    state_dir: Path, run_id: str, project_state: Path = dbt_project.manifest_path.parent / PARTIAL_PARSE
) -> Path:
    """A new target folder for one dbt invocation, under the data dir's private state.

    Each invocation gets its own folder (its manifest, run results and log), so runs never mix
    artifacts. The folder starts with the newest earlier invocation's partial-parse state, or in a
    new data dir the project's own (written when its manifest was parsed): the profile is the same
    for every data dir and nothing parsed depends on it, so dbt parses again only the files that changed
    (a full parse costs seconds). Only the newest ``DBT_RUNS_KEPT`` folders are kept, and none younger
    than ``DBT_RUN_GRACE_SECONDS``, which another run may still be using.
    """
    runs = state_dir / "dbt_runs"
    runs.mkdir(parents=True, exist_ok=True)
    earlier = sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    target = runs / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{run_id[:8]}-{uuid.uuid4().hex[:6]}"
    target.mkdir()
    candidates = [p / PARTIAL_PARSE for p in earlier] + [project_state]
    state = next((c for c in candidates if c.is_file()), None)
    if state is not None:
        shutil.copyfile(state, target / PARTIAL_PARSE)
    cutoff = time.time() - DBT_RUN_GRACE_SECONDS
    for old in earlier[DBT_RUNS_KEPT - 1 :]:
        if old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
    return target


def prepare_mart_dirs(lake_root: Path) -> None:
    """dbt run by hand writes each mart's files into its lake folder, which must exist."""
    for mart in MARTS:
        (lake_root / "marts" / mart).mkdir(parents=True, exist_ok=True)


# Reference tables the marts and the report read. The daily refresh reloads them whole, most days with
# the same rows; their data version is a digest of the rows, so only a change of content counts.
REFERENCE_INPUTS = dg.AssetSelection.assets("allies", "stores", "campaigns")

# The marts' automation: eager (rebuild when an input is updated, not while one is being written), but
# - without eager's "no input missing": the marts read every day of daily-partitioned inputs, which count
#   as missing while any day since the partitions' start has no data (every day before the first file
#   arrived, any quiet day), so plain eager never requests them. A mart builds on what the lake holds.
# - a reference input counts as updated when its data version changed, not at every reload: the daily
#   refresh would otherwise request a build that covers no day (seconds of dbt, and materializations
#   that say nothing changed).
_INPUTS_UPDATED = dg.AutomationCondition.any_deps_updated().ignore(
    REFERENCE_INPUTS
) | dg.AutomationCondition.any_deps_match(
    dg.AutomationCondition.data_version_changed() & ~dg.AutomationCondition.executed_with_root_target()
).allow(REFERENCE_INPUTS).with_label("any_reference_deps_changed")
MARTS_AUTOMATION = (
    dg.AutomationCondition.eager()
    .without(~dg.AutomationCondition.any_deps_missing())
    .replace("any_deps_updated", _INPUTS_UPDATED)
    .with_label("eager, on the days present, on reference data that changed")
)


class NboDbtTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props) -> str:
        return "marts"

    def get_automation_condition(self, dbt_resource_props):
        # Marts follow their inputs: a new partition of notifications or attribution updates them.
        return MARTS_AUTOMATION

    def get_owners(self, dbt_resource_props):
        return ["team:analytics"]


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=NboDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
)
def _dbt_project_assets(context: dg.AssetExecutionContext):
    """Only the assets (one per model) and checks (one per test) dagster-dbt derives from the manifest."""


class MartsConfig(dg.Config):
    full_refresh: bool = Field(
        default=False,
        description="Rebuild every date of the marts, not only the days whose inputs changed since the last build.",
    )


# dbt builds in a new in-memory database each time: a mart built on its own would not find the
# staging views and intermediate table it reads (they exist only in the invocation that creates them). So
# the models are one asset set that is never split: selecting any of them in the web UI, a job or an
# automation request builds the whole project and runs every test (one `dbt build`, seconds), on the
# days whose inputs changed since the last build (every day with `full_refresh`). The marts reach the
# lake only when the whole build passed: a failing test leaves them, and the record of what they were
# built from, as they were, and the next build covers the same days again.
@dg.multi_asset(
    name="nbo_dbt_models",
    specs=list(_dbt_project_assets.specs),
    check_specs=list(_dbt_project_assets.check_specs),
    op_tags=_dbt_project_assets.op.tags,
    can_subset=False,
    allow_arbitrary_check_specs=True,
)
def nbo_dbt_models(
    context: dg.AssetExecutionContext,
    config: MartsConfig,
    dbt: DbtCliResource,
    lake: LakeResource,
    landing: LandingZoneResource,
    warehouse: WarehouseResource,
):
    the_lake = lake.lake()
    # dbt's profile and sources read these; the subprocess inherits them.
    os.environ["NBO_DATA_DIR"] = landing.data_dir
    os.environ["NBO_LAKE_URI"] = str(the_lake.root)
    marts = []  # the marts' outputs, reported once their files are in the lake
    with build_lock(the_lake):
        plan = plan_mart_dates(the_lake, full_refresh=config.full_refresh)
        context.log.info(f"marts: dates to build: {plan.summary()} ({plan.reason})")
        staged = new_staging(the_lake)
        os.environ["NBO_MART_DATES"] = plan.env_value
        os.environ["NBO_MART_OUTPUT"] = str(staged)
        try:
            target = dbt_target_path(landing.state_dir, context.run_id)
            # The project's unit tests check its SQL on fixed rows, not the data: the test suite runs
            # them (tests/test_dbt_project.py), a daily build has nothing to learn from them.
            build = ["build", "--exclude-resource-type", "unit_test"]
            for event in dbt.cli(build, context=context, target_path=target).stream():
                if isinstance(event, dg.Output) and event.output_name in MARTS:
                    marts.append(event)
                else:
                    yield event
            placed = publish_build(the_lake, plan, staged)
        finally:
            os.environ.pop("NBO_MART_DATES", None)
            os.environ.pop("NBO_MART_OUTPUT", None)
            shutil.rmtree(staged, ignore_errors=True)
    context.log.info(f"marts: {placed} file(s) placed in {the_lake.root / 'marts'}")
    built = {"dates_built": plan.summary(), "dates_built_because": plan.reason}
    for event in marts:
        yield event.with_metadata({**event.metadata, **built, **mart_metadata(the_lake, event.output_name)})
    warehouse.publish(the_lake)


def mart_metadata(lake: Lake, mart: str) -> dict:
    """Preview and column types of an exported mart; the campaign mart also gets its chart."""
    folder = lake.root / "marts" / mart
    if not any(folder.glob("*.parquet")):
        return {}
    con = connect()
    relation = f"SELECT * FROM read_parquet('{folder}/*.parquet')"
    (rows,) = con.execute(f"SELECT count(*) FROM ({relation})").fetchone()
    # dbt's column docs stay the column schema; the preview adds what the rows look like.
    preview = table_metadata(con, relation, f"marts/{mart}")["preview"]
    shown = {"preview": preview, "dagster/row_count": int(rows)}
    if mart == "campaign_effectiveness":
        shown["effectiveness_chart"] = image(
            # The report's chart (same rows, same title): drawn once when both run in one process.
            charts.effectiveness_chart(campaign_figures(con, lake), "campaign", "per campaign"),
            "effective rate and uplift per campaign",
        )
    return shown


@dg.asset(
    deps=[*(m for m in MARTS if m != "offer_mix"), "stores", "allies", "campaigns", "geofence_hits"],
    group_name="marts",
    kinds={"html"},
    owners=["team:analytics"],
    automation_condition=MARTS_AUTOMATION,
    description="The campaign report (`reports/campaign_report.html`): funnel, effective rate and uplift per "
    "campaign, channel and ally, the trend over the days present and the map of stores and hits, in one "
    "self-contained HTML file (`nbo report` writes the same for one day or all).",
)
def campaign_report(lake: LakeResource, landing: LandingZoneResource) -> dg.MaterializeResult:
    out = report_path(Path(landing.data_dir))
    data = write_report(lake.lake(), out)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(out)),
            "open": dg.MetadataValue.url(out.as_uri()),
            "days": ", ".join(data.dates) or "none",
            "campaigns": len(data.campaigns),
            "not_built_yet": ", ".join(data.missing) or "none",
            "funnel": dg.MetadataValue.md(charts.markdown_image(charts.funnel_chart(data.funnel), "funnel")),
        }
    )


marts_daily_job = dg.define_asset_job(
    "marts_daily",
    selection=dg.AssetSelection.groups("marts"),
    description="Build the dbt models for the days whose inputs changed (every day with the config "
    "`full_refresh: true`) and run every test.",
)


@dg.schedule(
    name="marts_daily",
    job=marts_daily_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Materializes the day's metrics at 00:30 UTC, once the day's attribution window has closed; "
    "skips the tick when no day's inputs changed since the last build (the automation already built them).",
)
def marts_daily_schedule(context: dg.ScheduleEvaluationContext, lake: LakeResource):
    plan = plan_mart_dates(lake.lake())
    if not plan.due:
        return dg.SkipReason(f"the marts are up to date ({plan.reason})")
    gone = f"; {len(plan.gone)} day(s) gone from the lake" if plan.gone else ""
    context.log.info(f"marts: dates to build: {plan.summary()} ({plan.reason}){gone}")
    return dg.RunRequest(tags={"nbo/mart_dates": plan.summary()})


marts_automation_sensor = dg.AutomationConditionSensorDefinition(
    "marts_automation",
    target=dg.AssetSelection.groups("marts"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Updates the marts when the lake tables they read change.",
)
