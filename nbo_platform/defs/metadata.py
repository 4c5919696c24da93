"""What the Dagster UI shows about a materialization: column schema, a preview, pictures.

Previews show what an analyst may see: the columns of the warehouse view of the table (contacts
left out or masked, see ``warehouse.TABLES``), never the lake copy's raw email, phone or address.
"""

from __future__ import annotations

import datetime as dt
import decimal

import dagster as dg
import duckdb

from nbo_platform import charts
from nbo_platform.warehouse import TABLES_BY_LAKE_TABLE, analyst_columns_sql

PREVIEW_ROWS = 5

# One meaning per column name across the platform's tables (the contract's vocabulary).
COLUMN_DOCS: dict[str, str] = {
    "customer_id": "Customer identifier.",
    "activity_id": "Banking activity identifier (unique per activity).",
    "transaction_id": "Purchase identifier (unique per transaction).",
    "notification_id": "Deterministic id of a geofence entry's decision (md5 of customer, store, entry time).",
    "store_id": "Ally store identifier.",
    "ally_id": "Ally (partner business) identifier.",
    "campaign_id": "Campaign that applied at the entry (null when none applied).",
    "offer_id": "Offer picked by the rules.",
    "rule_id": "The first rule that matched (or `default`).",
    "event_time": "When the event happened (UTC).",
    "hit_at": "Time of the ping inside the fence (UTC).",
    "date": "UTC event date: the partition.",
    "lat": "Latitude, WGS84 degrees.",
    "lon": "Longitude, WGS84 degrees.",
    "accuracy_m": "GPS accuracy reported with the ping, metres (null: precise).",
    "distance_m": "Great-circle distance from the ping to the store's point, metres.",
    "is_entry": "True when the previous precise ping of the customer was outside this fence.",
    "status": "`sent` or `suppressed`.",
    "reason": "Why: sent, holdout, throttled, no_campaign, expired, no_consent, unknown_customer.",
    "channel": "Delivery channel: sms, push, email or voice.",
    "customer_version": "Version of the customer profile valid at the event.",
    "decided_at": "When the decision was recorded.",
    "amount": "Purchase amount.",
    "minutes_to_purchase": "Minutes from the notification to the purchase.",
    "source_file": "Landing file the row came from.",
    "source_line": "Line (or row) in that file.",
    "ingested_at": "When the file was ingested.",
    "email_hash": "Salted SHA-256 of the email address.",
    "phone_hash": "Salted SHA-256 of the phone number.",
    "ip_address_hash": "Salted SHA-256 of the IP address.",
    "propensity_to_buy": "Model score in [0, 1].",
    "income": "Yearly income of the customer version.",
    "fico": "FICO score of the customer version.",
}


def _plain(value: object) -> str | int | float | bool | None:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def table_metadata(con: duckdb.DuckDBPyConnection, relation: str, lake_table: str, order_by: str | None = None) -> dict:
    """Column schema and a small preview of ``relation`` (SQL) as analysts see ``lake_table``."""
    visible = f"SELECT {analyst_columns_sql(TABLES_BY_LAKE_TABLE.get(lake_table))} FROM ({relation})"
    described = con.execute(f"DESCRIBE {visible}").fetchall()
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name, str(kind), description=COLUMN_DOCS.get(name)) for name, kind, *_ in described]
    )
    names = [name for name, *_ in described]
    order = f"ORDER BY {order_by}" if order_by else ""
    rows = con.execute(f"SELECT * FROM ({visible}) {order} LIMIT {PREVIEW_ROWS}").fetchall()
    records = [dg.TableRecord({n: _plain(v) for n, v in zip(names, row, strict=True)}) for row in rows]
    return {"dagster/column_schema": schema, "preview": dg.MetadataValue.table(records, schema=schema)}


def image(png: bytes, alt: str) -> dg.MarkdownMetadataValue:
    return dg.MetadataValue.md(charts.markdown_image(png, alt))
