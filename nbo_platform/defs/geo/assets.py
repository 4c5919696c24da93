"""Geofence hits: which location pings fall in allies' store fences, and which are entries.

Per date, the hits are kept current incrementally: a run reads only the ping files of the day it has
not processed yet, starting from the customers' state after the files it has (``geofence_state``).
A ping file with pings older than what was already processed for a customer (late data), or a
change in the previous day's state, recomputes the whole day from the previous day's state. Either
way the result is the contract's: the state carries across files and partitions.
"""

import json
import os

import dagster as dg
import pandas as pd

from nbo_platform import charts
from nbo_platform.built_from import building
from nbo_platform.campaign_report import map_inputs
from nbo_platform.defs.ingestion.assets import FEED_ASSET_KEYS
from nbo_platform.defs.metadata import image, table_metadata
from nbo_platform.defs.partitions import daily_partitions
from nbo_platform.defs.resources import LakeResource, WarehouseResource
from nbo_platform.domain.geofence import Fences, empty_state_sql, geofence_hits, out_of_order_customers
from nbo_platform.domain.policy import load_policy
from nbo_platform.duck import connect
from nbo_platform.lake import Lake

PINGS = FEED_ASSET_KEYS["location_pings"]
STATE_TABLE = "geofence_state"
STATE_FILE = "state.parquet"
PROCESSED_FILE = "_processed.json"
HIT_COLUMNS = "customer_id, store_id, ally_id, hit_at, distance_m, is_entry, lat, lon, accuracy_m"


def load_fences(con, lake: Lake) -> Fences:
    df = con.execute(f"SELECT * FROM {lake.scan_sql('stores', hive=False)}").df() if lake.has_files("stores") else None
    if df is None:
        df = pd.DataFrame(columns=["store_id", "ally_id", "lat", "lon", "radius_m", "geometry_wkt"])
    return Fences.from_frame(df)


def policy_of(lake: Lake):
    return load_policy(lake.table_dir("policy") / "policy.yaml")


def _state_path(lake: Lake, date: str):
    return lake.partition_dir(STATE_TABLE, date) / STATE_FILE


def _prior_state(lake: Lake, date: str) -> tuple[str | None, str]:
    """The state after the latest earlier date, and a token that changes when that state changes."""
    earlier = [d for d in lake.dates(STATE_TABLE) if d < date]
    if not earlier:
        return None, "none"
    path = _state_path(lake, earlier[-1])
    return f"SELECT * FROM read_parquet('{path}')", f"{earlier[-1]}:{path.stat().st_mtime_ns}"


def _write_json(path, doc) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
    os.replace(tmp, path)


