"""The landing-zone sensor, and the plan it shares with ``nbo run``.

``plan_landing_runs`` turns the files waiting in the landing zone into one run per event date,
naming exactly the assets those files touch. The sensor requests those runs; ``nbo run`` executes the
same plan in-process. The sensor's cursor holds the files it has requested but that the manifest
does not list yet, so a file is requested once even while its run is queued.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from nbo_platform.built_from import STEPS, credits_next_day, fingerprint, stale_partitions
from nbo_platform.defs.resources import LakeResource, LandingZoneResource
from nbo_platform.domain.feeds import LANDING_FEEDS
from nbo_platform.domain.landing import CHANGED, latest_versions, planned_dates, read_manifest, scan_landing
from nbo_platform.domain.policy import PolicyError, load_policy
from nbo_platform.duck import connect
from nbo_platform.lake import Lake

OFFER_ASSETS = ("next_best_offer", "next_best_offer_unassigned", "next_best_offer_lookup")
ATTRIBUTION_ASSETS = ("effective_notifications", "holdout_conversions")
GEO_ASSETS = ("geofence_hits", "notifications", "all_notifications", "notification_deliveries", *ATTRIBUTION_ASSETS)
# What a file of each feed makes stale, besides the feed's own partition.
DOWNSTREAM: dict[str, tuple[str, ...]] = {
    "customer_activity": OFFER_ASSETS,
    "customers": ("customers",),
    "location_pings": GEO_ASSETS,
    "transactions": ATTRIBUTION_ASSETS,
}


@dataclass
class PlannedRun:
    date: str
    assets: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)  # "<feed>/<relpath>@<size>:<mtime_ns>"

    @property
    def run_key(self) -> str:
        digest = hashlib.sha256("\n".join(sorted(self.files)).encode()).hexdigest()[:16]
        return f"landing:{self.date}:{digest}"


def file_token(feed: str, relpath: str, size: int, mtime_ns: int) -> str:
    return f"{feed}/{relpath}@{size}:{mtime_ns}"


def plan_landing_runs(
    lake: Lake,
    landing: LandingZoneResource,
    now: datetime | None = None,
    skip: set[str] | None = None,
    catch_up: bool = True,
) -> list[PlannedRun]:
    """One planned run per event date touched by a pending file (``skip``: tokens already requested),
    and, with ``catch_up``, per date whose derived partitions are missing or stale (a run killed between
    two steps: ``built_from.stale_partitions``)."""
    now = now or datetime.now(UTC)
    con = connect()
    runs: dict[str, PlannedRun] = {}
    if catch_up:
        try:
            next_day = credits_next_day(load_policy(lake.table_dir("policy") / "policy.yaml"))
        except PolicyError:
            next_day = True  # fingerprints with the next day's decisions: at worst a partition built again
        for d, assets in stale_partitions(lake, next_day).items():
            run = runs.setdefault(d, PlannedRun(d))
            run.assets |= assets
            # The run key follows what is stale and the inputs as they are: a new crash asks again.
            state = hashlib.sha256(repr(sorted(assets)).encode()).hexdigest()[:8]
            inputs = ".".join(fingerprint(lake, s, d, next_day)[:8] for s in STEPS)
            attempts = len(lake.partition_files("delivery_log", d))  # a refused delivery asks again
            run.files.add(f"catch-up:{state}:{inputs}:{attempts}")
    changed_customer_dates: set[str] = set()
    ping_dates: set[str] = set()
    transaction_dates: set[str] = set()
    for name, feed in LANDING_FEEDS.items():
        manifest = read_manifest(con, lake, feed)
        pending, changed = scan_landing(
            con, lake, landing.landing_dir, feed, manifest=manifest, settle_seconds=landing.settle_seconds
        )
        latest = latest_versions(manifest)
        for c in changed:
            # A file changed after it was ingested: a run of its feed records the change (its manifest row
            # and the failing check) once; its new records wait for `nbo retake`.
            row = latest[c.file.relpath]
            token = file_token(name, c.file.relpath, c.file.size, c.file.mtime_ns)
            if row["status"] != CHANGED and not (skip and token in skip):
                d = min(row.get("dates") or [now.date().isoformat()])
                run = runs.setdefault(d, PlannedRun(d))
                run.assets.add(feed.table)
                run.files.add(token)
        tokens = {f.relpath: file_token(name, f.relpath, f.size, f.mtime_ns) for f in pending}
        pending = [f for f in pending if not (skip and tokens[f.relpath] in skip)]
        for relpath, dates in planned_dates(con, pending, feed, now).items():
            token = tokens[relpath]
            for d in dates or {now.date().isoformat()}:
                run = runs.setdefault(d, PlannedRun(d))
                run.assets |= {feed.table, *DOWNSTREAM[name]}
                run.files.add(token)
                if name == "customers":
                    changed_customer_dates.add(d)
                elif name == "location_pings":
                    ping_dates.add(d)
                elif name == "transactions":
                    transaction_dates.add(d)

    # A run planned because of files of other dates carries those files' tokens too: its run key then
    # differs for each new file, and the sensor (which never requests a run key twice) requests it again.
    def files_of(feed: str, dates: set[str]) -> set[str]:
        return {t for d in dates for t in runs[d].files if t.startswith(f"{feed}/")}

    customer_files = files_of("customers", changed_customer_dates)
    if changed_customer_dates:
        # A new customer version changes the offers of every later activity already processed.
        first = min(changed_customer_dates)
        for d in lake.dates("customer_activity"):
            if d >= first:
                runs.setdefault(d, PlannedRun(d)).assets |= {"customers", *OFFER_ASSETS}
    if ping_dates:
        # Geofence state carries from day to day: late pings recompute the hits of every later day
        # already processed (decisions already made stay as they are).
        first = min(ping_dates)
        for d in lake.dates("geofence_state"):
            if d > first:
                run = runs.setdefault(d, PlannedRun(d))
                run.assets |= set(GEO_ASSETS)
                run.files |= {f"pings-changed-since:{first}", *files_of("location_pings", ping_dates)}
    decided = set(lake.dates("notifications"))
    for d in transaction_dates:
        # Purchases just after midnight are credited to notifications of the day before.
        before = _day_before(d)
        if before in decided or before in runs:
            run = runs.setdefault(before, PlannedRun(before))
            run.assets |= set(ATTRIBUTION_ASSETS)
            run.files |= {f"transactions-of:{d}", *files_of("transactions", {d})}
    # With a cooldown shorter than the attribution window, a customer can be notified again before a
    # window closes, and a purchase goes to the latest notification: one of the next day's (00:01)
    # takes a purchase (00:05) the day before's (23:50) was credited with. The days before a day that
    # gets new decisions are credited again after it, at the end of the plan.
    again: dict[str, PlannedRun] = {}
    if _cooldown_shorter_than_window(lake, landing):
        for d in [d for d in sorted(runs) if "notifications" in runs[d].assets]:
            before = _day_before(d)  # a window is at most a day
            if before in decided or (before in runs and "notifications" in runs[before].assets):
                run = again.setdefault(before, PlannedRun(before))
                run.assets |= set(ATTRIBUTION_ASSETS)
                run.files |= {f"notifications-of:{d}", *runs[d].files}
    for run in [*runs.values(), *again.values()]:
        if run.assets & set(ATTRIBUTION_ASSETS):
            # Ingesting takes every pending transaction file, whatever its date: the next day's
            # purchases are in the lake before this day's notifications are credited.
            run.assets.add("transactions")
        if "customers" in run.assets and not run.files:
            run.files |= {f"customers-changed-since:{min(changed_customer_dates)}", *customer_files}
    return [runs[d] for d in sorted(runs)] + [again[d] for d in sorted(again)]


def _day_before(d: str) -> str:
    return (date.fromisoformat(d) - timedelta(days=1)).isoformat()


def _cooldown_shorter_than_window(lake: Lake, landing: LandingZoneResource) -> bool:
    """Whether a policy in force has a cooldown shorter than its attribution window: the reference
    file the run will load, or the lake's snapshot of the last one loaded."""
    for path in (landing.reference_dir / "policy.yaml", lake.table_dir("policy") / "policy.yaml"):
        try:
            policy = load_policy(path)
        except PolicyError:
            continue  # the policy asset fails the run with the reason
        if policy.cooldown_minutes < policy.attribution_window_minutes:
            return True
    return False


