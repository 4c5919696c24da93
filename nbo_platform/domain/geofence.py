"""Geofences around allies' stores, and which location pings hit and enter them.

The contract's rule: pings less precise than ``max_accuracy_m`` are ignored (a missing accuracy counts
as precise). A *hit* is a ping whose great-circle distance to a store is at most ``radius_m``, or that
lies inside the store's polygon when the store has one. A customer *enters* a fence at a hit whose
previous precise ping was outside that fence, or at the customer's first ping ever. The state needed
across files and partitions (each customer's last precise ping and the fences it was inside) is a
small table carried from one computation to the next (:class:`GeofenceResult.state`).

How it scales: every fence covers the cells of a grid (about as wide as the median fence) its bounding box
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
# Grid cell size: about the size of a typical fence, so a ping meets a handful of candidate fences.
MIN_CELL_DEG, MAX_CELL_DEG = 0.001, 0.05


def haversine_sql(lat1: str, lon1: str, lat2: str, lon2: str) -> str:
    """Great-circle distance in metres between two points given in degrees (SQL expression)."""
    return (
        f"(2 * {EARTH_RADIUS_M} * asin(sqrt("
        f"pow(sin(radians({lat2} - {lat1}) / 2), 2) + "
        f"cos(radians({lat1})) * cos(radians({lat2})) * pow(sin(radians({lon2} - {lon1}) / 2), 2))))"
    )


def haversine_within_sql(lat1: str, lon1: str, lat2: str, lon2: str, cos_lat2: str, max_hav: str) -> str:
    """``haversine <= r`` without asin/sqrt: the haversine term against a precomputed threshold.

    ``max_hav`` is :func:`haversine_threshold_sql` of ``r`` and ``cos_lat2`` is ``cos(radians(lat2))``
    (both per fence, computed once); the comparison is equivalent because asin and sqrt are monotonic.
    """
    return (
        f"(pow(sin(radians({lat2} - {lat1}) / 2), 2) + "
        f"cos(radians({lat1})) * {cos_lat2} * pow(sin(radians({lon2} - {lon1}) / 2), 2) <= {max_hav})"
    )


def haversine_threshold_sql(radius_m: str) -> str:
    return f"pow(sin({radius_m} / (2 * {EARTH_RADIUS_M})), 2)"


def haversine_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    """The same distance in NumPy (vectorized)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(np.asarray(lon2) - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(a))


def _grid(cell_deg: float) -> tuple[int, int, int]:
    """Offsets and row length that number the cells of a ``cell_deg`` grid over the globe."""
    return int(np.ceil(90 / cell_deg)) + 1, int(np.ceil(180 / cell_deg)) + 1, int(np.ceil(360 / cell_deg)) + 3


