"""Sample-data generation speed: the ``large`` preset's day (1M customers, 10k stores, ~10M pings).

Runs ``nbo_platform.generate.generate`` for one day of the preset in a fresh child process and
prints rows, seconds per phase, pings generated per second and peak memory (max RSS). As a baseline,
in the same run, the movement model is also computed the obvious way (a Python loop per ping) on a
sample of customers, and the vectorized movement is timed on the same sample: the ratio is the
speed-up of the vectorized code.

    python benchmarks/bench_generate.py [--customers 1000000] [--repeats 1] [--sample 2000]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nbo_platform.domain.geofence import METRES_PER_DEGREE  # noqa: E402
from nbo_platform.generate import PRESETS, generate  # noqa: E402
from nbo_platform.generate.events import movement  # noqa: E402
from nbo_platform.generate.reference import build_city  # noqa: E402


def _child(customers: int, out: str, queue) -> None:
    spec = replace(PRESETS["large"], customers=customers, days=1, shards=max(1, customers // 50_000))
    report = generate(Path(out), spec, seed=7)
    queue.put((report.rows, report.seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def run_generate(customers: int, out: Path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(customers, str(out), queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def loop_movement(city, cust_idx, rng) -> int:
    """The same trips, one ping at a time in Python: the baseline."""
    n = 0
    day = pd.Timestamp("2025-06-02", tz="UTC")
    rows = []
    for i in cust_idx:
        legs = [
            (city.homes[i], city.works[i], rng.uniform(6.5, 9.0) * 3600),
            (city.works[i], city.homes[i], rng.uniform(17, 20) * 3600),
        ]
        for o, d, t0 in legs:
            ns = abs(d[0] - o[0]) * METRES_PER_DEGREE
            ew = abs(d[1] - o[1]) * METRES_PER_DEGREE * math.cos(math.radians(d[0]))
            speed = rng.uniform(4, 10)
            t = 0.0
            while t * speed <= ns + ew:
                s = t * speed
                lat = o[0] + math.copysign(s, d[0] - o[0]) / METRES_PER_DEGREE if s < ns else d[0]
                lon = (
                    o[1]
                    if s < ns
                    else o[1] + math.copysign(s - ns, d[1] - o[1]) / (METRES_PER_DEGREE * math.cos(math.radians(d[0])))
                )
                acc = math.exp(rng.normal(math.log(8), 0.6))
                rows.append(
                    (
                        int(i),
                        day + pd.Timedelta(seconds=t0 + t),
                        lat + rng.normal(0, acc / 2 / METRES_PER_DEGREE),
                        lon,
                        acc,
                    )
                )
                t += rng.uniform(30, 120)
                n += 1
    pd.DataFrame(rows, columns=["ci", "event_time", "lat", "lon", "accuracy_m"])
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=PRESETS["large"].customers)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--sample", type=int, default=2000, help="customers in the loop-vs-vectorized comparison")
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "nbo-bench-generate"))
    args = ap.parse_args()
    out = Path(args.out)
    results = []
    for _ in range(args.repeats):
        shutil.rmtree(out, ignore_errors=True)
        results.append(run_generate(args.customers, out))
    rows = results[0][0]
    secs = {k: statistics.median(r[1][k] for r in results) for k in results[0][1]}
    mem = statistics.median(r[2] for r in results)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(
        f"preset 'large', one day, {args.customers:,} customers, {PRESETS['large'].stores:,} stores; "
        f"{mp.cpu_count()} cores; median of {args.repeats}"
    )
    print("rows: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()) + f"; files on disk {size / 2**20:,.0f} MiB")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in secs.items()))
    print(f"pings generated per second of movement: {rows['location_pings'] / secs['movement']:,.0f}")
    print(f"pings per second end to end (all feeds, behaviour, files): {rows['location_pings'] / secs['total']:,.0f}")
    print(f"peak memory: {mem:,.0f} MiB")

    rng = np.random.default_rng(1)
    city = build_city(rng, customers=args.sample, allies=10, stores=200, start=datetime(2025, 6, 2), days=1)
    idx = np.arange(args.sample)
    t = time.perf_counter()
    n_loop = loop_movement(city, idx, np.random.default_rng(2))
    loop_s = time.perf_counter() - t
    vec = []
    for _ in range(5):
        t = time.perf_counter()
        n_vec = len(movement(np.random.default_rng(2), city, idx, pd.Timestamp("2025-06-02", tz="UTC")))
        vec.append(time.perf_counter() - t)
    vec_s = statistics.median(vec)
    print(
        f"movement on {args.sample:,} customers: Python loop {n_loop / loop_s:,.0f} pings/s, "
        f"vectorized {n_vec / vec_s:,.0f} pings/s ({(n_vec / vec_s) / (n_loop / loop_s):.0f}x)"
    )


if __name__ == "__main__":
    main()
