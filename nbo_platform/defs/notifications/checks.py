"""Checks on notifications: one decision per entry, and no notification delivered twice."""

import dagster as dg

from nbo_platform.defs.notifications.assets import files_sql
from nbo_platform.defs.partitions import checked_dates
from nbo_platform.defs.resources import LakeResource
from nbo_platform.duck import connect, count_repeats


@dg.asset_check(
    asset="notifications",
    name="one_decision_per_entry",
    additional_deps=["geofence_hits"],
    description="Every geofence entry has exactly one decision, and no notification_id repeats: for the "
    "partitions of the run, or for every date with decisions when the check runs on its own.",
    blocking=True,
)
def one_decision_per_entry(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    the_lake, con = lake.lake(), connect()
    problems = []
    dates = checked_dates(context, the_lake.dates("notifications"))
    none = "NULL::BIGINT AS customer_id, NULL::BIGINT AS store_id, NULL::TIMESTAMPTZ AS event_time"
    for d in dates:
        decided = (
            files_sql(the_lake, "notifications", [d])
            or f"(SELECT NULL::VARCHAR AS notification_id, {none} WHERE false)"
        )
        hits = files_sql(the_lake, "geofence_hits", [d])
        # An entry is decided when a decision is about the same customer, store and instant (what its
        # notification_id is a digest of): compared as they are, without hashing every entry again.
        entries = (
            f"SELECT customer_id, store_id, hit_at AS event_time FROM {hits} WHERE is_entry"
            if hits
            else f"SELECT {none} WHERE false"
        )
        (undecided,) = con.execute(
            f"SELECT count(*) FROM ({entries}) e ANTI JOIN {decided} n USING (customer_id, store_id, event_time)"
        ).fetchone()
        repeated = count_repeats(con, f"SELECT notification_id FROM {decided}", "notification_id")
        if undecided or repeated:
            problems.append(f"{d}: {undecided} entries without a decision, {repeated} repeated decisions")
    return dg.AssetCheckResult(
        passed=not problems, metadata={"dates_checked": len(dates), "details": "\n".join(problems) or "none"}
    )


@dg.asset_check(
    asset="notification_deliveries",
    name="delivered_at_most_once",
    additional_deps=["all_notifications"],
    description="No notification_id appears twice in the delivery log, and only sent notifications are delivered.",
    blocking=True,
)
def delivered_at_most_once(lake: LakeResource) -> dg.AssetCheckResult:
    the_lake, con = lake.lake(), connect()
    if not the_lake.has_files("delivery_log"):
        return dg.AssetCheckResult(passed=True, metadata={"delivered": 0})
    log = the_lake.scan_sql("delivery_log")
    sent = the_lake.scan_sql("all_notifications")
    delivered, repeated, not_sent = con.execute(
        f"""
        SELECT count(*), count(*) - count(DISTINCT notification_id),
               (SELECT count(*) FROM {log} l ANTI JOIN {sent} s USING (notification_id))
        FROM {log}
        """
    ).fetchone()
    return dg.AssetCheckResult(
        passed=repeated == 0 and not_sent == 0,
        metadata={"delivered": int(delivered), "repeated": int(repeated), "not_sent": int(not_sent)},
    )
