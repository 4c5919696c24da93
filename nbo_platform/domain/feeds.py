"""Schemas of the landing feeds and reference tables (the data contract, as code).

One declaration per feed drives the single ingestion mechanism in ``landing.py``: column types,
required columns, value checks, the de-duplication key and the column that gives the event date.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnType = Literal["string", "int", "float", "timestamp", "bool"]
# The DuckDB type of each column type (as DuckDB names it in DESCRIBE).
SQL_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
    "bool": "BOOLEAN",
}

CHANNELS = ("sms", "push", "email", "voice")


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    required: bool = True
    # SQL predicate over the typed value (``{c}`` is the column) and the reason given when it fails.
    check: str | None = None
    check_reason: str | None = None

    @property
    def sql_type(self) -> str:
        return SQL_TYPES[self.type]


@dataclass(frozen=True)
class Feed:
    name: str  # folder under landing/ (or the reference file's stem)
    table: str  # lake table the accepted rows land in
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    event_time: str | None = None  # column whose UTC date partitions the table
    # Columns replaced by a salted SHA-256 at ingestion: never needed raw downstream.
    hashed: tuple[str, ...] = ()
    description: str = ""
    extra_checks: tuple[tuple[str, str], ...] = field(default=())  # (row predicate, reason)
    # Rows kept only when the customer version valid at the event time has location_opt_in true
    # (v2 "Consent at ingestion"): the others are discarded, counted, and stored nowhere.
    needs_location_consent: bool = False

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _range(lo: float, hi: float) -> str:
    return f"{{c}} BETWEEN {lo} AND {hi}"


CUSTOMER_COLUMNS: tuple[Column, ...] = (
    Column("customer_id", "int"),
    Column("first_name", "string", required=False),
    Column("last_name", "string", required=False),
    Column("email", "string", required=False, check="{c} LIKE '%_@_%'", check_reason="not an email address"),
    Column("phone", "string", required=False),
    Column("gender", "string", required=False),
    Column("income", "int", check="{c} >= 0", check_reason="negative"),
    Column("fico", "int", check=_range(300, 850), check_reason="outside [300, 850]"),
    Column("location_opt_in", "bool", required=False),
    Column("marketing_opt_in", "bool", required=False),
    Column(
        "preferred_channel",
        "string",
        required=False,
        check="{c} IN " + str(CHANNELS),
        check_reason="not one of " + ", ".join(CHANNELS),
    ),
    Column("updated_at", "timestamp"),
)

CUSTOMER_UPDATES = Feed(
    name="customers",
    table="customer_updates",
    columns=CUSTOMER_COLUMNS,
    key=("customer_id", "updated_at"),
    event_time="updated_at",
    description="Customer change events (CDC): each row is a new version of a customer's profile.",
)

CUSTOMER_ACTIVITY = Feed(
    name="customer_activity",
    table="customer_activity",
    columns=(
        Column("customer_id", "int"),
        Column("activity_id", "int"),
        Column("ip_address", "string", required=False),
        Column("activity_type", "string"),
        Column("propensity_to_buy", "float", check=_range(0, 1), check_reason="outside [0, 1]"),
        # Optional by contract: a missing event_time means the time the file was ingested.
        Column("event_time", "timestamp", required=False),
    ),
    key=("activity_id",),
    event_time="event_time",
    hashed=("ip_address",),
    description="Customers' banking activity (branch visits, deposits, app and web sessions).",
)

LOCATION_PINGS = Feed(
    name="location_pings",
    table="location_pings",
    columns=(
        Column("customer_id", "int"),
        Column("event_time", "timestamp"),
        Column("lat", "float", check=_range(-90, 90), check_reason="latitude outside [-90, 90]"),
        Column("lon", "float", check=_range(-180, 180), check_reason="longitude outside [-180, 180]"),
        Column("accuracy_m", "float", required=False, check="{c} >= 0", check_reason="negative accuracy"),
    ),
    key=("customer_id", "event_time"),
    event_time="event_time",
    description="Location pings of customers' mobile app, kept only for customers with location consent.",
    needs_location_consent=True,
)

TRANSACTIONS = Feed(
    name="transactions",
    table="transactions",
    columns=(
        # Text (v2 "Identifiers"): card networks and core banking use alphanumeric ids; an integer is its decimal text.
        Column("transaction_id", "string"),
        Column("customer_id", "int"),
        Column("store_id", "int"),
        Column("amount", "float", check="{c} >= 0", check_reason="negative amount"),
        Column("event_time", "timestamp"),
    ),
    key=("transaction_id",),
    event_time="event_time",
    description="Card purchases at stores of the bank's allies.",
)

LANDING_FEEDS: dict[str, Feed] = {
    f.name: f for f in (CUSTOMER_UPDATES, CUSTOMER_ACTIVITY, LOCATION_PINGS, TRANSACTIONS)
}

# Reference tables go through the same validation; they are snapshots, so they have no event date.
# A reference customer row without updated_at is valid from the beginning of time.
REFERENCE_CUSTOMERS = Feed(
    name="reference/customers",
    table="customers",
    columns=tuple(Column(c.name, c.type, required=False) if c.name == "updated_at" else c for c in CUSTOMER_COLUMNS),
    key=("customer_id", "updated_at"),
    description="The customer snapshot the marketing team maintains.",
)

OFFERS = Feed(
    name="reference/offers",
    table="offers",
    columns=(
        Column("offer_id", "int"),
        Column("offer_name", "string"),
        Column("offer_url", "string", required=False),
    ),
    key=("offer_id",),
    description="The offers the bank can make.",
)

ALLIES = Feed(
    name="reference/allies",
    table="allies",
    columns=(
        Column("ally_id", "int"),
        Column("ally_name", "string"),
        Column("category", "string", required=False),
    ),
    key=("ally_id",),
    description="The bank's allies (retail partners) whose stores carry campaigns.",
)

STORES = Feed(
    name="reference/stores",
    table="stores",
    columns=(
        Column("store_id", "int"),
        Column("ally_id", "int"),
        Column("store_name", "string", required=False),
        Column("lat", "float", check=_range(-90, 90), check_reason="latitude outside [-90, 90]"),
        Column("lon", "float", check=_range(-180, 180), check_reason="longitude outside [-180, 180]"),
        Column("radius_m", "float", check="{c} > 0 AND {c} <= 50000", check_reason="radius outside (0, 50000] m"),
        Column("geometry_wkt", "string", required=False),
    ),
    key=("store_id",),
    description="Allies' stores and their geofences: a circle (lat, lon, radius_m) or a polygon (geometry_wkt).",
)

CAMPAIGNS = Feed(
    name="reference/campaigns",
    table="campaigns",
    columns=(
        Column("campaign_id", "int"),
        Column("ally_id", "int"),
        Column("offer_text", "string"),
        Column("starts_at", "timestamp"),
        Column("ends_at", "timestamp"),
        Column("priority", "int"),
        Column("holdout_pct", "float", check=_range(0, 100), check_reason="outside [0, 100]"),
    ),
    key=("campaign_id",),
    description="Allies' campaigns: the offer text, when it runs, its priority and its holdout share.",
    extra_checks=(
        ("t_starts_at IS NULL OR t_ends_at IS NULL OR t_ends_at > t_starts_at", "ends_at: not after starts_at"),
    ),
)
