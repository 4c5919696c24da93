"""Near real time: from one new ping file landing to its notifications in the outbox.

Generates one day of pings and cuts them, in time order, into files of 10k pings (a streaming sink
that rolls files by size, late and repeated records included), then
walks through the day in time order: files are dropped into the landing zone in batches until the
day holds a given number of pings (default 100k, 500k, 1M), and there the next few files are
dropped one at a time, each followed by what the landing-zone sensor would request
(``plan_landing_runs`` + the same in-process materialization as ``nbo run``, without the dbt build).
Prints the median time of those single-file runs at each level and its ratio to the first level:
with incremental geofencing and append-only decisions a run's cost follows the new file, not the
pings already held. Landing-to-outbox latency is at most the sensor interval (30 s) plus this time.

    python benchmarks/bench_latency.py [--customers 20000] [--file-pings 10000] [--held 100000 500000 1000000]
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
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from nbo_platform.definitions import build_defs  # noqa: E402
from nbo_platform.defs.ingestion.sensors import plan_landing_runs  # noqa: E402
from nbo_platform.generate import PRESETS, generate  # noqa: E402
from nbo_platform.lake import Lake  # noqa: E402
from nbo_platform.runner import REFERENCE_ASSETS  # noqa: E402
from nbo_platform.settings import load_settings  # noqa: E402


def rechunk(source: Path, queue: Path, file_pings: int) -> None:
    """The generated ping files, in time order, re-cut into files of ``file_pings`` rows (a size-rolled sink)."""
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        table = pa.concat_tables([pq.read_table(f) for f in sorted(folder.glob("*.parquet"))])
        out = queue / folder.name
        out.mkdir(parents=True)
        for n, start in enumerate(range(0, table.num_rows, file_pings)):
            pq.write_table(table.slice(start, file_pings), out / f"location_pings-{folder.name}-{n:05d}.parquet")
    shutil.rmtree(source)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--files-per-day", type=int, default=100)
    ap.add_argument("--held", type=int, nargs="+", default=[100_000, 500_000, 1_000_000])
    ap.add_argument("--measured-files", type=int, default=3, help="single-file runs timed at each level")
    ap.add_argument("--file-pings", type=int, default=10_000, help="pings per landing file")
    ap.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "nbo-bench-latency"))
    args = ap.parse_args()
    root = Path(args.data)
    shutil.rmtree(root, ignore_errors=True)
    spec = replace(PRESETS["demo"], customers=args.customers, days=1, shards=1, files_per_day=args.files_per_day)
    generate(root, spec, seed=7)
    queue = root / "queue"
    rechunk(root / "landing" / "location_pings", queue, args.file_pings)
    for feed in ("customer_activity", "transactions"):
        shutil.rmtree(root / "landing" / feed)  # only pings: this measures the geo path
    settings = load_settings({"NBO_DATA_DIR": str(root)})
    defs = build_defs(settings)
    assets = list(defs.assets) + list(defs.asset_checks)
    resources = defs.resources
    instance = dg.DagsterInstance.ephemeral()
    lake = Lake(settings.lake_uri)

    run_ids: list[str] = []

    def materialize(keys, partition):
        result = dg.materialize(
            assets,
            selection=dg.AssetSelection.assets(*keys),
            partition_key=partition,
            resources=resources,
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
        run_ids.append(result.run_id)

    def step_seconds(ids: list[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for run_id in ids:
            for st in instance.get_run_step_stats(run_id):
                out[st.step_key] = out.get(st.step_key, 0.0) + (st.end_time or 0) - (st.start_time or 0)
        return out

    def outbox_lines() -> int:
        return sum(1 for p in (root / "outbox").rglob("*.jsonl") for _ in p.open())

    def land(batch: list[Path]) -> None:
        for f in batch:
            dest = target / f.relative_to(queue)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(f, dest)
        for run in plan_landing_runs(lake, resources["landing"]):
            materialize(sorted(run.assets), run.date)

    materialize([*REFERENCE_ASSETS, "policy", "allies", "stores", "campaigns"], None)
    files = sorted(queue.rglob("*.parquet"))  # time slots in order
    sizes = [pq.ParquetFile(f).metadata.num_rows for f in files]
    target = root / "landing" / "location_pings"
    print(
        f"{sum(sizes):,} pings of {args.customers:,} customers in {len(files)} files (one day, median "
        f"{statistics.median(sizes):,.0f} pings per file); 2 cores; medians of {args.measured_files} single-file runs"
    )
    print(f"{'pings held':>12} {'file pings':>10} {'run (s)':>8} {'vs first':>8} {'notifications':>13}")
    held, i, first = 0, 0, None
    for level in sorted(args.held):
        batch, batch_pings = [], 0
        while i < len(files) and held + batch_pings < level:
            batch.append(files[i])
            batch_pings += sizes[i]
            i += 1
        if batch:
            land(batch)
            held += batch_pings
        held_before = held
        if i + args.measured_files > len(files):
            print(f"{level:>12,} not enough files left: generate more customers")
            break
        timings, pings, sent, steps = [], [], [], []
        for _ in range(args.measured_files):
            before = outbox_lines()
            started = time.perf_counter()
            first_run = len(run_ids)
            land([files[i]])
            timings.append(time.perf_counter() - started)
            steps.append(step_seconds(run_ids[first_run:]))
            pings.append(sizes[i])
            sent.append(outbox_lines() - before)
            held += sizes[i]
            i += 1
        median = statistics.median(timings)
        first = first or median
        print(
            f"{held_before:>12,} {statistics.median(pings):>10,.0f} {median:>8.2f} {median / first:>7.2f}x "
            f"{statistics.median(sent):>13,.0f}",
            flush=True,
        )
        keys = sorted({k for st in steps for k in st})
        print("             " + ", ".join(f"{k} {statistics.median(st.get(k, 0) for st in steps):.2f}" for k in keys))


if __name__ == "__main__":
    main()
