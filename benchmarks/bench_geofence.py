"""Geofence throughput: pings against store fences, grid prefilter vs a geopandas spatial join.

Measures ``nbo_platform.domain.geofence.geofence_hits`` (grid cells + hash join in DuckDB, haversine,
shapely for polygons, entries with carried state) and, in the same run on the same pings, a
geopandas baseline: ``sjoin`` of the pings against the fences buffered in a metric projection
(STRtree index), hits only, no entry logic. Stores: the generator's Bogota layout (10% polygons).

Each measurement runs in a fresh child process (its own peak RSS); figures are medians of --repeats.

    python benchmarks/bench_geofence.py [--pings 1000000 10000000] [--stores 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nbo_platform.domain.geofence import Fences, geofence_hits  # noqa: E402
from nbo_platform.duck import connect  # noqa: E402
from nbo_platform.generate.reference import BBOX, _points_near_hubs, build_city  # noqa: E402


def prepare(root: Path, pings: int, stores: int, seed: int = 7) -> tuple[Path, Path]:
    store_path = root / f"stores_{stores}.parquet"
    ping_path = root / f"pings_{pings}.parquet"
    if not store_path.exists():
        rng = np.random.default_rng(seed)
        from datetime import datetime

        city = build_city(rng, customers=10, allies=50, stores=stores, start=datetime(2025, 6, 2), days=1)
        city.stores.to_parquet(store_path)
    if not ping_path.exists():
        rng = np.random.default_rng(seed + 1)
        half = pings // 2  # half near the commercial hubs (where stores are), half anywhere in the city
        near = _points_near_hubs(rng, half, 2500)
        anywhere = np.column_stack(
            [rng.uniform(BBOX[0], BBOX[1], pings - half), rng.uniform(BBOX[2], BBOX[3], pings - half)]
        )
        pts = np.vstack([near, anywhere])
        df = pd.DataFrame(
            {
                "customer_id": rng.integers(1, 1_000_001, pings),
                "event_time": pd.Timestamp("2025-06-02", tz="UTC")
                + pd.to_timedelta(np.sort(rng.integers(0, 86_400_000, pings)), unit="ms"),
                "lat": pts[:, 0],
                "lon": pts[:, 1],
                "accuracy_m": np.exp(rng.normal(np.log(8), 0.6, pings)),
            }
        )
        df.to_parquet(ping_path)
    return store_path, ping_path


def run_grid(stores: Path, pings: Path) -> int:
    con = connect()
    fences = Fences.from_frame(pd.read_parquet(stores))
    result = geofence_hits(con, f"SELECT * FROM read_parquet('{pings}')", fences, max_accuracy_m=100)
    return int(con.execute(f"SELECT count(*) FROM {result.hits}").fetchone()[0])


def run_geopandas(stores: Path, pings: Path) -> int:
    import geopandas as gpd
    import shapely

    s = pd.read_parquet(stores)
    p = pd.read_parquet(pings)
    p = p[p["accuracy_m"] <= 100]
    polys = shapely.from_wkt(s["geometry_wkt"].where(s["geometry_wkt"].notna(), None).to_numpy())
    circles = (
        gpd.GeoSeries(gpd.points_from_xy(s["lon"], s["lat"]), crs=4326)
        .to_crs(3116)
        .buffer(s["radius_m"].to_numpy(), 32)
    )
    fences = gpd.GeoDataFrame(
        {"store_id": s["store_id"]},
        geometry=[c if g is None else g for c, g in zip(circles.to_crs(4326), polys, strict=True)],
        crs=4326,
    ).to_crs(3116)
    points = gpd.GeoDataFrame(
        p[["customer_id", "event_time"]], geometry=gpd.points_from_xy(p["lon"], p["lat"]), crs=4326
    ).to_crs(3116)
    joined = gpd.sjoin(points, fences, predicate="within")
    return len(joined)


IMPLS = {"geopandas sjoin": run_geopandas, "grid (DuckDB)": run_grid}  # baseline first


def _child(impl: str, stores: str, pings: str, queue) -> None:
    started = time.perf_counter()
    n = IMPLS[impl](Path(stores), Path(pings))
    seconds = time.perf_counter() - started
    queue.put((n, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(impl: str, stores: Path, pings: Path) -> tuple[int, float, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(impl, str(stores), str(pings), queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pings", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--stores", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-max", type=int, default=1_000_000, help="largest input the baseline is run on")
    ap.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "nbo-bench-geofence"))
    args = ap.parse_args()
    root = Path(args.data)
    root.mkdir(parents=True, exist_ok=True)
    print(f"stores: {args.stores:,} (10% polygons), machine: {mp.cpu_count()} cores; medians of {args.repeats}")
    print(
        f"{'pings':>12} {'implementation':<18} {'hits':>10} {'seconds':>8} {'pings/s':>12} "
        f"{'peak MiB':>9} {'vs baseline':>11}"
    )
    for n in args.pings:
        stores, pings = prepare(root, n, args.stores)
        rates = {}
        for impl in IMPLS:
            if impl != "grid (DuckDB)" and n > args.baseline_max:
                continue
            runs = [measure(impl, stores, pings) for _ in range(args.repeats)]
            hits = runs[0][0]
            secs = statistics.median(r[1] for r in runs)
            mem = statistics.median(r[2] for r in runs)
            rates[impl] = n / secs
            ratio = (
                f"{rates[impl] / rates['geopandas sjoin']:.1f}x"
                if "geopandas sjoin" in rates and impl != "geopandas sjoin"
                else ""
            )
            print(
                f"{n:>12,} {impl:<18} {hits:>10,} {secs:>8.2f} {n / secs:>12,.0f} {mem:>9,.0f} {ratio:>11}", flush=True
            )


if __name__ == "__main__":
    main()
