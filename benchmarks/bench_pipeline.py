"""A full ``nbo run`` on one day of the ``large`` preset: wall time, CPU time, peak memory, share per asset.

The day (1M customers, 10k stores, about 10M pings, 10M activities and 1M transactions) is generated
once into --data (``nbo generate --preset large --days 1``) and copied before each run, so every run
starts from untouched landing files. The run executes in a child process (its own peak RSS) through
``nbo_platform.runner.run_pipeline``, the code path of ``nbo run`` and of the sensors, dbt build
included.

    python benchmarks/bench_pipeline.py [--data DIR] [--customers 1000000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _child(data: str, queue) -> None:
    import os
    import warnings

    warnings.filterwarnings("ignore")
    # dbt's log lines (it writes to the process's own stdout) would bury the figures.
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    import dagster as dg

    from nbo_platform.runner import run_pipeline
    from nbo_platform.settings import load_settings

    settings = load_settings({"NBO_DATA_DIR": data})
    started = time.perf_counter()
    report = run_pipeline(settings, instance=dg.DagsterInstance.ephemeral(), echo=lambda _: None, log_level="ERROR")
    seconds = time.perf_counter() - started
    own, dbt = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + dbt.ru_utime + dbt.ru_stime  # dbt's process is a waited-for child
    queue.put((seconds, report.step_seconds, own.ru_maxrss / 1024, cpu))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "nbo-bench-pipeline"))
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    source = Path(args.data) / "source"
    if not (source / "reference").exists():
        from nbo_platform.generate import PRESETS, generate

        spec = replace(PRESETS["large"], customers=args.customers, days=1, shards=max(1, args.customers // 50_000))
        print(f"generating one 'large' day into {source} ...", flush=True)
        report = generate(source, spec, seed=7)
        print("  " + ", ".join(f"{k} {v:,}" for k, v in report.rows.items()), flush=True)
    results = []
    for _ in range(args.repeats):
        work = Path(args.data) / "run"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(source, work)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(str(work), queue))
        proc.start()
        results.append(queue.get())
        proc.join()
    wall = statistics.median(r[0] for r in results)
    mem = statistics.median(r[2] for r in results)
    steps = results[len(results) // 2][1]
    print(f"nbo run, one 'large' day ({args.customers:,} customers), {mp.cpu_count()} cores, median of {args.repeats}")
    cpu = statistics.median(r[3] for r in results)
    print(f"wall time {wall:.1f} s, peak memory {mem:,.0f} MiB")
    # The floor that running steps side by side could reach: the CPU time spread over every core.
    cores = mp.cpu_count()
    print(f"cpu time {cpu:.1f} s ({cpu / wall:.2f} of {cores} cores busy on average; {cpu / cores:.1f} s if all were)")
    total = sum(steps.values())
    for step, s in sorted(steps.items(), key=lambda kv: -kv[1]):
        print(f"  {step:<40} {s:>8.1f} s  {s / total:>6.1%}")


if __name__ == "__main__":
    main()
