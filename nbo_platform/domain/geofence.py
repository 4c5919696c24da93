"""Geofences around allies' stores, and which location pings hit and enter them.

The contract's rule: pings less precise than ``max_accuracy_m`` are ignored (a missing accuracy counts
as precise). A *hit* is a ping whose great-circle distance to a store is at most ``radius_m``, or that
lies inside the store's polygon when the store has one. A customer *enters* a fence at a hit whose
previous precise ping was outside that fence, or at the customer's first ping ever. The state needed
across files and partitions (each customer's last precise ping and the fences it was inside) is a
small table carried from one computation to the next (:class:`GeofenceResult.state`).

How it scales: every fence covers the cells of a fixed grid (``CELL_DEG`` degrees) its bounding box
touches; a ping is only compared with the fences of its own cell (a hash join), never with all
stores. Circles are then tested with the haversine distance on a sphere of the Earth's mean radius
(against the WGS84 ellipsoid the error is at most about 0.6 % near the equator, about 1 m on a
200 m fence, well inside GPS accuracy; ``benchmarks/bench_geofence.py`` compares with a projected
geopandas join), polygons with shapely's vectorized ``contains_xy``. ``distance_m`` is always the
great-circle distance to the store's point (lat, lon), also for polygon fences.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
METRES_PER_DEGREE = 2 * np.pi * EARTH_RADIUS_M / 360
CELL_DEG = 0.01  # about 1.1 km of latitude: a city-sized fence touches a handful of cells
_CELL_LON_SPAN = 40_000  # cells per row of the key (longitude -180..180 at 0.01 degrees)


def haversine_sql(lat1: str, lon1: str, lat2: str, lon2: str) -> str:
    """Great-circle distance in metres between two points given in degrees (SQL expression)."""
    return (
        f"(2 * {EARTH_RADIUS_M} * asin(sqrt("
        f"pow(sin(radians({lat2} - {lat1}) / 2), 2) + "
        f"cos(radians({lat1})) * cos(radians({lat2})) * pow(sin(radians({lon2} - {lon1}) / 2), 2))))"
    )


def haversine_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    """The same distance in NumPy (vectorized)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(np.asarray(lon2) - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(a))


def cell_key_sql(lat: str, lon: str) -> str:
    return (
        f"((floor({lat} / {CELL_DEG})::BIGINT + 9000) * {_CELL_LON_SPAN} + (floor({lon} / {CELL_DEG})::BIGINT + 18000))"
    )


# --------------------------------------------------------------------------------------------
# Fences: validated store geometry
# --------------------------------------------------------------------------------------------


def polygon_problems(wkt: pd.Series) -> pd.Series:
    """The reason each WKT string is not a usable fence polygon (None where it is fine or absent)."""
    reasons = pd.Series([None] * len(wkt), index=wkt.index, dtype=object)
    present = wkt.notna() & (wkt.astype(str).str.strip() != "")
    if not present.any():
        return reasons
    geoms = shapely.from_wkt(wkt[present].astype(str).to_numpy(), on_invalid="ignore")
    out = []
    for text, g in zip(wkt[present], geoms, strict=True):  # one message per bad store, not a hot path
        if g is None:
            out.append(f"geometry_wkt: not valid WKT: {str(text)[:60]}")
        elif g.geom_type not in ("Polygon", "MultiPolygon"):
            out.append(f"geometry_wkt: not a polygon: {g.geom_type}")
        elif g.is_empty:
            out.append("geometry_wkt: empty polygon")
        elif not g.is_valid:
            out.append(f"geometry_wkt: invalid polygon: {shapely.is_valid_reason(g)}")
        else:
            minx, miny, maxx, maxy = g.bounds
            if not (minx >= -180 and maxx <= 180 and miny >= -90 and maxy <= 90):
                out.append("geometry_wkt: coordinates outside lon [-180, 180] / lat [-90, 90] (WKT is lon lat)")
            else:
                out.append(None)
    reasons[present] = out
    return reasons


