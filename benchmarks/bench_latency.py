"""Near real time: time from a ping file landing to its notifications in the outbox, file after file.

Generates one day of the ``demo`` preset with many small ping files (a streaming sink's output), then
drops the files into the landing zone one at a time, in time order, and after each runs what the
landing-zone sensor would request (``plan_landing_runs`` + the same in-process materialization as
``nbo run``, without the dbt build). Prints the run time of each file's run and compares the first
runs of the day with the last ones: with incremental geofencing the ratio stays near 1, i.e. a run's
cost does not grow with what the day has already processed. The end-to-end latency is at most the
sensor interval (30 s) plus this run time.

    python benchmarks/bench_latency.py [--customers 4000] [--files-per-day 96]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import warnings  # noqa: E402

warnings.filterwarnings("ignore")

import dagster as dg  # noqa: E402

from nbo_platform.definitions import build_defs  # noqa: E402
from nbo_platform.defs.ingestion.sensors import plan_landing_runs  # noqa: E402
from nbo_platform.generate import PRESETS, generate  # noqa: E402
from nbo_platform.lake import Lake  # noqa: E402
from nbo_platform.runner import REFERENCE_ASSETS  # noqa: E402
from nbo_platform.settings import load_settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=4000)
    ap.add_argument("--files-per-day", type=int, default=96)
    ap.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "nbo-bench-latency"))
    args = ap.parse_args()
    root = Path(args.data)
    shutil.rmtree(root, ignore_errors=True)
    spec = replace(PRESETS["demo"], customers=args.customers, days=1, shards=1, files_per_day=args.files_per_day)
    report = generate(root, spec, seed=7)
    queue = root / "queue"
    shutil.move(root / "landing" / "location_pings", queue)
    for feed in ("customer_activity", "transactions"):
        shutil.rmtree(root / "landing" / feed)  # only pings: this measures the geo path
    settings = load_settings({"NBO_DATA_DIR": str(root)})
    defs = build_defs(settings)
    assets = list(defs.assets) + list(defs.asset_checks)
    resources = defs.resources
    instance = dg.DagsterInstance.ephemeral()
    lake = Lake(settings.lake_uri)

    def materialize(keys, partition):
        dg.materialize(
            assets,
            selection=dg.AssetSelection.assets(*keys),
            partition_key=partition,
            resources=resources,
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )

    materialize([*REFERENCE_ASSETS, "policy", "allies", "stores", "campaigns"], None)
    files = sorted(p for p in queue.rglob("*.parquet"))
    target = root / "landing" / "location_pings"
    timings = []
    for f in files:
        dest = target / f.relative_to(queue)
        dest.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        shutil.move(f, dest)
        plan = plan_landing_runs(lake, resources["landing"])
        for run in plan:
            materialize(sorted(run.assets), run.date)
        timings.append(time.perf_counter() - started)
    k = max(3, len(timings) // 10)
    first, last = statistics.median(timings[:k]), statistics.median(timings[-k:])
    print(
        f"{report.rows['location_pings']:,} pings of {args.customers:,} customers in {len(files)} files "
        f"(one day, ~{report.rows['location_pings'] // len(files):,} pings per file); 2 cores"
    )
    print(f"run per file: median {statistics.median(timings):.2f} s, max {max(timings):.2f} s")
    print(
        f"first {k} files: median {first:.2f} s; last {k} files: median {last:.2f} s; last/first = {last / first:.2f}"
    )
    outbox = sum(1 for p in (root / "outbox").rglob("*.jsonl") for _ in p.open())
    print(f"notifications in the outbox: {outbox:,}")


if __name__ == "__main__":
    main()
