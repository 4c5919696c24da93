"""The daily partitions every event table shares (UTC dates of event time)."""

from __future__ import annotations

import dagster as dg

from nbo_platform.settings import load_settings

# end_offset=1: today's partition exists, so events of the current day are processed as they land.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=load_settings().partitions_start, end_offset=1, timezone="UTC"
)