@dataclass
class Fences:
    """Stores prepared for hit tests: one row per store, with bounding boxes and polygons."""

    stores: pd.DataFrame  # store_id, ally_id, lat, lon, radius_m, is_polygon, min/max lat/lon
    polygons: np.ndarray  # shapely geometry per row (None for circles)

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> Fences:
        df = df.reset_index(drop=True).copy()
        wkt = df["geometry_wkt"] if "geometry_wkt" in df else pd.Series([None] * len(df))
        present = wkt.notna() & (wkt.astype(str).str.strip() != "")
        polys = np.full(len(df), None, dtype=object)
        if present.any():
            polys[present.to_numpy()] = shapely.from_wkt(wkt[present].astype(str).to_numpy())
        df["is_polygon"] = present.to_numpy()
        dlat = df["radius_m"] / METRES_PER_DEGREE
        dlon = dlat / np.cos(np.radians(df["lat"])).clip(lower=1e-6)
        df["min_lat"], df["max_lat"] = df["lat"] - dlat, df["lat"] + dlat
        df["min_lon"], df["max_lon"] = df["lon"] - dlon, df["lon"] + dlon
        if present.any():
            bounds = shapely.bounds(polys[present.to_numpy()])
            idx = np.flatnonzero(present.to_numpy())
            df.loc[idx, "min_lon"], df.loc[idx, "min_lat"] = bounds[:, 0], bounds[:, 1]
            df.loc[idx, "max_lon"], df.loc[idx, "max_lat"] = bounds[:, 2], bounds[:, 3]
        cols = [
            "store_id",
            "ally_id",
            "lat",
            "lon",
            "radius_m",
            "is_polygon",
            "min_lat",
            "max_lat",
            "min_lon",
            "max_lon",
        ]
        return cls(df[cols], polys)

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Temp tables ``geo_fences`` and ``geo_fence_cells`` (fence -> every grid cell it touches)."""
        con.register("geo_fences_df", self.stores.assign(fence_row=np.arange(len(self.stores))))
        con.execute("CREATE OR REPLACE TEMP TABLE geo_fences AS SELECT * FROM geo_fences_df")
        con.unregister("geo_fences_df")
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE geo_fence_cells AS
            WITH spans AS (
                SELECT fence_row,
                       floor(min_lat / {CELL_DEG})::BIGINT AS lat0, floor(max_lat / {CELL_DEG})::BIGINT AS lat1,
                       floor(min_lon / {CELL_DEG})::BIGINT AS lon0, floor(max_lon / {CELL_DEG})::BIGINT AS lon1
                FROM geo_fences)
            SELECT fence_row, (la + 9000) * {_CELL_LON_SPAN} + (lo + 18000) AS cell
            FROM spans, range(lat0, lat1 + 1) AS r1(la), range(lon0, lon1 + 1) AS r2(lo)
            """
        )


# --------------------------------------------------------------------------------------------
# Hits and entries
# --------------------------------------------------------------------------------------------

STATE_COLUMNS = "customer_id BIGINT, last_ping_at TIMESTAMPTZ, inside_store_ids BIGINT[]"


@dataclass(frozen=True)
class GeofenceResult:
    hits: str  # temp table: customer_id, store_id, ally_id, hit_at, distance_m, is_entry, lat, lon, accuracy_m
    state: str  # temp table: customer_id, last_ping_at, inside_store_ids
    pings_read: int
    pings_imprecise: int


def empty_state_sql() -> str:
    return (
        "SELECT NULL::BIGINT customer_id, NULL::TIMESTAMPTZ last_ping_at, NULL::BIGINT[] inside_store_ids WHERE false"
    )


BUCKET_ROWS = 2_500_000  # precise pings per pass: bounds memory on a 10M-ping day


