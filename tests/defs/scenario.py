"""Hand-written scenarios: one ally with two stores, one campaign, customer 7 (and any others asked for)."""

from datetime import UTC, datetime

import pandas as pd

from nbo_platform.domain.geofence import METRES_PER_DEGREE
from nbo_platform.recipe import OFFERS

DAY1 = datetime(2025, 6, 2, tzinfo=UTC)
STORE = (4.65, -74.05)


def customer_row(cid: int, location_opt_in: bool = True, channel: str = "sms", updated_at: str = "") -> str:
    return (
        f"{cid},Ana,Diaz,ana{cid}@example.com,+57 300 12345{cid:02d},Female,50000,700,"
        f"{str(location_opt_in).lower()},true,{channel},{updated_at}\n"
    )


CUSTOMERS_HEADER = (
    "customer_id,first_name,last_name,email,phone,gender,income,fico,location_opt_in,marketing_opt_in,"
    "preferred_channel,updated_at\n"
)


def write_reference(settings, holdout: float = 0.0, customers: tuple[int, ...] = (), offer_text="10% off") -> None:
    """The scenario's reference data; ``customers``: more customers (ids) besides 7, opted in."""
    ref = settings.reference_dir
    ref.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(OFFERS, columns=["offer_id", "offer_name", "offer_url"]).to_csv(ref / "offers.csv", index=False)
    (ref / "allies.csv").write_text("ally_id,ally_name,category\n1,Cafe Andes,coffee\n")
    (ref / "stores.csv").write_text(
        "store_id,ally_id,store_name,lat,lon,radius_m\n"
        f"10,1,Cafe 10,{STORE[0]},{STORE[1]},100\n11,1,Cafe 11,4.70,-74.05,100\n"
    )
    (ref / "campaigns.csv").write_text(
        "campaign_id,ally_id,offer_text,starts_at,ends_at,priority,holdout_pct\n"
        f"5,1,{offer_text},2025-06-01T00:00:00Z,2025-06-10T00:00:00Z,1,{holdout}\n"
    )
    (ref / "customers.csv").write_text(
        "customer_id,first_name,last_name,email,phone,gender,income,fico,location_opt_in,marketing_opt_in,"
        "preferred_channel,updated_at\n7,Ana,Diaz,ana@example.com,+57 300 1234567,Female,50000,700,true,true,sms,\n"
        + "".join(customer_row(c) for c in customers)
    )


def drop(settings, feed: str, name: str, rows: list[dict]) -> None:
    folder = settings.landing_dir / feed
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / name, index=False)


def ping(at: datetime, inside: bool = True, customer: int = 7) -> dict:
    lat = STORE[0] if inside else STORE[0] + 1000 / METRES_PER_DEGREE
    return {"customer_id": customer, "event_time": at.isoformat(), "lat": lat, "lon": STORE[1], "accuracy_m": 5}


def purchase(tid: int, at: datetime, store: int = 11) -> dict:
    return {"transaction_id": tid, "customer_id": 7, "store_id": store, "amount": 12.5, "event_time": at.isoformat()}


def pii_in_warehouse(warehouse_path) -> dict[str, int]:
    """Per table.column of the warehouse, the rows whose text holds an e-mail, phone or IP address."""
    from nbo_platform.domain.pii import PATTERNS
    from nbo_platform.warehouse import connect_read_only

    any_pii = "|".join(f"(?:{p})" for p, _ in PATTERNS)
    con = connect_read_only(warehouse_path)
    found = {}
    try:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE data_type = 'VARCHAR' OR data_type LIKE '%[]' ORDER BY ALL"
        ).fetchall()
        for table, column in columns:
            (n,) = con.execute(
                f'SELECT count(*) FROM "{table}" WHERE regexp_matches("{column}"::VARCHAR, ?)', [any_pii]
            ).fetchone()
            if n:
                found[f"{table}.{column}"] = n
    finally:
        con.close()
    return found
