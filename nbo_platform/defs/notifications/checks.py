"""Checks on notifications: one decision per entry, and no notification delivered twice."""

import dagster as dg

from nbo_platform.defs.notifications.assets import files_sql
from nbo_platform.defs.partitions import checked_dates
from nbo_platform.defs.resources import LakeResource
from nbo_platform.duck import connect, match_rows


@dg.asset_check(
    asset="notifications",
    name="one_decision_per_entry",
    additional_deps=["geofence_hits"],
    description="Every geofence entry has exactly one decision (an entry and its decision share customer, "
    "store and instant, which notification_id is a digest of), and no two decisions share one: for the "
    "partitions of the run, or for every date with decisions when the check runs on its own. A decision "
    "whose entry is gone (hits recomputed after late pings; decisions are facts) is reported, not a failure.",
    blocking=True,
)
def one_decision_per_entry(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    the_lake, con = lake.lake(), connect()
    problems, without_entry = [], 0
    dates = checked_dates(context, the_lake.dates("notifications"))
    none = "NULL::BIGINT AS customer_id, NULL::BIGINT AS store_id, NULL::TIMESTAMPTZ AS event_time"
    for d in dates:
        decided = files_sql(the_lake, "notifications", [d])
        hits = files_sql(the_lake, "geofence_hits", [d])
        entries = (
            f"SELECT customer_id, store_id, hit_at AS event_time FROM {hits} WHERE is_entry"
            if hits
            else f"SELECT {none} WHERE false"
        )
        decisions = (
            f"SELECT customer_id, store_id, event_time FROM {decided}" if decided else f"SELECT {none} WHERE false"
        )
        # One full join of entries and decisions on what a notification_id digests, instead of an anti
        # join and a distinct count of the ids (9.8M entries: 1.7-2.3 s -> 1.1 s).
        m = match_rows(con, entries, decisions, ("customer_id", "store_id", "event_time"))
        repeated = m.repeated
        if m.extra:  # decisions without an entry: the ones among them that share a key are repeats too
            (orphan_repeats,) = con.execute(
                f"SELECT count(*) - count(DISTINCT (customer_id, store_id, event_time)) "
                f"FROM ({decisions}) n ANTI JOIN ({entries}) e USING (customer_id, store_id, event_time)"
            ).fetchone()
            repeated += int(orphan_repeats)
            without_entry += m.extra
        if m.missing or repeated or m.repeated_left:
            problems.append(
                f"{d}: {m.missing} entries without a decision, {repeated} repeated decisions"
                + (f", {m.repeated_left} repeated entries" if m.repeated_left else "")
            )
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "dates_checked": len(dates),
            "decisions_without_entry": without_entry,
            "details": "\n".join(problems) or "none",
        },
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
    log = f"(SELECT * FROM {the_lake.scan_sql('delivery_log')} WHERE coalesce(status, 'delivered') = 'delivered')"
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
