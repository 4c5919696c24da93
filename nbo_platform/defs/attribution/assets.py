"""Attribution: the "Effective Notifications" lake and the holdout group's conversions.

The partition of a notification's date reads the transactions of that date and of the next one
(an attribution window crosses midnight: a notification at 23:50 is credited with a purchase at 00:05).
A transaction file for a date therefore re-computes that date and the date before it, whatever
order the files arrive in; nothing else.

It also reads the next day's notifications: a purchase goes to the latest notification before it,
which may be the next day's (notified at 23:50 and again at 00:01 when the cooldown is shorter than
the window: a purchase at 00:05 is the 00:01 notification's, not the day before's). The pairs kept
are those of the date's own notifications; the sensor's plan credits the day before again once a
day's notifications are decided (``plan_landing_runs``), so a purchase is never credited twice.
"""

from datetime import date as Date
from datetime import timedelta

import dagster as dg

from nbo_platform.built_from import building, credits_next_day
from nbo_platform.defs.geo.assets import policy_of
from nbo_platform.defs.metadata import table_metadata
from nbo_platform.defs.notifications.assets import files_sql
from nbo_platform.defs.partitions import daily_partitions
from nbo_platform.defs.resources import LakeResource, WarehouseResource
from nbo_platform.domain.attribution import attribute
from nbo_platform.duck import connect, sql_literal

# A date and the next: what an attribution window crossing midnight reaches.
DAY_AND_NEXT = dg.TimeWindowPartitionMapping(start_offset=0, end_offset=1)
EMPTY_TRANSACTIONS = (
    "SELECT NULL::VARCHAR transaction_id, NULL::BIGINT customer_id, NULL::BIGINT store_id, NULL::DOUBLE amount, "
    "NULL::TIMESTAMPTZ event_time WHERE false"
)


def window_dates(date: str) -> list[str]:
    """The dates an attribution window opened on ``date`` reaches: it and the next (a window is at most
    a day, ``MAX_ATTRIBUTION_WINDOW_MINUTES``)."""
    return [date, (Date.fromisoformat(date) + timedelta(days=1)).isoformat()]


def attribute_date(con, lake, date: str, window_minutes: float) -> tuple[int, int]:
    targets = [lake.partition_dir(t, date) / "data.parquet" for t in ("effective_notifications", "holdout_conversions")]
    notes = files_sql(lake, "notifications", [date])
    if notes is None or not lake.has_files("stores"):
        for t in targets:
            t.unlink(missing_ok=True)
        return 0, 0
    reach = window_dates(date)
    tx = files_sql(lake, "transactions", reach)
    # The notifications of the dates the window reaches compete for the same purchases: a later one
    # takes them. Only this date's notifications' pairs are its partition.
    effective, holdout = attribute(
        con,
        f"SELECT * FROM {files_sql(lake, 'notifications', reach)}",
        f"SELECT * FROM {tx}" if tx else EMPTY_TRANSACTIONS,
        f"SELECT store_id, ally_id FROM {lake.scan_sql('stores', hive=False)}",
        window_minutes,
    )
    pairs = zip((effective, holdout), targets, strict=True)
    own = f"WHERE date = DATE {sql_literal(date)}"
    return tuple(lake.write(con, f"SELECT * FROM {t} {own}", target) for t, target in pairs)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "effective_notifications",
            deps=[
                dg.AssetDep("notifications", partition_mapping=DAY_AND_NEXT),
                dg.AssetDep("transactions", partition_mapping=DAY_AND_NEXT),
                "stores",
                "policy",
            ],
            group_name="lake",
            kinds={"duckdb", "parquet"},
            owners=["team:marketing"],
            description='The "Effective Notifications" lake: each sent notification with the transactions '
            "credited to it (same customer, any store of the same ally, in (event_time, event_time + "
            "attribution window]); a transaction goes to the latest such notification only. Partitioned by "
            "the notification's date.",
        ),
        dg.AssetSpec(
            "holdout_conversions",
            deps=[
                dg.AssetDep("notifications", partition_mapping=DAY_AND_NEXT),
                dg.AssetDep("transactions", partition_mapping=DAY_AND_NEXT),
                "stores",
                "policy",
            ],
            group_name="lake",
            kinds={"duckdb", "parquet"},
            owners=["team:marketing"],
            description="The control group measured the same way: holdout entries (decided but never "
            "sent) with the transactions that followed them within the attribution window.",
        ),
    ],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def effective_notifications(context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource):
    the_lake, con = lake.lake(), connect()
    policy = policy_of(the_lake)
    window = policy.attribution_window_minutes
    effective = holdout = 0
    for d in sorted(context.partition_keys):
        with building(the_lake, "effective_notifications", d, credits_next_day(policy)):
            e, h = attribute_date(con, the_lake, d, window)
        effective, holdout = effective + e, holdout + h
    warehouse.publish(the_lake)
    files = files_sql(the_lake, "effective_notifications", list(context.partition_keys))
    notes, amount = (
        con.execute(f"SELECT count(DISTINCT notification_id), coalesce(sum(amount), 0) FROM {files}").fetchone()
        if files
        else (0, 0)
    )
    yield dg.MaterializeResult(
        asset_key="effective_notifications",
        metadata={
            **(
                table_metadata(con, f"SELECT * FROM {files}", "effective_notifications", "purchased_at")
                if files
                else {}
            ),
            "dagster/row_count": effective,
            "effective_notifications": int(notes),
            "attributed_amount": float(amount),
            "attribution_window_minutes": float(window),
        },
    )
    yield dg.MaterializeResult(asset_key="holdout_conversions", metadata={"dagster/row_count": holdout})
