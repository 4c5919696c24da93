"""``nbo simulate``: the AWS demo, one customer travelling from A to B through the real pipeline.

A demo customer (opted in, push notifications, outside every campaign's holdout so the demo shows
offers) is added through the ``customers`` change feed; its pings along the street grid are dropped
into ``landing/location_pings/`` like any device's; ``nbo run`` processes them; the decisions for the
customer's geofence entries are read back from the lake.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from nbo_platform.domain.geofence import METRES_PER_DEGREE
from nbo_platform.duck import connect
from nbo_platform.lake import Lake
from nbo_platform.settings import Settings

SIM_CUSTOMER_BASE = 900_000_000
PING_EVERY_S = 30


@dataclass(frozen=True)
class Trip:
    start: tuple[float, float]
    end: tuple[float, float]
    speed_kmh: float
    at: datetime


def route(trip: Trip) -> list[tuple[datetime, float, float]]:
    """Pings every 30 s along the grid route (north-south, then east-west) at the trip's speed."""
    (lat0, lon0), (lat1, lon1) = trip.start, trip.end
    ns = abs(lat1 - lat0) * METRES_PER_DEGREE
    ew = abs(lon1 - lon0) * METRES_PER_DEGREE * np.cos(np.radians(lat1))
    speed = trip.speed_kmh / 3.6
    n = int(np.ceil((ns + ew) / speed / PING_EVERY_S)) + 1
    s = np.minimum(np.arange(n) * PING_EVERY_S * speed, ns + ew)
    lat = np.where(s < ns, lat0 + np.sign(lat1 - lat0) * s / METRES_PER_DEGREE, lat1)
    lon = np.where(
        s < ns, lon0, lon0 + np.sign(lon1 - lon0) * (s - ns) / (METRES_PER_DEGREE * np.cos(np.radians(lat1)))
    )
    return [
        (trip.at + timedelta(seconds=int(i * PING_EVERY_S)), float(a), float(b))
        for i, a, b in zip(range(n), lat, lon, strict=True)
    ]


def _bucket(customer_id: int, campaign_id: int) -> float:
    digest = hashlib.md5(f"{customer_id}:{campaign_id}".encode()).hexdigest()
    return (int(digest[:8], 16) % 10000) / 100.0


def pick_customer(lake: Lake) -> int:
    """A new customer id outside every campaign's holdout (same hash as the pipeline)."""
    con = connect()
    campaigns = (
        con.execute(f"SELECT campaign_id, holdout_pct FROM {lake.scan_sql('campaigns', hive=False)}").fetchall()
        if lake.has_files("campaigns")
        else []
    )
    taken = set()
    if lake.has_files("customers"):
        taken = {
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT customer_id FROM {lake.scan_sql('customers', hive=False)} "
                f"WHERE customer_id >= {SIM_CUSTOMER_BASE}"
            ).fetchall()
        }
    cid = SIM_CUSTOMER_BASE + 1
    while cid in taken or any(_bucket(cid, c) < pct for c, pct in campaigns):
        cid += 1
    return cid


def default_start_time(lake: Lake) -> datetime:
    """A minute after the latest ping the feed has taken in (its watermark), else an hour ago: a trip
    earlier than the feed's watermark by more than the policy's ``max_delay_minutes`` would be
    ``expired`` (v2 "Time-bound offers"), the customer long gone from the stores it passed."""
    manifest = lake.table_dir("landing_manifest") / "location_pings"
    latest = None
    if manifest.exists() and any(manifest.glob("*.parquet")):
        (latest,) = (
            connect()
            .execute(f"SELECT max(max_event_time) FROM read_parquet('{manifest}/*.parquet', union_by_name = true)")
            .fetchone()
        )
    if latest is None:
        return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    return (latest + timedelta(minutes=1)).replace(second=0, microsecond=0)


def write_trip(settings: Settings, trip: Trip, customer_id: int) -> list[str]:
    stamp = trip.at.strftime("%Y%m%dT%H%M%S")
    cust = settings.landing_dir / "customers" / "simulate" / f"sim-{customer_id}-{stamp}.jsonl"
    pings = settings.landing_dir / "location_pings" / "simulate" / f"sim-{customer_id}-{stamp}.jsonl"
    for p in (cust, pings):
        p.parent.mkdir(parents=True, exist_ok=True)
    cust.write_text(
        json.dumps(
            {
                "customer_id": customer_id,
                "first_name": "Demo",
                "last_name": "Traveller",
                "income": 90000,
                "fico": 720,
                "location_opt_in": True,
                "marketing_opt_in": True,
                "preferred_channel": "push",
                "updated_at": (trip.at - timedelta(minutes=1)).isoformat(),
            }
        )
        + "\n"
    )
    points = route(trip)
    pings.write_text(
        "".join(
            json.dumps(
                {"customer_id": customer_id, "event_time": t.isoformat(), "lat": la, "lon": lo, "accuracy_m": 5.0}
            )
            + "\n"
            for t, la, lo in points
        )
    )
    return [str(cust), str(pings)]


def entries_of(lake: Lake, customer_id: int) -> list[dict]:
    """Every decision about the customer's geofence entries, in time order, with store and offer."""
    if not lake.has_files("notifications"):
        return []
    con = connect()
    rows = con.execute(
        f"""
        SELECT n.event_time, n.store_id, s.store_name, a.ally_name, n.status, n.reason, n.channel, k.offer_text,
               round(n.distance_m) AS distance_m
        FROM {lake.scan_sql("notifications")} n
        LEFT JOIN {lake.scan_sql("stores", hive=False)} s USING (store_id)
        LEFT JOIN {lake.scan_sql("allies", hive=False)} a ON a.ally_id = n.ally_id
        LEFT JOIN {lake.scan_sql("campaigns", hive=False)} k ON k.campaign_id = n.campaign_id
        WHERE n.customer_id = {int(customer_id)}
        ORDER BY n.event_time, n.store_id
        """
    ).fetchall()
    names = [c[0] for c in con.description]
    return [dict(zip(names, r, strict=True)) for r in rows]
