"""Geofences around allies' stores, and which location pings hit and enter them.

The contract's rule: pings less precise than ``max_accuracy_m`` are ignored (a missing accuracy counts
as precise). A *hit* is a ping whose great-circle distance to a store is at most ``radius_m``, or that
lies inside the store's polygon when the store has one. A customer *enters* a fence at a hit whose
previous precise ping was outside that fence, or at the customer's first ping ever. The state needed
across files and partitions (each customer's last precise ping and the fences it was inside) is a
small table carried from one computation to the next (:class:`GeofenceResult.state`).

How it scales: the fences are laid on a grid of cells about a quarter as wide as the median fence
(:class:`FenceGrid`); a ping is only compared with the fences whose bounding box touches its own
cell (a direct array lookup), never with all stores, so a ping meets little more than the fences it
is in. The candidates are tested in NumPy in cache-sized chunks of pings on all cores (NumPy releases
the GIL). Circles are decided by the haversine distance on a sphere of the Earth's mean radius
(against the WGS84 ellipsoid the error is at most about 0.6 % near the equator, about 1 m on a 200 m
fence, well inside GPS accuracy; ``benchmarks/bench_geofence.py`` compares with a projected geopandas
join), polygons by shapely's vectorized ``contains_xy``. ``distance_m`` is always the great-circle
distance to the store's point (lat, lon), also for polygon fences, and computed exactly as
:func:`haversine_m` does. Entries need each ping's predecessor: DuckDB sorts the pings by customer
and time, and a hit is an entry unless the same fence was hit by the previous ping of the same customer.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
METRES_PER_DEGREE = 2 * np.pi * EARTH_RADIUS_M / 360
# Grid cells: a quarter of the median fence's span, so that a ping's candidates are mostly real hits.
MIN_CELL_DEG, MAX_CELL_DEG = 0.0002, 0.05
MAX_GRID_CELLS = 1 << 23  # cells of the grid and (fence, cell) pairs; coarser cells beyond (~70 MB at most)
BBOX_PAD_DEG = 1e-7  # about 1 cm: bounding boxes are only a prefilter, so they err on the large side
CHUNK_PINGS = 32_768  # pings per kernel call: the candidates' temporaries stay in the CPU cache


def haversine_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in metres between points given in degrees (vectorized)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(np.asarray(lon2) - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(a))


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


@dataclass(frozen=True)
class FenceGrid:
    """Which fences' bounding boxes touch each cell of a regular lat/lon grid over all the fences.

    The fences of cell ``k`` are ``fence_rows[start[k]:start[k + 1]]``, in ascending row order. Cell
    ``rows * cols`` is everything outside the grid (and pings without coordinates): it has no fences.
    """

    lat0: float
    lon0: float
    cell_deg: float
    rows: int
    cols: int
    start: np.ndarray  # int64, rows * cols + 2 offsets
    fence_rows: np.ndarray  # int32

    @classmethod
    def build(cls, min_lat, max_lat, min_lon, max_lon, cell_deg: float) -> FenceGrid:
        min_lat, max_lat, min_lon, max_lon = (
            np.asarray(a, dtype=np.float64) for a in (min_lat, max_lat, min_lon, max_lon)
        )
        if len(min_lat) == 0:
            return cls(0.0, 0.0, cell_deg, 0, 0, np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.int32))
        lat0, lon0 = float(min_lat.min()), float(min_lon.min())
        while True:  # coarser cells while the grid or its (fence, cell) pairs would be too large
            i0, i1 = np.floor((min_lat - lat0) / cell_deg), np.floor((max_lat - lat0) / cell_deg)
            j0, j1 = np.floor((min_lon - lon0) / cell_deg), np.floor((max_lon - lon0) / cell_deg)
            rows, cols = int(i1.max()) + 1, int(j1.max()) + 1
            per_fence = ((i1 - i0 + 1) * (j1 - j0 + 1)).astype(np.int64)
            if max(rows * cols, int(per_fence.sum())) <= MAX_GRID_CELLS or cell_deg >= 360:
                break
            cell_deg *= 2
        fence = np.repeat(np.arange(len(min_lat), dtype=np.int32), per_fence)
        k = np.arange(len(fence), dtype=np.int64) - np.repeat(np.cumsum(per_fence) - per_fence, per_fence)
        width = (j1 - j0 + 1).astype(np.int64)[fence]
        cells = (i0.astype(np.int64)[fence] + k // width) * cols + j0.astype(np.int64)[fence] + k % width
        order = np.lexsort((fence, cells))
        counts = np.bincount(cells, minlength=rows * cols + 1)
        start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(lat0, lon0, float(cell_deg), rows, cols, start, fence[order])

    def cells(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """The cell of each point (``rows * cols`` outside the grid or without coordinates)."""
        i = np.floor((lat - self.lat0) / self.cell_deg)
        j = np.floor((lon - self.lon0) / self.cell_deg)
        inside = (i >= 0) & (i < self.rows) & (j >= 0) & (j < self.cols)  # False for NaN
        return np.where(inside, i * self.cols + j, self.rows * self.cols).astype(np.int64)


@dataclass
class Fences:
    """Stores prepared for hit tests: one row per store, with bounding boxes, polygons and the grid."""

    stores: pd.DataFrame  # store_id, ally_id, lat, lon, radius_m, is_polygon, min/max lat/lon
    polygons: np.ndarray  # shapely geometry per row (None for circles)
    grid: FenceGrid

    def __post_init__(self) -> None:
        # Per-fence arrays for the hit kernel; phi and cos_phi are exactly what haversine_m computes.
        s = self.stores
        self.store_id = s["store_id"].to_numpy(dtype=np.int64)
        self.ally_id = s["ally_id"].to_numpy(dtype=np.int64)
        self.lon = s["lon"].to_numpy(dtype=np.float64)
        self.phi = np.radians(s["lat"].to_numpy(dtype=np.float64))
        self.cos_phi = np.cos(self.phi)
        self.is_polygon = s["is_polygon"].to_numpy(dtype=bool)
        self.has_polygons = bool(self.is_polygon.any())
        # The circle test never holds for a polygon fence: its polygon decides.
        self.radius_m = np.where(self.is_polygon, -np.inf, s["radius_m"].to_numpy(dtype=np.float64))
        self.bounds = s[["min_lat", "max_lat", "min_lon", "max_lon"]].to_numpy(dtype=np.float64)
        self.count = max(len(s), 1)
        if np.any(self.store_id[1:] <= self.store_id[:-1]):
            raise ValueError("fences must be one row per store, in store_id order (Fences.from_frame)")

    def rows_of(self, store_ids: np.ndarray) -> np.ndarray:
        """The row of each store id (-1 for ids that are not fences)."""
        ids = np.asarray(store_ids, dtype=np.int64)
        if len(self.store_id) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        rows = np.searchsorted(self.store_id, ids).clip(max=len(self.store_id) - 1)
        return np.where(self.store_id[rows] == ids, rows, -1)

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> Fences:
        # Rows in store_id order: a ping's hits, found in row order, are then in store_id order too.
        df = df.sort_values("store_id", kind="stable").reset_index(drop=True)
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
        for side, sign in (("min", -1), ("max", 1)):
            for axis in ("lat", "lon"):
                df[f"{side}_{axis}"] += sign * BBOX_PAD_DEG
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
        stores = df[cols]
        span = (stores["max_lat"] - stores["min_lat"]).median() if len(stores) else MAX_CELL_DEG
        cell_deg = float(np.clip(round(float(span) / 4, 5), MIN_CELL_DEG, MAX_CELL_DEG))
        grid = FenceGrid.build(stores["min_lat"], stores["max_lat"], stores["min_lon"], stores["max_lon"], cell_deg)
        return cls(stores, polys, grid)


# --------------------------------------------------------------------------------------------
# Hits and entries
# --------------------------------------------------------------------------------------------

STATE_COLUMNS = "customer_id BIGINT, last_ping_at TIMESTAMPTZ, inside_store_ids BIGINT[]"
STATE_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("last_ping_at", pa.timestamp("us", tz="UTC")),
        ("inside_store_ids", pa.list_(pa.int64())),
    ]
)
HITS_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("store_id", pa.int64()),
        ("ally_id", pa.int64()),
        ("hit_at", pa.timestamp("us", tz="UTC")),
        ("distance_m", pa.float64()),
        ("is_entry", pa.bool_()),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
        ("accuracy_m", pa.float64()),
    ]
)


@dataclass(frozen=True)
class GeofenceResult:
    hits: str  # relation: customer_id, store_id, ally_id, hit_at, distance_m, is_entry, lat, lon, accuracy_m
    state: str  # temp table: customer_id, last_ping_at, inside_store_ids
    pings_read: int
    pings_imprecise: int


def empty_state_sql() -> str:
    return (
        "SELECT NULL::BIGINT customer_id, NULL::TIMESTAMPTZ last_ping_at, NULL::BIGINT[] inside_store_ids WHERE false"
    )


BUCKET_ROWS = 10_000_000  # precise pings per pass: bounds memory (about 1.7 GiB) on a larger day


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
    Returns the hits (an Arrow table registered on ``con`` as ``geo_hits``) and the state after these
    pings (temp table ``geo_state``). Entries only depend on one customer's pings, so large inputs are
    processed in buckets of customers (about ``bucket_rows`` pings each) to bound memory. A precise
    ping without customer_id or event_time raises ``ValueError``: pings must be validated first.
    """
    prior = prior_state or empty_state_sql()
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE geo_prior AS SELECT customer_id, last_ping_at, inside_store_ids FROM ({prior})"
    )
    precise_sql = f"accuracy_m IS NULL OR accuracy_m <= {float(max_accuracy_m)}"
    # All pings are counted from the input's row count (for Parquet, its footers: no scan); the precise
    # ones as they are read. Buckets are sized on all pings, an upper bound of the precise ones.
    (total,) = con.execute(f"SELECT count(*) FROM ({pings})").fetchone()
    buckets = max(1, -(-int(total) // bucket_rows))
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW geo_input AS SELECT customer_id, event_time, lat, lon, accuracy_m "
        f"FROM ({pings}) WHERE {precise_sql}"
    )
    (threads,) = con.execute("SELECT current_setting('threads')").fetchone()
    hits, states, precise = [], [], 0
    with ThreadPoolExecutor(max(1, int(threads))) as pool:
        for b in range(buckets):
            # A ping without customer goes to the first bucket, where reading it raises.
            in_bucket = (
                "true" if buckets == 1 else f"coalesce(((customer_id % {buckets}) + {buckets}) % {buckets}, 0) = {b}"
            )
            bucket_hits, bucket_state, read = _bucket(con, fences, in_bucket, pool)
            precise += read
            hits += bucket_hits
            states += bucket_state
    con.execute("DROP VIEW geo_input")
    con.register("geo_hits", pa.Table.from_batches(hits, schema=HITS_SCHEMA))
    # State: each customer's last precise ping and the fences it was inside; customers without new
    # pings keep their prior state.
    con.register("geo_state_new", pa.Table.from_batches(states, schema=STATE_SCHEMA))
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE geo_state ({STATE_COLUMNS});
        INSERT INTO geo_state
        SELECT * FROM geo_state_new
        UNION ALL
        SELECT customer_id, last_ping_at, inside_store_ids FROM geo_prior
        WHERE customer_id NOT IN (SELECT customer_id FROM geo_state_new)
        """
    )
    con.unregister("geo_state_new")
    return GeofenceResult("geo_hits", "geo_state", int(total), int(total) - precise)


def _bucket(con: duckdb.DuckDBPyConnection, fences: Fences, in_bucket: str, pool: ThreadPoolExecutor):
    """Hits and state of the customers of one bucket, as lists of Arrow record batches, and its pings."""
    segments = _Pings.of_bucket(con, in_bucket)
    prior = _prior_inside(con, fences, in_bucket)
    parts = list(pool.map(lambda piece: _chunk(fences, piece, prior), _whole_customers(segments, CHUNK_PINGS)))
    return [p[0] for p in parts], [p[1] for p in parts], sum(len(s) for s in segments)


SEGMENT_ROWS = 1 << 20  # at most this many rows per Arrow batch of a bucket's sorted pings


@dataclass(frozen=True)
class _Pings:
    """Precise pings sorted by customer and time (NaN for a missing accuracy)."""

    customer: np.ndarray
    t: np.ndarray  # microseconds since the epoch (UTC)
    lat: np.ndarray
    lon: np.ndarray
    accuracy_m: np.ndarray

    def __len__(self) -> int:
        return len(self.customer)

    def rows(self, a: int, b: int) -> _Pings:
        return _Pings(self.customer[a:b], self.t[a:b], self.lat[a:b], self.lon[a:b], self.accuracy_m[a:b])

    @staticmethod
    def joined(parts: list[_Pings]) -> _Pings:
        if len(parts) == 1:
            return parts[0]
        return _Pings(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("customer", "t", "lat", "lon", "accuracy_m"))
        )

    @classmethod
    def of_bucket(cls, con: duckdb.DuckDBPyConnection, in_bucket: str) -> list[_Pings]:
        """One bucket's precise pings in order, as the segments (Arrow batches) DuckDB returns them in.

        The relation API collects the sorted rows into Arrow batches on all cores, without a copy into
        one contiguous array (10M pings: about 0.3 s less than a single batch).
        """
        table = con.sql(
            f"SELECT customer_id, epoch_us(event_time) AS t, lat, lon, accuracy_m FROM geo_input WHERE {in_bucket} "
            "ORDER BY customer_id, t"
        ).to_arrow_table(batch_size=SEGMENT_ROWS)
        if table.column(0).null_count or table.column(1).null_count:
            unkeyed = pc.sum(pc.or_(pc.is_null(table.column(0)), pc.is_null(table.column(1)))).as_py()
            raise ValueError(f"{unkeyed} ping(s) without customer_id or event_time: pings must be validated first")
        types = (np.int64, np.int64, np.float64, np.float64, np.float64)
        return [
            cls(*(b.column(i).to_numpy(zero_copy_only=False).astype(t, copy=False) for i, t in enumerate(types)))
            for b in table.to_batches()  # a null accuracy becomes NaN
            if b.num_rows
        ]


def _whole_customers(segments: list[_Pings], size: int) -> list[_Pings]:
    """The sorted pings of consecutive segments cut into pieces of about ``size`` rows that hold whole
    customers. A piece is a slice of a segment, or the pings of one customer that continue from one
    segment into the next, joined (a copy of only those rows)."""
    pieces: list[_Pings] = []
    open_: list[_Pings] = []  # the last customer's pings so far: it may go on in the next segment
    for seg in segments:
        c = seg.customer
        if open_ and c[0] == open_[-1].customer[-1]:
            more = np.flatnonzero(c != c[0])
            end = int(more[0]) if len(more) else len(c)
            open_.append(seg.rows(0, end))
            if end == len(c):
                continue
            seg = seg.rows(end, len(c))
            c = seg.customer
        if open_:
            pieces.append(_Pings.joined(open_))
        firsts = np.flatnonzero(np.concatenate([[True], c[1:] != c[:-1]]))
        last = int(firsts[-1])
        cuts = np.unique(np.append(firsts[np.searchsorted(firsts, np.arange(0, last, size))], last))
        pieces += [seg.rows(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        open_ = [seg.rows(last, len(c))]
    if open_:
        pieces.append(_Pings.joined(open_))
    return pieces


def _prior_inside(con, fences: Fences, in_bucket: str) -> tuple[np.ndarray, np.ndarray]:
    """The prior state's (customer, fence row) pairs of the bucket's customers, sorted by customer."""
    pairs = con.execute(
        f"SELECT customer_id, unnest(inside_store_ids) AS store_id FROM geo_prior WHERE {in_bucket} "
        "ORDER BY customer_id"
    ).fetchnumpy()
    customer = np.asarray(pairs["customer_id"], dtype=np.int64)
    row = fences.rows_of(np.asarray(pairs["store_id"], dtype=np.int64))
    return customer[row >= 0], row[row >= 0]


def _in_sorted(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Whether each query is one of ``keys`` (ascending)."""
    if len(keys) == 0:
        return np.zeros(len(queries), dtype=bool)
    return keys[np.searchsorted(keys, queries).clip(max=len(keys) - 1)] == queries


def _chunk(fences: Fences, pings: _Pings, prior: tuple[np.ndarray, np.ndarray]):
    """Hits and state of ``pings`` (whole customers, sorted) as two record batches."""
    customer, lat, lon = pings.customer, pings.lat, pings.lon
    ping, fence, distance = _chunk_hits(fences, lat, lon)
    # Entry: the customer's previous ping (just before in this order) did not hit the same fence; for
    # the customer's first ping here, the previous one is the prior state's.
    change = customer[1:] != customer[:-1]
    first = np.concatenate([[True], change])
    last = np.concatenate([change, [True]])
    key = ping * fences.count + fence  # ascending: hits come in (ping, fence row) order
    was_inside = _in_sorted(key, key - fences.count)
    at_first = np.flatnonzero(first[ping])
    prior_customer, prior_row = prior
    lo = int(np.searchsorted(prior_customer, customer[0], side="left"))
    hi = int(np.searchsorted(prior_customer, customer[-1], side="right"))
    if hi > lo:
        # Pairs as keys rank * fences + row, the rank of the customer among this piece's customers.
        customers = customer[first]
        rank = np.searchsorted(customers, prior_customer[lo:hi]).clip(max=len(customers) - 1)
        known = customers[rank] == prior_customer[lo:hi]
        keys = np.sort(rank[known] * fences.count + prior_row[lo:hi][known])
        hit_rank = np.cumsum(first)[ping[at_first]] - 1
        was_inside[at_first] = _in_sorted(keys, hit_rank * fences.count + fence[at_first])
    else:
        was_inside[at_first] = False
    store = fences.store_id[fence]
    accuracy = pings.accuracy_m[ping]
    time_type = pa.timestamp("us", tz="UTC")
    hits = pa.RecordBatch.from_arrays(
        [
            customer[ping],
            store,
            fences.ally_id[fence],
            pa.array(pings.t[ping]).view(time_type),
            distance,
            pa.array(~was_inside),
            lat[ping],
            lon[ping],
            pa.array(accuracy, mask=np.isnan(accuracy)),
        ],
        schema=HITS_SCHEMA,
    )
    # State: each customer's last ping and the fences it hit (in store_id order, as fence rows are).
    last_rows = np.flatnonzero(last)
    at_last = np.flatnonzero(last[ping])
    counts = np.bincount(np.searchsorted(last_rows, ping[at_last]), minlength=len(last_rows))
    state = pa.RecordBatch.from_arrays(
        [
            customer[last_rows],
            pa.array(pings.t[last_rows]).view(time_type),
            pa.ListArray.from_arrays(
                pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)), pa.array(store[at_last])
            ),
        ],
        schema=STATE_SCHEMA,
    )
    return hits, state


