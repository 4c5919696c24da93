"""The marts' dbt build as history grows: every day (a full refresh) against only the day that changed.

Generates ``--days`` days of the ``large`` preset scaled to ``--customers`` (10 activities and about one
ping and one purchase per customer a day) into --data once and runs ``nbo run`` on them. Then, in the
same process, alternately:

- a full refresh of the marts (``full_refresh``: every day, the cost of any build before the marts
  were scoped by date), and
- the build that follows a rewrite of one day's attribution files (the same rows, new files), which
  covers that day only.

It prints the input size, the median of each and their ratio.

    python benchmarks/bench_marts.py [--data DIR] [--customers 100000] [--days 7] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@contextlib.contextmanager
def quiet():
    """Dagster's and dbt's log lines go nowhere (they write to the process's own stdout and stderr)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "nbo-bench-marts"))
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    import dagster as dg

    from nbo_platform.definitions import build_defs
    from nbo_platform.duck import connect
    from nbo_platform.generate import PRESETS, generate
    from nbo_platform.lake import Lake
    from nbo_platform.mart_dates import MART_INPUTS
    from nbo_platform.runner import run_pipeline
    from nbo_platform.settings import load_settings

    data = Path(args.data) / f"{args.customers}-{args.days}"
    settings = load_settings({"NBO_DATA_DIR": str(data)})
    instance = dg.DagsterInstance.ephemeral()
    lake = Lake(settings.lake_uri)
    if not lake.has_files("notifications"):
        spec = replace(
            PRESETS["large"], customers=args.customers, days=args.days, shards=max(1, args.customers // 50_000)
        )
        print(f"generating {args.days} days for {args.customers:,} customers into {data} ...", flush=True)
        generate(data, spec, seed=7)
        started = time.perf_counter()
        with quiet():
            run_pipeline(settings, instance=instance, echo=lambda _: None, log_level="ERROR")
        print(f"nbo run: {time.perf_counter() - started:.0f} s", flush=True)

    con = connect()
    days = lake.dates("notifications")
    sizes = {t: con.execute(f"SELECT count(*) FROM {lake.scan_sql(t)}").fetchone()[0] for t in MART_INPUTS}
    print(f"lake: {len(days)} days ({days[0]} .. {days[-1]}); " + ", ".join(f"{t} {n:,}" for t, n in sizes.items()))

    defs = build_defs(settings)
    assets = [*defs.assets, *defs.asset_checks]
    selection = dg.AssetSelection.assets("offer_mix").required_multi_asset_neighbors()

    def build(full_refresh: bool) -> tuple[float, str]:
        config = {"ops": {"nbo_dbt_models": {"config": {"full_refresh": full_refresh}}}}
        started = time.perf_counter()
        with quiet():
            result = dg.materialize(
                assets, selection=selection, resources=defs.resources, instance=instance, run_config=config
            )
        seconds = time.perf_counter() - started
        (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["offer_mix"]]
        return seconds, event.materialization.metadata["dates_built"].value

    def rewrite(day: str) -> None:
        for table in ("effective_notifications", "holdout_conversions"):
            for f in lake.partition_files(table, day):
                lake.write(con, f"SELECT * FROM read_parquet('{f}')", f)

    full, one = [], []
    for _ in range(args.repeats):
        seconds, dates = build(full_refresh=True)
        full.append(seconds)
        rewrite(days[-1])
        seconds, dates_one = build(full_refresh=False)
        one.append(seconds)
    print(f"full refresh ({dates}): median {statistics.median(full):.1f} s of {[round(s, 1) for s in full]}")
    print(f"one changed day ({dates_one}): median {statistics.median(one):.1f} s of {[round(s, 1) for s in one]}")
    t_full, t_one = statistics.median(full), statistics.median(one)
    print(f"ratio: the one-day build takes {t_one / t_full:.0%} of the full refresh")
    # What a day of history adds to a full build, and so to every build before the marts were scoped.
    per_day = (t_full - t_one) / (len(days) - 1)
    print(
        f"each further day held adds {per_day:.2f} s to a full build: with 365 such days, about "
        f"{t_one + 364 * per_day:.0f} s a build against {t_one:.1f} s for the changed day"
    )


if __name__ == "__main__":
    main()
