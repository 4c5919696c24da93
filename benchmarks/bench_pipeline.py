"""A full ``nbo run`` on one day of the ``large`` preset: wall time, CPU time, peak memory, share per asset.

The day (1M customers, 10k stores, about 10M pings, 10M activities and 1M transactions) is generated
once into --data (``nbo generate --preset large --days 1``) and copied before each run, so every run
starts from untouched landing files. The run executes in a child process (its own peak RSS) through
``nbo_platform.runner.run_pipeline``, the code path of ``nbo run`` and of the sensors, dbt build
included. Each step (asset, check or the dbt build) is reported with its share of the wall time and
the cores it kept busy on average (CPU time of the process and of dbt's, sampled from ``/proc``), and
the time outside every step as one more line.

The baseline, in the same process right after each run: the same landing files read by DuckDB and
written once as Parquet with the lake's options, and nothing else (no validation, de-duplication,
hashing, manifest, offers, fences, notifications or dbt): what the day's input costs to move at all
on this machine at that moment, and the run's ratio to it (the median of the runs' own ratios; each
run's figures are printed too).

    python benchmarks/bench_pipeline.py [--data DIR] [--customers 1000000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class CpuSampler:
    """CPU seconds of this process and its children (dbt's), sampled every ``interval`` seconds.

    Linux ``/proc``: a live child's time is read from its own ``stat``, a finished one's from this
    process's (waited-for children). Elsewhere it records nothing and the per-step figures are left out.
    """

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (epoch seconds, CPU seconds so far)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __enter__(self) -> CpuSampler:
        if Path("/proc/self/stat").exists():
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _stat(self, pid: str) -> list[str]:
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.rindex(")") + 2 :].split()  # the fields after the command name, from state (3rd)

    def _cpu(self) -> float:
        me = os.getpid()
        own = self._stat("self")
        ticks = sum(int(x) for x in own[11:15])  # utime, stime, cutime, cstime
        for pid in os.listdir("/proc"):
            if pid.isdigit() and int(pid) != me:
                try:
                    f = self._stat(pid)
                    if int(f[1]) == me:  # ppid
                        ticks += int(f[11]) + int(f[12])
                except (OSError, ValueError, IndexError):
                    continue
        return ticks / self._tick

    def _run(self) -> None:
        while True:
            self.samples.append((time.time(), self._cpu()))
            if self._stop.wait(self.interval):
                self.samples.append((time.time(), self._cpu()))
                return

    def cores(self, start: float, end: float) -> float | None:
        """Cores busy on average between two instants (None when too short to tell)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 2 * self.interval:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def step_intervals(instance) -> list[tuple[str, float, float]]:
    """(step, start, end) of every successful step of every run of the instance, in start order (the
    run's step stats, as ``bench_latency.py`` reads them)."""
    out = [
        (st.step_key, st.start_time, st.end_time)
        for run in instance.get_runs()
        for st in instance.get_run_step_stats(run.run_id)
        if st.status is not None and st.status.value == "SUCCESS" and st.start_time and st.end_time
    ]
    return sorted(out, key=lambda s: s[1])


def bare_copy(landing: Path, out: Path) -> tuple[int, float]:
    """The baseline: every landing feed's files read by DuckDB (JSONL, CSV and Parquet readers, types
    detected, unreadable records skipped) and written as one Parquet file each with the lake's options.
    Returns (rows written, seconds)."""
    from nbo_platform.domain.feeds import LANDING_FEEDS
    from nbo_platform.domain.landing import file_format, list_landing_files
    from nbo_platform.duck import connect
    from nbo_platform.lake import Lake

    readers = {
        "jsonl": "read_json({}, format = 'newline_delimited', ignore_errors = true)",
        "csv": "read_csv({}, header = true, ignore_errors = true)",
        "parquet": "read_parquet({}, union_by_name = true)",
    }
    options = Lake(str(out)).copy_options
    out.mkdir(parents=True, exist_ok=True)
    con, rows = connect(), 0
    started = time.perf_counter()
    for feed in LANDING_FEEDS.values():
        by_format: dict[str, list[str]] = {}
        for f in list_landing_files(landing, feed):
            by_format.setdefault(file_format(f.path), []).append(str(f.path))
        for fmt, paths in by_format.items():
            target = out / f"{feed.name}-{fmt}.parquet"
            (n,) = con.execute(
                f"COPY (SELECT * FROM {readers[fmt].format(paths)}) TO '{target}' ({options})"
            ).fetchone()
            rows += int(n)
    return rows, time.perf_counter() - started


def _child(data: str, queue) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    # dbt's log lines (it writes to the process's own stdout) would bury the figures.
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    import dagster as dg

    from nbo_platform.runner import run_pipeline
    from nbo_platform.settings import load_settings

    settings = load_settings({"NBO_DATA_DIR": data})
    instance = dg.DagsterInstance.ephemeral()
    with CpuSampler() as sampler:
        started = time.perf_counter()
        run_pipeline(settings, instance=instance, echo=lambda _: None, log_level="ERROR")
        seconds = time.perf_counter() - started
    own, dbt = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + dbt.ru_utime + dbt.ru_stime  # dbt's process is a waited-for child
    # Per step: its seconds and the cores busy while it ran; the time outside any step (definitions,
    # planning, runs starting and ending) as one more line.
    spans: dict[str, list[tuple[float, float | None]]] = {}  # a step of several runs: each of its spans
    for key, start, end in step_intervals(instance):
        spans.setdefault(key, []).append((end - start, sampler.cores(start, end)))
    steps: dict[str, tuple[float, float | None]] = {}
    for key, parts in spans.items():
        total = sum(s for s, _ in parts)
        known = all(c is not None for _, c in parts)
        steps[key] = (total, sum(s * c for s, c in parts) / total if known and total else None)
    steps[OUTSIDE] = (seconds - sum(s for s, _ in steps.values()), None)
    peak = own.ru_maxrss / 1024  # the run's: the baseline below comes after it
    rows, baseline = bare_copy(settings.landing_dir, Path(data) / "baseline")
    queue.put((seconds, steps, peak, cpu, baseline, rows))


def _result(proc, queue):
    """The child's figures; an error if it ends without them (its traceback is on stderr)."""
    import queue as q

    while True:
        try:
            return queue.get(timeout=5)
        except q.Empty:
            if not proc.is_alive():
                raise SystemExit(f"the measured run failed (exit code {proc.exitcode}); see its error above") from None


# The time outside every step: importing the definitions, planning, runs starting and ending.
OUTSIDE = "(outside any step)"


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
        results.append(_result(proc, queue))
        proc.join()
    wall = statistics.median(r[0] for r in results)
    mem = statistics.median(r[2] for r in results)
    steps = sorted(results, key=lambda r: r[0])[len(results) // 2][1]  # the steps of the median run
    print(f"nbo run, one 'large' day ({args.customers:,} customers), {mp.cpu_count()} cores, median of {args.repeats}")
    cpu = statistics.median(r[3] for r in results)
    print(f"wall time {wall:.1f} s, peak memory {mem:,.0f} MiB")
    baseline = statistics.median(r[4] for r in results)
    ratio = statistics.median(r[0] / r[4] for r in results)
    print(
        f"baseline {baseline:.1f} s: the {results[0][5]:,} landing rows read and written once as Parquet by DuckDB, "
        f"in the same process after each run; nbo run = {ratio:.2f}x the baseline (median of the runs' ratios)"
    )
    print("runs: " + "; ".join(f"{r[0]:.1f} s / {r[4]:.1f} s = {r[0] / r[4]:.2f}x" for r in results))
    # The floor that running steps side by side could reach: the CPU time spread over every core.
    cores = mp.cpu_count()
    print(f"cpu time {cpu:.1f} s ({cpu / wall:.2f} of {cores} cores busy on average; {cpu / cores:.1f} s if all were)")
    # Each step's seconds as a share of the wall time, and the cores it kept busy on average: steps run
    # one after the other, so a step under the machine's cores leaves the rest idle for its duration.
    print(f"{'step':<48} {'seconds':>8} {'of wall':>8} {'cores':>6}")
    for step, (s, busy) in sorted(steps.items(), key=lambda kv: -kv[1][0]):
        shown = f"{busy:>6.2f}" if busy is not None else f"{'':>6}"
        print(f"  {step:<46} {s:>8.1f} {s / wall:>8.1%} {shown}")


if __name__ == "__main__":
    main()