@dg.sensor(
    name="landing_zone_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a run for each event date a new landing file touches, for exactly the assets "
    "that file feeds. Runs in event-date order.",
    target=dg.AssetSelection.groups("ingestion", "offers", "geo", "notifications", "lake")
    | dg.AssetSelection.assets("customers"),
)
def landing_zone_sensor(context: dg.SensorEvaluationContext, lake: LakeResource, landing: LandingZoneResource):
    in_flight: set[str] = set(json.loads(context.cursor)) if context.cursor else set()
    the_lake = lake.lake()
    # Forget requested files the manifest now lists (ingested) so the cursor stays small.
    con = connect()
    still_pending = {
        file_token(name, f.relpath, f.size, f.mtime_ns)
        for name, feed in LANDING_FEEDS.items()
        for f in scan_landing(con, the_lake, landing.landing_dir, feed)[0]
    }
    in_flight &= still_pending
    # Missing or stale partitions (a run killed between two steps) are caught up only while none of
    # the sensor's runs is queued or in progress: a run under way leaves its later steps due until it ends.
    busy = context.instance.get_runs_count(
        dg.RunsFilter(
            statuses=[
                dg.DagsterRunStatus.QUEUED,
                dg.DagsterRunStatus.NOT_STARTED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED,
            ],
            tags={"nbo/trigger": "landing_zone_sensor"},
        )
    )
    plan = plan_landing_runs(the_lake, landing, skip=in_flight, catch_up=not busy)
    if not plan:
        context.update_cursor(json.dumps(sorted(in_flight)))
        yield dg.SkipReason("no new landing files")
        return
    for run in plan:
        in_flight |= {t for t in run.files if "@" in t}
        yield dg.RunRequest(
            run_key=run.run_key,
            partition_key=run.date,
            asset_selection=[dg.AssetKey(a) for a in sorted(run.assets)],
            tags={"nbo/trigger": "landing_zone_sensor", "nbo/files": str(len(run.files))},
        )
    context.update_cursor(json.dumps(sorted(in_flight)))