def geofence_hits(
    con: duckdb.DuckDBPyConnection,
    pings: str,
    fences: Fences,
    *,
    max_accuracy_m: float,
    prior_state: str | None = None,
    bucket_rows: int = BUCKET_ROWS,
) -> GeofenceResult:
    """Every hit of ``pings`` (a relation: customer_id, event_time, lat, lon, accuracy_m) with ``is_entry``.

    ``prior_state`` (customer_id, last_ping_at, inside_store_ids) is where each customer was before
    these pings; every ping must be later than its customer's ``last_ping_at`` (the caller checks).
    Returns temp tables of the hits and of the state after these pings. Entries only depend on one
    customer's pings, so large inputs are processed in buckets of customers (``bucket_rows`` precise
    pings each) to bound memory.
    """
    fences.register(con)
    prior = prior_state or empty_state_sql()
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE geo_prior AS SELECT customer_id, last_ping_at, inside_store_ids FROM ({prior})"
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE geo_input AS
        SELECT customer_id, event_time, lat, lon, accuracy_m FROM ({pings})
        WHERE accuracy_m IS NULL OR accuracy_m <= {float(max_accuracy_m)}
        """
    )
    (total,) = con.execute(f"SELECT count(*) FROM ({pings})").fetchone()
    (precise,) = con.execute("SELECT count(*) FROM geo_input").fetchone()
    buckets = max(1, -(-int(precise) // bucket_rows))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE geo_hits (customer_id BIGINT, store_id BIGINT, ally_id BIGINT, "
        "hit_at TIMESTAMPTZ, distance_m DOUBLE, is_entry BOOLEAN, lat DOUBLE, lon DOUBLE, accuracy_m DOUBLE)"
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE geo_state ({STATE_COLUMNS})")
    for b in range(buckets):
        _bucket(con, fences, f"((customer_id % {buckets}) + {buckets}) % {buckets} = {b}")
    return GeofenceResult("geo_hits", "geo_state", int(total), int(total - precise))


def _bucket(con: duckdb.DuckDBPyConnection, fences: Fences, in_bucket: str) -> None:
    # Each precise ping with the time of the customer's previous precise ping (here or in the prior state).
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE geo_pings AS
        SELECT customer_id, event_time, lat, lon, accuracy_m, prev_time, {cell_key_sql("lat", "lon")} AS cell
        FROM (
            SELECT *, lag(event_time) OVER (PARTITION BY customer_id ORDER BY event_time) AS prev_time
            FROM (SELECT *, false AS is_prior FROM geo_input WHERE {in_bucket}
                  UNION ALL
                  SELECT customer_id, last_ping_at, NULL, NULL, NULL, true FROM geo_prior WHERE {in_bucket})
        )
        WHERE NOT is_prior
        """
    )
    # Candidates: pings in a cell of the fence and inside its bounding box; circles are decided here.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE geo_candidates AS
        SELECT p.customer_id, p.event_time, p.prev_time, p.lat, p.lon, p.accuracy_m, f.fence_row, f.store_id,
               f.ally_id, f.is_polygon, {haversine_sql("p.lat", "p.lon", "f.lat", "f.lon")} AS distance_m,
               f.radius_m
        FROM geo_pings p
        JOIN geo_fence_cells c ON c.cell = p.cell
        JOIN geo_fences f ON f.fence_row = c.fence_row
        WHERE p.lat BETWEEN f.min_lat AND f.max_lat AND p.lon BETWEEN f.min_lon AND f.max_lon
        """
    )
    inside_polygon = _polygon_hits(con, fences)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE geo_raw_hits AS
        SELECT customer_id, store_id, ally_id, event_time AS hit_at, prev_time, distance_m, lat, lon, accuracy_m
        FROM geo_candidates WHERE NOT is_polygon AND distance_m <= radius_m
        UNION ALL
        SELECT c.customer_id, c.store_id, c.ally_id, c.event_time, c.prev_time, c.distance_m, c.lat, c.lon,
               c.accuracy_m
        FROM geo_candidates c SEMI JOIN {inside_polygon} i ON i.cand_row = c.rowid
        """
    )
    # Entry: the previous precise ping was not inside that fence.
    con.execute(
        f"""
        INSERT INTO geo_hits
        WITH inside AS (
            SELECT customer_id, hit_at AS at, store_id FROM geo_raw_hits
            UNION ALL
            SELECT customer_id, last_ping_at, unnest(inside_store_ids) FROM geo_prior WHERE {in_bucket}
        )
        SELECT h.customer_id, h.store_id, h.ally_id, h.hit_at, h.distance_m, i.store_id IS NULL AS is_entry,
               h.lat, h.lon, h.accuracy_m
        FROM geo_raw_hits h
        LEFT JOIN inside i ON i.customer_id = h.customer_id AND i.store_id = h.store_id AND i.at = h.prev_time
        """
    )
    con.execute(
        f"""
        INSERT INTO geo_state
        WITH last_ping AS (
            SELECT customer_id, max(event_time) AS last_ping_at FROM geo_pings GROUP BY customer_id
        ),
        now_inside AS (
            SELECT h.customer_id, list(h.store_id ORDER BY h.store_id) AS ids
            FROM geo_raw_hits h JOIN last_ping l ON l.customer_id = h.customer_id AND l.last_ping_at = h.hit_at
            GROUP BY h.customer_id
        )
        SELECT l.customer_id, l.last_ping_at, coalesce(n.ids, []::BIGINT[]) FROM last_ping l
        LEFT JOIN now_inside n USING (customer_id)
        UNION ALL
        SELECT customer_id, last_ping_at, inside_store_ids FROM geo_prior
        WHERE {in_bucket} AND customer_id NOT IN (SELECT customer_id FROM last_ping)
        """
    )


def _polygon_hits(con: duckdb.DuckDBPyConnection, fences: Fences) -> str:
    """Candidate rows inside their store's polygon, as a registered relation ``(cand_row)``."""
    name = "geo_polygon_hits"
    if not fences.stores["is_polygon"].any():
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} (cand_row BIGINT)")
        return name
    cand = con.execute(
        "SELECT rowid AS cand_row, fence_row, lon, lat FROM geo_candidates WHERE is_polygon"
    ).fetch_arrow_table()
    rows = cand.column("fence_row").to_numpy()
    inside = shapely.contains_xy(fences.polygons[rows], cand.column("lon").to_numpy(), cand.column("lat").to_numpy())
    # A point exactly on the boundary is inside the fence (as "at most radius_m" is for circles).
    on_edge = ~inside
    if on_edge.any():
        idx = np.flatnonzero(on_edge)
        pts = shapely.points(cand.column("lon").to_numpy()[idx], cand.column("lat").to_numpy()[idx])
        inside[idx] = shapely.intersects(fences.polygons[rows[idx]], pts)
    kept = pa.table({"cand_row": cand.column("cand_row").filter(pa.array(inside))})
    con.register(f"{name}_arrow", kept)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
    con.unregister(f"{name}_arrow")
    return name


def out_of_order_customers(con: duckdb.DuckDBPyConnection, pings: str, prior_state: str) -> int:
    """How many customers have a ping at or before their last already-processed ping."""
    (n,) = con.execute(
        f"""
        SELECT count(DISTINCT p.customer_id) FROM ({pings}) p JOIN ({prior_state}) s USING (customer_id)
        WHERE p.event_time <= s.last_ping_at
        """
    ).fetchone()
    return int(n)