def _chunk_hits(fences: Fences, lat: np.ndarray, lon: np.ndarray):
    """(ping row, fence row, distance_m) of every hit of these pings, in (ping, fence row) order."""
    grid = fences.grid
    cell = grid.cells(lat, lon)
    first = grid.start[cell]
    counts = grid.start[cell + 1] - first
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    # The ping of each candidate: how many pings' candidate lists end at or before it (no np.repeat).
    ping = np.cumsum(np.bincount(ends[:-1], minlength=total + 1)[:total])
    fence = grid.fence_rows[np.arange(total) + (first - ends + counts)[ping]]
    # haversine_m(ping, store), term by term, with the per-ping and per-fence parts computed once.
    pphi = np.radians(lat)
    pcos = np.cos(pphi)
    h = (
        np.sin((fences.phi[fence] - pphi[ping]) / 2) ** 2
        + pcos[ping] * fences.cos_phi[fence] * np.sin(np.radians(fences.lon[fence] - lon[ping]) / 2) ** 2
    )
    distance = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(h))
    inside = distance <= fences.radius_m[fence]
    if fences.has_polygons:
        poly = np.flatnonzero(fences.is_polygon[fence])
        if len(poly):
            inside[poly] = _in_polygons(fences, fence[poly], lat[ping[poly]], lon[ping[poly]])
    hit = np.flatnonzero(inside)  # positions once, then three takes (cheaper than three boolean masks)
    return ping[hit], fence[hit], distance[hit]


def _in_polygons(fences: Fences, fence: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    box = fences.bounds[fence]
    inside = (lat >= box[:, 0]) & (lat <= box[:, 1]) & (lon >= box[:, 2]) & (lon <= box[:, 3])
    boxed = np.flatnonzero(inside)
    polys = fences.polygons[fence[boxed]]
    x, y = lon[boxed], lat[boxed]
    within = shapely.contains_xy(polys, x, y)
    # A point exactly on the boundary is inside the fence (as "at most radius_m" is for circles).
    edge = np.flatnonzero(~within)
    if len(edge):
        within[edge] = shapely.intersects(polys[edge], shapely.points(x[edge], y[edge]))
    inside[boxed] = within
    return inside


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
