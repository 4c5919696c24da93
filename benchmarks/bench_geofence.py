"""Geofence throughput and exactness: pings x store fences, the platform's grid vs a geopandas sjoin.

Measures ``nbo_platform.domain.geofence.geofence_hits`` (pings sorted by customer in DuckDB, then a
dense grid lookup, haversine and entries with carried state in NumPy chunks on all cores; customers in
buckets to bound memory) and, in the same run on the same
input, the naive baseline: a geopandas ``sjoin`` of the pings against circles buffered in a metric
projection (EPSG:3116), hits only. Stores: random circle fences of 50-300 m over Bogota; pings
uniform over the city, one day, unique event times.

Exactness: on a sample of 100k pings, every (ping, store) pair each implementation reports is
compared with a brute-force haversine check against all stores (NumPy), and the pairs that differ
are counted.

Each measurement runs in a fresh child process (its own peak RSS); figures are medians of --repeats.

    python benchmarks/bench_geofence.py [--pings 1000000 10000000] [--stores 1000 10000] [--repeats 3]
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

from nbo_platform.domain.geofence import Fences, geofence_hits, haversine_m  # noqa: E402
from nbo_platform.duck import connect  # noqa: E402
from nbo_platform.generate.reference import BBOX  # noqa: E402

SAMPLE = 100_000
DAY = pd.Timestamp("2025-06-02", tz="UTC")


def prepare(root: Path, pings: int, stores: int, seed: int = 7) -> tuple[Path, Path]:
    store_path = root / f"stores_{stores}.parquet"
    ping_path = root / f"pings_{pings}.parquet"
    if not store_path.exists():
        rng = np.random.default_rng(seed)
        pd.DataFrame(
            {
                "store_id": np.arange(1, stores + 1),
                "ally_id": rng.integers(1, 51, stores),
                "lat": rng.uniform(BBOX[0], BBOX[1], stores),
                "lon": rng.uniform(BBOX[2], BBOX[3], stores),
                "radius_m": rng.uniform(50, 300, stores),
                "geometry_wkt": pd.Series([None] * stores, dtype=object),
            }
        ).to_parquet(store_path)
    if not ping_path.exists():
        rng = np.random.default_rng(seed + 1)
        step = 86_400_000 // pings  # unique event times: a ping is identified by its time
        pd.DataFrame(
            {
                "customer_id": rng.integers(1, 1_000_001, pings),
                "event_time": DAY + pd.to_timedelta(np.arange(pings) * step, unit="ms"),
                "lat": rng.uniform(BBOX[0], BBOX[1], pings),
                "lon": rng.uniform(BBOX[2], BBOX[3], pings),
                "accuracy_m": np.exp(rng.normal(np.log(8), 0.6, pings)).clip(max=100),
            }
        ).to_parquet(ping_path, row_group_size=1_000_000)
    return store_path, ping_path


def sample_times(pings: Path) -> np.ndarray:
    t = pd.read_parquet(pings, columns=["event_time"])["event_time"]
    every = max(1, len(t) // SAMPLE)
    return t.iloc[::every].astype("int64").to_numpy()


def run_grid(stores: Path, pings: Path, sample: np.ndarray) -> tuple[int, float, set]:
    started = time.perf_counter()
    con = connect()
    fences = Fences.from_frame(pd.read_parquet(stores))
    result = geofence_hits(con, f"SELECT * FROM read_parquet('{pings}')", fences, max_accuracy_m=100)
    (n,) = con.execute(f"SELECT count(*) FROM {result.hits}").fetchone()
    seconds = time.perf_counter() - started
    con.register("sample_times", pd.DataFrame({"t": sample}))
    pairs = con.execute(
        f"SELECT epoch_us(hit_at) * 1000, store_id FROM {result.hits} WHERE epoch_us(hit_at) * 1000 IN "
        "(SELECT t FROM sample_times)"
    ).fetchall()
    return int(n), seconds, set(pairs)


def run_geopandas(stores: Path, pings: Path, sample: np.ndarray) -> tuple[int, float, set]:
    import geopandas as gpd

    started = time.perf_counter()
    s = pd.read_parquet(stores)
    p = pd.read_parquet(pings)
    fences = gpd.GeoDataFrame(
        {"store_id": s["store_id"]}, geometry=gpd.points_from_xy(s["lon"], s["lat"]), crs=4326
    ).to_crs(3116)
    fences["geometry"] = fences.buffer(s["radius_m"].to_numpy())
    points = gpd.GeoDataFrame(
        {"t": p["event_time"].astype("int64")}, geometry=gpd.points_from_xy(p["lon"], p["lat"]), crs=4326
    ).to_crs(3116)
    joined = gpd.sjoin(points, fences, predicate="within")
    seconds = time.perf_counter() - started
    in_sample = joined[joined["t"].isin(sample)]
    return (
        len(joined),
        seconds,
        set(zip(in_sample["t"].to_numpy().tolist(), in_sample["store_id"].to_numpy().tolist(), strict=True)),
    )


def exact_pairs(stores: Path, pings: Path, sample: np.ndarray) -> set:
    s = pd.read_parquet(stores)
    p = pd.read_parquet(pings)
    p = p[p["event_time"].astype("int64").isin(sample)]
    pairs = set()
    slat, slon, rad, sid = (s[c].to_numpy() for c in ("lat", "lon", "radius_m", "store_id"))
    for start in range(0, len(p), 2000):  # brute force: every sampled ping against every store
        chunk = p.iloc[start : start + 2000]
        d = haversine_m(
            chunk["lat"].to_numpy()[:, None], chunk["lon"].to_numpy()[:, None], slat[None, :], slon[None, :]
        )
        pi, si = np.nonzero(d <= rad[None, :])
        t = chunk["event_time"].astype("int64").to_numpy()
        pairs |= set(zip(t[pi].tolist(), sid[si].tolist(), strict=True))
    return pairs


IMPLS = {"geopandas sjoin": run_geopandas, "platform grid": run_grid}  # baseline first


def _child(impl: str, stores: str, pings: str, sample, queue) -> None:
    n, seconds, pairs = IMPLS[impl](Path(stores), Path(pings), sample)  # seconds: without the sample's pairs
    queue.put((n, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, pairs))


def measure(impl: str, stores: Path, pings: Path, sample) -> tuple:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(impl, str(stores), str(pings), sample, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pings", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--stores", type=int, nargs="+", default=[1_000, 10_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "nbo-bench-geofence-v2"))
    args = ap.parse_args()
    root = Path(args.data)
    root.mkdir(parents=True, exist_ok=True)
    print(f"{mp.cpu_count()} cores; medians of {args.repeats}; differing pairs on a {SAMPLE:,}-ping sample")
    print(
        f"{'pings':>11} {'stores':>7} {'implementation':<16} {'hits':>11} {'seconds':>8} {'pings/s':>11} "
        f"{'peak MiB':>9} {'vs base':>8} {'differ':>7}"
    )
    for n in args.pings:
        for k in args.stores:
            stores, pings = prepare(root, n, k)
            sample = sample_times(pings)
            exact = exact_pairs(stores, pings, sample)
            base_rate = None
            for impl in IMPLS:
                runs = [measure(impl, stores, pings, sample) for _ in range(args.repeats)]
                secs = statistics.median(r[1] for r in runs)
                mem = statistics.median(r[2] for r in runs)
                differ = len(runs[0][3] ^ exact)
                rate = n / secs
                base_rate = base_rate or rate
                print(
                    f"{n:>11,} {k:>7,} {impl:<16} {runs[0][0]:>11,} {secs:>8.2f} {rate:>11,.0f} {mem:>9,.0f} "
                    f"{rate / base_rate:>7.1f}x {differ:>7,}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