def update_hits(con, lake: Lake, date: str, fences: Fences, max_accuracy_m: float, log=None) -> dict:
    """Bring the hits of ``date`` up to date with its ping files; returns the run's figures."""
    fragments = {p.name: p for p in lake.partition_files("location_pings", date)}
    hits_dir = lake.partition_dir("geofence_hits", date)
    state_dir = lake.partition_dir(STATE_TABLE, date)
    meta_path = state_dir / PROCESSED_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
    prior_sql, prior_token = _prior_state(lake, date)
    new = sorted(fragments)
    mode = "full"
    if meta and meta["prior"] == prior_token and set(meta["fragments"]) <= set(fragments):
        new = sorted(set(fragments) - set(meta["fragments"]))
        if not new:
            return {"mode": "up to date", "pings_read": 0, "hits": 0, "entries": 0, "ping_files": len(fragments)}
        current = f"SELECT * FROM read_parquet('{state_dir / STATE_FILE}')"
        pings = f"SELECT * FROM read_parquet({[str(fragments[f]) for f in new]})"
        late = out_of_order_customers(con, pings, current)
        mode, prior_sql = ("late", current) if late else ("incremental", current)
        if late and log:
            log.info(f"{date}: {late} customer(s) with pings older than already processed: recomputing their day")
    if mode == "full":
        new = sorted(fragments)
    if not new:  # no pings at all for the date
        for p in hits_dir.glob("*.parquet") if hits_dir.exists() else []:
            p.unlink()
        return {"mode": mode, "pings_read": 0, "hits": 0, "entries": 0, "ping_files": 0}
    columns = "customer_id, event_time, lat, lon, accuracy_m"
    pings = f"SELECT {columns} FROM read_parquet({[str(fragments[f]) for f in new]})"
    kept_hits = None
    if mode == "late":
        # Customers with late pings start the day again from the previous day's state, with all their
        # pings of the day; everyone else goes on incrementally from the current state. ``geo_late`` holds
        # them (written by out_of_order_customers above).
        day_start = _prior_state(lake, date)[0] or empty_state_sql()
        all_pings = f"SELECT {columns} FROM read_parquet({[str(p) for p in fragments.values()]})"
        pings = (
            f"SELECT * FROM ({all_pings}) WHERE customer_id IN (SELECT customer_id FROM geo_late) UNION ALL "
            f"SELECT * FROM ({pings}) WHERE customer_id NOT IN (SELECT customer_id FROM geo_late)"
        )
        prior_sql = (
            f"SELECT customer_id, last_ping_at, inside_store_ids FROM ({day_start}) "
            "WHERE customer_id IN (SELECT customer_id FROM geo_late) UNION ALL "
            f"SELECT customer_id, last_ping_at, inside_store_ids FROM ({prior_sql}) "
            "WHERE customer_id NOT IN (SELECT customer_id FROM geo_late)"
        )
        old = [str(p) for p in sorted(hits_dir.glob("*.parquet"))]
        if old:
            kept_hits = (
                f"SELECT {HIT_COLUMNS} FROM read_parquet({old}) "
                "WHERE customer_id NOT IN (SELECT customer_id FROM geo_late)"
            )
    result = geofence_hits(con, pings, fences, max_accuracy_m=max_accuracy_m, prior_state=prior_sql)
    # Incremental hits go to a file named after the first new ping file; a full recompute, or one with
    # late pings (the day's other hits kept, the late customers' hits replaced), rewrites the day as one file.
    name = f"hits-{new[0]}" if mode == "incremental" else "hits-full.parquet"
    # A file's hits are in customer, time and store order (per bucket of customers on a day of more
    # pings than a bucket holds): the order they are computed in, written as it is (11.8M hits in
    # 1.5 s instead of 3.9 s sorted by time), and the order decisions take them in.
    new_hits = f"SELECT {HIT_COLUMNS} FROM {result.hits}"
    if kept_hits:
        new_hits = f"SELECT * FROM ({kept_hits} UNION ALL {new_hits}) ORDER BY customer_id, hit_at, store_id"
    written = lake.write(con, f"SELECT *, {lake_date(date)} AS date FROM ({new_hits})", hits_dir / name)
    if mode != "incremental":
        for p in hits_dir.glob("*.parquet"):
            if p.name != name:
                p.unlink()
    state_dir.mkdir(parents=True, exist_ok=True)
    lake.write(con, f"SELECT * FROM {result.state} ORDER BY customer_id", state_dir / STATE_FILE)
    _write_json(meta_path, {"prior": prior_token, "fragments": sorted(fragments)})
    (entries,) = con.execute(f"SELECT count(*) FILTER (is_entry) FROM {result.hits}").fetchone()
    return {
        "mode": mode,
        "ping_files": len(new),
        "pings_read": result.pings_read,
        "pings_imprecise": result.pings_imprecise,
        "hits": written,
        "entries": int(entries),
    }


def lake_date(date: str) -> str:
    return f"DATE '{date}'"


@dg.asset(
    name="geofence_hits",
    deps=[PINGS, "stores", "policy"],
    partitions_def=daily_partitions,
    group_name="geo",
    kinds={"duckdb", "geopandas", "parquet"},
    owners=["team:data-engineering"],
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="Every location ping inside a store's fence (haversine distance <= radius_m, or inside "
    "the polygon), with distance_m and is_entry: the previous precise ping of the customer was outside "
    "that fence (state carried across files and days). Pings less precise than max_accuracy_m are ignored.",
)
def geofence_hits_asset(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    the_lake = lake.lake()
    con = connect()
    fences = load_fences(con, the_lake)
    max_acc = policy_of(the_lake).max_accuracy_m
    figures = {}
    for d in sorted(context.partition_keys):
        with building(the_lake, "geofence_hits", d):
            figures[d] = update_hits(con, the_lake, d, fences, max_acc, context.log)
    warehouse.publish(the_lake)
    for d, f in figures.items():
        context.log.info(f"{d}: {f}")
    total = {k: sum(f.get(k, 0) for f in figures.values()) for k in ("pings_read", "hits", "entries")}
    files = [str(p) for d in context.partition_keys for p in the_lake.partition_files("geofence_hits", d)]
    rows, entries, customers, stores_hit = (
        con.execute(
            f"SELECT count(*), count(*) FILTER (is_entry), count(DISTINCT customer_id), count(DISTINCT store_id) "
            f"FROM read_parquet({files})"
        ).fetchone()
        if files
        else (0, 0, 0, 0)
    )
    last = max(context.partition_keys)
    stores, hits = map_inputs(con, the_lake, last)
    pictures = {"map": image(charts.geo_map(stores, hits, f"stores and hits {last}"), f"map {last}")}
    if files:
        pictures |= table_metadata(con, f"SELECT * FROM read_parquet({files})", "geofence_hits", "hit_at")
    return dg.MaterializeResult(
        metadata={
            **pictures,
            "dagster/row_count": int(rows),
            "entries": int(entries),
            "customers_with_hits": int(customers),
            "stores_hit": int(stores_hit),
            "mode": ", ".join(sorted({f["mode"] for f in figures.values()})),
            "pings_read_this_run": total["pings_read"],
            "hits_written_this_run": total["hits"],
        }
    )
