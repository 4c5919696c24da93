"""``nbo run``: every pending landing file through every asset, with the sensor's plan and assets.

Reference data is refreshed first; then each event date the pending files touch is materialized in
date order, exactly as the landing-zone sensor would request it. Safe to run again at any time:
ingested files are not read twice and every asset rewrites its partitions whole.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from nbo_platform.defs.ingestion.sensors import plan_landing_runs
from nbo_platform.defs.resources import LandingZoneResource, build_resources
from nbo_platform.domain.landing import find_reference_file
from nbo_platform.lake import Lake
from nbo_platform.mart_dates import plan_mart_dates
from nbo_platform.settings import Settings

REFERENCE_ASSETS = ("offers", "nbo_rules", "customers")


@dataclass
class RunReport:
    runs: list[tuple[str, list[str], float]] = field(default_factory=list)  # (partition, assets, seconds)

    @property
    def seconds(self) -> float:
        return sum(s for _, _, s in self.runs)


# The landing-zone sensor's runs, one at a time in the order requested (event-date order): a day's
# geofence state, decisions and credits follow from the day before's, and the daemon's queue would
# otherwise start up to ten of them at once.
SENSOR_RUNS_ONE_AT_A_TIME = (
    "concurrency:\n  runs:\n    tag_concurrency_limits:\n"
    "      - key: nbo/trigger\n        value: landing_zone_sensor\n        limit: 1\n"
)


def ensure_dagster_home(settings: Settings) -> str:
    """DAGSTER_HOME (default: under the data dir), with telemetry off: nothing leaves the machine.

    An existing ``dagster.yaml`` keeps its settings; what it lacks of freshness evaluation and of the
    sensor runs' ordering is added."""
    home = os.environ.get("DAGSTER_HOME") or str(settings.dagster_home)
    os.environ["DAGSTER_HOME"] = home
    os.makedirs(home, exist_ok=True)
    config = Path(home) / "dagster.yaml"
    text = config.read_text() if config.exists() else "telemetry:\n  enabled: false\n"
    added = text
    if "freshness:" not in added:  # the feeds' freshness policies are evaluated only when enabled
        added += "freshness:\n  enabled: true\n"
    if "concurrency:" not in added:
        added += SENSOR_RUNS_ONE_AT_A_TIME
    if added != text or not config.exists():
        config.write_text(added)
    return home


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance under the data dir, so the web UI shows what ``nbo run`` did."""
    ensure_dagster_home(settings)
    return dg.DagsterInstance.get()


def wait_for_settling(landing: LandingZoneResource, echo: Callable[[str], None] = print) -> None:
    """Wait until no landing file was modified in the last ``settle_seconds`` (a producer may still be
    writing it), so that ``nbo run`` takes in every file present when it starts. The sensor does not
    wait: it takes such a file at a later tick."""
    from nbo_platform.domain.feeds import LANDING_FEEDS
    from nbo_platform.domain.landing import settling_files

    if landing.settle_seconds <= 0:
        return
    for _ in range(100):  # a file rewritten without end is left for a later run, not waited for forever
        young = [
            f
            for feed in LANDING_FEEDS.values()
            for f in settling_files(landing.landing_dir, feed, landing.settle_seconds)
        ]
        if not young:
            return
        newest = max(f.mtime_ns for f in young)
        wait = max(0.05, landing.settle_seconds - (time.time_ns() - newest) / 1e9)
        echo(
            f"nbo run: {len(young)} landing file(s) modified in the last {landing.settle_seconds:g} s "
            f"(maybe still being written); waiting {wait:.1f} s"
        )
        time.sleep(wait)


@contextmanager
def one_run_at_a_time(settings: Settings, echo: Callable[[str], None] = print) -> Iterator[None]:
    """``nbo run`` one at a time per data dir: a second one waits for the first (instead of both creating
    the same new lake, instance and warehouse at once and one failing on the other's half-made files)."""
    lock_dir = settings.state_dir / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "nbo-run.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"nbo run: another nbo run is processing {settings.data_dir}; waiting for it to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_pipeline(
    settings: Settings,
    *,
    instance: dg.DagsterInstance | None = None,
    echo: Callable[[str], None] = print,
    log_level: str = "WARNING",
) -> RunReport:
    with one_run_at_a_time(settings, echo):
        return _run_pipeline(settings, instance=instance, echo=echo, log_level=log_level)


def _run_pipeline(
    settings: Settings,
    *,
    instance: dg.DagsterInstance | None,
    echo: Callable[[str], None],
    log_level: str,
) -> RunReport:
    landing: LandingZoneResource = build_resources(settings)["landing"]
    lake = Lake(settings.lake_uri, settings.parquet_version)
    wait_for_settling(landing, echo)
    # The plan needs only the landing zone and the lake: it is made (in DuckDB, which releases the GIL)
    # while the definitions are imported and built, seconds of single-threaded Python (dbt, matplotlib).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbo-plan") as pool:
        planned = pool.submit(plan_landing_runs, lake, landing)
        from nbo_platform.definitions import build_defs

        defs = build_defs(settings)
        plan = planned.result()
    assets = list(defs.assets or []) + list(defs.asset_checks or [])
    resources = defs.resources or {}
    report = RunReport()

    def materialize(keys: list[str], partition: str | None, label: str = "reference") -> None:
        started = time.perf_counter()
        result = dg.materialize(
            assets,
            selection=dg.AssetSelection.assets(*keys),
            partition_key=partition,
            resources=resources,
            instance=instance,
            raise_on_error=True,
            tags={"nbo/trigger": "nbo run"},
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        assert result.success
        seconds = time.perf_counter() - started
        report.runs.append((partition or "-", keys, seconds))
        echo(f"  {partition or label:<10}  {', '.join(keys)}  ({seconds:.1f} s)")

    reference = ["offers", "nbo_rules"]
    has_customers = find_reference_file(landing.reference_dir, "customers") or lake.has_files("customer_updates")
    # The first date's run rebuilds customers anyway when it ingests customer changes, before any
    # asset that reads them: building the history here too would only be thrown away.
    if has_customers and not (plan and "customers" in plan[0].assets):
        reference.append("customers")
    reference += ["policy", "allies", "stores", "campaigns"]
    echo("nbo run: reference data")
    materialize(reference, None)
    echo(f"nbo run: {len(plan)} event date(s) with pending files")
    for run in plan:
        materialize(sorted(run.assets), run.date)
    # The marts are built when this run processed anything, or when days of them are due anyway (none
    # built yet, inputs rewritten by runs outside `nbo run`, a mart file or the build record removed).
    marts_due = plan_mart_dates(lake).due
    if (plan or marts_due) and (lake.has_files("next_best_offer") or lake.has_files("notifications")):
        from nbo_platform.defs.marts.assets import campaign_report, nbo_dbt_models

        echo("nbo run: dbt build (marts and their tests) and the campaign report")
        keys = [*nbo_dbt_models.keys, campaign_report.key]
        materialize(sorted(k.to_user_string() for k in keys), None, label="marts")
    return report
