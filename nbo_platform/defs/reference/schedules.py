"""Refreshing reference data the marketing team maintains."""

import dagster as dg

reference_job = dg.define_asset_job(
    "reference_refresh",
    selection=dg.AssetSelection.groups("reference"),
    description="Reload every reference table (offers, rules, customers, allies, stores, campaigns, policy) "
    "from `reference/`.",
)

reference_refresh_schedule = dg.ScheduleDefinition(
    name="reference_refresh_daily",
    job=reference_job,
    cron_schedule="0 5 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Reloads reference data every day at 05:00 UTC, before the business day's activity.",
)
