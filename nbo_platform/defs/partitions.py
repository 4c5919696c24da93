"""The daily partitions every event table shares (UTC dates of event time)."""

from __future__ import annotations

import dagster as dg

from nbo_platform.settings import load_settings

# end_offset=1: today's partition exists, so events of the current day are processed as they land.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=load_settings().partitions_start, end_offset=1, timezone="UTC"
)


def checked_dates(context: dg.AssetCheckExecutionContext, every_date: list[str]) -> list[str]:
    """The dates a partition-level check looks at: the partitions of the run it executes in (so its
    cost does not grow with history), or every date when the check is run on its own."""
    run = context.op_execution_context
    if run.has_partition_key or run.has_partition_key_range:
        return sorted(context.partition_keys)
    return sorted(every_date)
