"""De-duplication against history: ingesting one landing file of activities with random ids, with the
lookup of its ids in all history (the default) and bounded by ``NBO_DEDUP_WINDOW_DAYS``.

A lake of ``--history-days`` days of ``--rows-per-day`` activities with random 63-bit ids is written
once into --data (the columns the ingestion writes, one file per day); then one JSONL landing file of
``--batch`` activities of the next day (random ids too) is ingested with ``ingest_pending``, each
setting in turn, ``--repeats`` times. Every pass starts from the same lake: the files a pass wrote are
removed before the next. Printed: the median time of the whole ingestion and of the lookup query
alone (the statement that finds which of the batch's ids were accepted before).

    python benchmarks/bench_dedup.py [--history-days 20] [--rows-per-day 5000000] [--batch 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nbo_platform.domain.feeds import CUSTOMER_ACTIVITY  # noqa: E402
from nbo_platform.domain.landing import ingest_pending  # noqa: E402
from nbo_platform.duck import connect  # noqa: E402
from nbo_platform.lake import Lake  # noqa: E402

FIRST_DAY = date(2025, 1, 1)


class _TimedConnection:
    """A DuckDB connection that times the lookup of the batch's ids in the lake."""

    def __init__(self, con):
        self._con = con
        self.lookup_seconds = 0.0

    def execute(self, query: str, *args):
        started = time.perf_counter()
        result = self._con.execute(query, *args)
        if query.startswith("CREATE OR REPLACE TEMP TABLE batch_seen_before"):
            self.lookup_seconds += time.perf_counter() - started
        return result

    def __getattr__(self, name):
        return getattr(self._con, name)


def build_history(root: Path, days: int, rows: int) -> Lake:
    lake = Lake(str(root / "lake"))
    marker = root / f".history-{days}-{rows}"
    if marker.exists():
        return lake
    con = connect()
    for i in range(days):
        d = FIRST_DAY + timedelta(days=i)
        target = (
            lake.partition_dir("customer_activity", d.isoformat()) / "history.parquet"
        )  # not a batch fragment: kept by remove_orphans
        lake.write(
            con,
            f"""
            SELECT (random() * 1e6)::BIGINT AS customer_id, (random() * 9.2e18)::BIGINT AS activity_id,
                   NULL::VARCHAR AS ip_address_hash, 'deposit' AS activity_type, random() AS propensity_to_buy,
                   TIMESTAMPTZ '{d.isoformat()}' + to_microseconds((random() * 86.4e9)::BIGINT) AS event_time,
                   'history/{d.isoformat()}.jsonl' AS source_file, range + 1 AS source_line,
                   TIMESTAMPTZ '{d.isoformat()}' AS ingested_at
            FROM range({rows})
            """,
            target,
        )
    marker.touch()
    return lake


def write_landing(root: Path, day: date, rows: int) -> Path:
    landing = root / "landing"
    path = landing / "customer_activity" / f"activity-{day.isoformat()}.jsonl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        connect().execute(
            f"""
            COPY (
                SELECT (random() * 1e6)::BIGINT AS customer_id, (random() * 9.2e18)::BIGINT AS activity_id,
                       '10.0.0.1' AS ip_address, 'deposit' AS activity_type, round(random(), 2) AS propensity_to_buy,
                       strftime(TIMESTAMPTZ '{day.isoformat()}' + to_microseconds((random() * 86.4e9)::BIGINT),
                                '%Y-%m-%dT%H:%M:%S.%gZ') AS event_time
                FROM range({rows})
            ) TO '{path}' (FORMAT json)
            """
        )
    return landing


def ingest_once(root: Path, lake: Lake, landing: Path, day: date, window: int | None) -> tuple[float, float]:
    before = set(lake.root.rglob("*"))
    con = _TimedConnection(connect())
    started = time.perf_counter()
    (result,), _ = ingest_pending(
        con,
        lake,
        landing,
        CUSTOMER_ACTIVITY,
        lock_dir=root / "locks",
        partitions_start=FIRST_DAY.isoformat(),
        pii_salt="bench",
        now=datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC),
        dedup_window_days=window,
    )
    seconds = time.perf_counter() - started
    assert result.rows_new == result.rows_read, result  # random 63-bit ids: no repeats
    for p in sorted(set(lake.root.rglob("*")) - before, reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    return seconds, con.lookup_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "nbo-bench-dedup"))
    ap.add_argument("--history-days", type=int, default=20)
    ap.add_argument("--rows-per-day", type=int, default=5_000_000)
    ap.add_argument("--batch", type=int, default=1_000_000)
    ap.add_argument("--window", type=int, default=1, help="NBO_DEDUP_WINDOW_DAYS of the bounded runs")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    root = Path(args.data)
    root.mkdir(parents=True, exist_ok=True)
    lake = build_history(root, args.history_days, args.rows_per_day)
    day = FIRST_DAY + timedelta(days=args.history_days)
    landing = write_landing(root, day, args.batch)
    settings = {"all history": None, f"window {args.window} day(s)": args.window}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in settings}
    for _ in range(args.repeats):  # alternating, so that both settings see the same machine
        for name, window in settings.items():
            runs[name].append(ingest_once(root, lake, landing, day, window))
    history = args.history_days * args.rows_per_day
    print(f"history: {args.history_days} days, {history:,} activities with random ids; batch: {args.batch:,}")
    print(f"median of {args.repeats} alternating runs")
    print(f"{'lookup in':>22} {'ingestion s':>12} {'lookup s':>9}")
    base = statistics.median(r[1] for r in runs["all history"])
    for name, rs in runs.items():
        total, lookup = statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)
        print(f"{name:>22} {total:>12.2f} {lookup:>9.3f}  ({lookup / base:.2f} of all history's lookup)")


if __name__ == "__main__":
    main()