def cell_key_sql(lat: str, lon: str, cell_deg: float) -> str:
    """The grid cell of a point as one BIGINT (row-major over the globe)."""
    lat_off, lon_off, span = _grid(cell_deg)
    return f"((floor({lat} / {cell_deg})::BIGINT + {lat_off}) * {span} + floor({lon} / {cell_deg})::BIGINT + {lon_off})"


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
    cell_deg: float  # grid cell size (degrees) used to prefilter candidate fences

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
        # Cells about as wide as the median fence: each ping meets a few candidates, each fence a few cells.
        span = (df["max_lat"] - df["min_lat"]).median() if len(df) else MAX_CELL_DEG
        cell_deg = float(np.clip(round(float(span), 4) or MIN_CELL_DEG, MIN_CELL_DEG, MAX_CELL_DEG))
        return cls(df[cols], polys, cell_deg)

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Temp tables ``geo_fences`` and ``geo_fence_cells`` (every grid cell a fence touches, with the fence)."""
        con.register("geo_fences_df", self.stores.assign(fence_row=np.arange(len(self.stores))))
        con.execute("CREATE OR REPLACE TEMP TABLE geo_fences AS SELECT * FROM geo_fences_df")
        con.unregister("geo_fences_df")
        c = self.cell_deg
        lat_off, lon_off, span = _grid(c)
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE geo_fence_cells AS
            WITH spans AS (
                SELECT *, floor(min_lat / {c})::BIGINT AS lat0, floor(max_lat / {c})::BIGINT AS lat1,
                       floor(min_lon / {c})::BIGINT AS lon0, floor(max_lon / {c})::BIGINT AS lon1
                FROM geo_fences)
            SELECT (la + {lat_off}) * {span} + lo + {lon_off} AS cell, fence_row, store_id, ally_id, lat, lon,
                   radius_m, is_polygon, min_lat, max_lat, min_lon, max_lon, cos(radians(lat)) AS cos_lat,
                   {haversine_threshold_sql("radius_m")} AS max_hav
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
    precise_sql = f"accuracy_m IS NULL OR accuracy_m <= {float(max_accuracy_m)}"
    total, precise = con.execute(f"SELECT count(*), count(*) FILTER ({precise_sql}) FROM ({pings})").fetchone()
    buckets = max(1, -(-int(precise) // bucket_rows))
    # One pass reads the input where it is; several passes read a copy instead of the source each time.
    input_kind = "VIEW" if buckets == 1 else "TABLE"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP {input_kind} geo_input AS
        SELECT customer_id, event_time, lat, lon, accuracy_m, {cell_key_sql("lat", "lon", fences.cell_deg)} AS cell
        FROM ({pings}) WHERE {precise_sql}
        """
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE geo_hits (customer_id BIGINT, store_id BIGINT, ally_id BIGINT, "
        "hit_at TIMESTAMPTZ, distance_m DOUBLE, is_entry BOOLEAN, lat DOUBLE, lon DOUBLE, accuracy_m DOUBLE)"
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE geo_state ({STATE_COLUMNS})")
    for b in range(buckets):
        in_bucket = "true" if buckets == 1 else f"((customer_id % {buckets}) + {buckets}) % {buckets} = {b}"
        _bucket(con, fences, in_bucket)
    con.execute(f"DROP {input_kind} geo_input")
    for table in ("geo_pings", "geo_raw_hits", "geo_polygon_hits"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return GeofenceResult("geo_hits", "geo_state", int(total), int(total - precise))


def _bucket(con: duckdb.DuckDBPyConnection, fences: Fences, in_bucket: str) -> None:
    # Each precise ping with the time of the customer's previous precise ping (here or in the prior
    # state) and whether it is the customer's last one.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE geo_pings AS
        SELECT customer_id, event_time, lat, lon, accuracy_m, cell, prev_time, next_time IS NULL AS is_last
        FROM (
            SELECT *, lag(event_time) OVER w AS prev_time, lead(event_time) OVER w AS next_time
            FROM (SELECT *, false AS is_prior FROM geo_input WHERE {in_bucket}
                  UNION ALL
                  SELECT customer_id, last_ping_at, NULL, NULL, NULL, NULL, true FROM geo_prior WHERE {in_bucket})
            WINDOW w AS (PARTITION BY customer_id ORDER BY event_time)
        )
        WHERE NOT is_prior
        """
    )
    # Pings in a cell the fence touches and inside its bounding box; circles are decided by distance,
    # polygons by shapely.
    candidate = "p.lat BETWEEN f.min_lat AND f.max_lat AND p.lon BETWEEN f.min_lon AND f.max_lon"
    inside_polygon = _polygon_hits(con, fences, candidate)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE geo_raw_hits AS
        SELECT p.customer_id, f.store_id, f.ally_id, f.lat AS store_lat, f.lon AS store_lon, p.event_time AS hit_at,
               p.prev_time, p.is_last, p.lat, p.lon, p.accuracy_m
        FROM geo_pings p JOIN geo_fence_cells f ON f.cell = p.cell
        WHERE NOT f.is_polygon AND {candidate}
          AND {haversine_within_sql("p.lat", "p.lon", "f.lat", "f.lon", "f.cos_lat", "f.max_hav")}
        UNION ALL
        SELECT p.customer_id, f.store_id, f.ally_id, f.lat, f.lon, p.event_time, p.prev_time, p.is_last, p.lat, p.lon,
               p.accuracy_m
        FROM {inside_polygon} i JOIN geo_pings p ON p.rowid = i.ping_row JOIN geo_fences f ON f.fence_row = i.fence_row
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
        SELECT h.customer_id, h.store_id, h.ally_id, h.hit_at,
               {haversine_sql("h.lat", "h.lon", "h.store_lat", "h.store_lon")} AS distance_m,
               i.store_id IS NULL AS is_entry, h.lat, h.lon, h.accuracy_m
        FROM geo_raw_hits h
        LEFT JOIN inside i ON i.customer_id = h.customer_id AND i.store_id = h.store_id AND i.at = h.prev_time
        """
    )
    # State: each customer's last precise ping and the fences it was inside; customers without new
    # pings keep their prior state.
    con.execute(
        f"""
        INSERT INTO geo_state
        WITH now_inside AS (
            SELECT customer_id, list(store_id ORDER BY store_id) AS ids FROM geo_raw_hits WHERE is_last
            GROUP BY customer_id
        )
        SELECT p.customer_id, p.event_time, coalesce(n.ids, []::BIGINT[])
        FROM geo_pings p LEFT JOIN now_inside n USING (customer_id) WHERE p.is_last
        UNION ALL
        SELECT customer_id, last_ping_at, inside_store_ids FROM geo_prior
        WHERE {in_bucket} AND customer_id NOT IN (SELECT customer_id FROM geo_pings)
        """
    )


def _polygon_hits(con: duckdb.DuckDBPyConnection, fences: Fences, candidate: str) -> str:
    """Pings inside a polygon fence, as a temp table ``(ping_row, fence_row)`` (rows of ``geo_pings``)."""
    name = "geo_polygon_hits"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} (ping_row BIGINT, fence_row BIGINT)")
    if not fences.stores["is_polygon"].any():
        return name
    cand = con.execute(
        f"""
        SELECT p.rowid AS ping_row, f.fence_row, p.lon, p.lat
        FROM geo_pings p JOIN geo_fence_cells f ON f.cell = p.cell WHERE f.is_polygon AND {candidate}
        """
    ).fetch_arrow_table()
    rows = cand.column("fence_row").to_numpy()
    lon, lat = cand.column("lon").to_numpy(), cand.column("lat").to_numpy()
    inside = shapely.contains_xy(fences.polygons[rows], lon, lat)
    # A point exactly on the boundary is inside the fence (as "at most radius_m" is for circles).
    on_edge = np.flatnonzero(~inside)
    if len(on_edge):
        inside[on_edge] = shapely.intersects(fences.polygons[rows[on_edge]], shapely.points(lon[on_edge], lat[on_edge]))
    kept = cand.select(["ping_row", "fence_row"]).filter(pa.array(inside))
    con.register(f"{name}_arrow", kept)
    con.execute(f"INSERT INTO {name} SELECT * FROM {name}_arrow")
    con.unregister(f"{name}_arrow")
    return name


def out_of_order_customers(
    con: duckdb.DuckDBPyConnection, pings: str, prior_state: str, table: str = "geo_late"
) -> int:
    """Customers with a ping at or before their last already-processed ping, as temp table ``table``; their count."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT DISTINCT p.customer_id "
        f"FROM ({pings}) p JOIN ({prior_state}) s USING (customer_id) WHERE p.event_time <= s.last_ping_at"
    )
    (n,) = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(n)
