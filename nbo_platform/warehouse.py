"""The analysts' warehouse: ``warehouse.duckdb``, every output table as a view over the lake.

DuckDB allows one writer per file, and a reader holding the file open blocks a writer. The pipeline
therefore never writes into the warehouse analysts have open: it builds a new small file of views
(no data; the views read the lake's Parquet at query time, so they always show the latest rows)
and renames it over the old one. A reader keeps the file it opened; the next connection sees the
new one. Computation happens in in-memory DuckDB connections over Parquet (``duck.py``).

Columns with raw contact data or IP addresses never reach the warehouse: the views leave them out
or mask them, and keep the salted hashes instead.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

from nbo_platform.domain.pii import mask_pii_sql
from nbo_platform.lake import Lake
from nbo_platform.mart_dates import MARTS


@dataclass(frozen=True)
class WarehouseTable:
    name: str
    lake_table: str
    partitioned: bool = True
    exclude: tuple[str, ...] = ()
    replace: tuple[tuple[str, str], ...] = ()  # (column, SQL expression)
    description: str = ""


TABLES: tuple[WarehouseTable, ...] = (
    WarehouseTable(
        "customers",
        "customers",
        False,
        exclude=("email", "phone"),
        description="Customer versions (valid_from/valid_to); contacts as salted hashes.",
    ),
    WarehouseTable(
        "customer_updates",
        "customer_updates",
        exclude=("email", "phone"),
        description="Customer change events as ingested.",
    ),
    WarehouseTable("customer_activity", "customer_activity", description="Customers' banking activity."),
    WarehouseTable("location_pings", "location_pings", description="Location pings as ingested."),
    WarehouseTable("transactions", "transactions", description="Purchases at allies' stores."),
    WarehouseTable("offers", "offers", False, description="The offers the bank can make."),
    WarehouseTable("nbo_rules", "nbo_rules", False, description="The offer rules in force."),
    WarehouseTable("next_best_offer", "next_best_offer", description="The offer picked for each activity."),
    WarehouseTable(
        "next_best_offer_lookup", "next_best_offer_lookup", description="next_best_offer with the offer's name and URL."
    ),
    WarehouseTable(
        "next_best_offer_unassigned",
        "next_best_offer_unassigned",
        description="Activities that got no offer, with the reason.",
    ),
    WarehouseTable("allies", "allies", False, description="The bank's allies."),
    WarehouseTable("stores", "stores", False, description="Allies' stores and their geofences."),
    WarehouseTable("campaigns", "campaigns", False, description="Allies' campaigns: window, priority, holdout share."),
    WarehouseTable(
        "geofence_hits", "geofence_hits", description="Pings inside a store's fence, with distance and is_entry."
    ),
    WarehouseTable(
        "notifications", "notifications", description="One decision per geofence entry: sent or suppressed, reason."
    ),
    WarehouseTable(
        "all_notifications",
        "all_notifications",
        exclude=("email", "phone", "address", "last_name"),
        description="Every sent notification, enriched (contacts only as salted hashes).",
    ),
    WarehouseTable(
        "delivery_log",
        "delivery_log",
        replace=(("error", mask_pii_sql("error")),),
        description="Each hand-over of a sent notification to its channel: delivered once, or failed with the error.",
    ),
    WarehouseTable(
        "effective_notifications",
        "effective_notifications",
        description="Sent notifications with the purchases credited to them.",
    ),
    WarehouseTable(
        "holdout_conversions",
        "holdout_conversions",
        description="Holdout entries (control group) with the purchases that followed them.",
    ),
    *(WarehouseTable(m, f"marts/{m}", False, description=f"dbt mart {m} (see docs/analysts.md).") for m in MARTS),
    WarehouseTable(
        "quarantine",
        "quarantine",
        False,
        replace=(("raw", mask_pii_sql("raw")), ("reason", mask_pii_sql("reason"))),
        description="Rejected input rows with feed, file, line and reason (contacts and addresses masked).",
    ),
    WarehouseTable(
        "landing_manifest",
        "landing_manifest",
        False,
        replace=(("error", mask_pii_sql("error")),),
        description="Every landing file ingested, with its row counts (errors with contacts masked).",
    ),
)


TABLES_BY_LAKE_TABLE = {t.lake_table: t for t in TABLES}


def analyst_columns_sql(t: WarehouseTable | None) -> str:
    """The select list analysts see of a lake table: contacts left out or masked."""
    if t is None or not (t.exclude or t.replace):
        return "*"
    star = f"* EXCLUDE ({', '.join((*t.exclude, *(c for c, _ in t.replace)))})"
    return star + "".join(f", {expr} AS {c}" for c, expr in t.replace)


def view_sql(lake: Lake, t: WarehouseTable) -> str:
    return f"SELECT {analyst_columns_sql(t)} FROM {lake.scan_sql(t.lake_table, hive=t.partitioned)}"


def publish(lake: Lake, warehouse_path: Path, tables: tuple[WarehouseTable, ...] = TABLES) -> list[str]:
    """Rebuild the warehouse's views for every table the lake holds; returns the view names."""
    warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = warehouse_path.with_name(f".{warehouse_path.name}.{uuid.uuid4().hex}.tmp")
    published = []
    try:
        con = duckdb.connect(str(tmp))
        try:
            con.execute("SET TimeZone = 'UTC'")
            for t in tables:
                if not lake.has_files(t.lake_table):
                    continue
                con.execute(f"CREATE VIEW {t.name} AS {view_sql(lake, t)}")
                if t.description:
                    con.execute(f"COMMENT ON VIEW {t.name} IS '{t.description.replace(chr(39), chr(39) * 2)}'")
                published.append(t.name)
        finally:
            con.close()
        os.replace(tmp, warehouse_path)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
    return published


def connect_read_only(warehouse_path: Path) -> duckdb.DuckDBPyConnection:
    """How analysts (and tests) open the warehouse: read-only, never blocking the pipeline."""
    con = duckdb.connect(str(warehouse_path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    return con
