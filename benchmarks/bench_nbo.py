"""Offer assignment throughput: Parquet in, Parquet out.

Measures ``nbo_platform.domain.offers.write_offers``, the code the ``next_best_offer`` asset runs for a
day (a DuckDB hash join on the version intervals + the compiled rule CASE, written as the day's
``next_best_offer`` and ``next_best_offer_unassigned`` lake files) and, in the same run, a pandas
``merge_asof`` + ``numpy.select`` baseline, on the same generated input: 1M customers with about 1.3
versions each, and 1M and 10M activities over one day (2% of them of customers without a profile),
their propensity to buy in hundredths as the recipe's and ``nbo generate``'s activities have it.
The ``no-write`` line runs the same join and rules but counts the offers instead of writing them:
what the assignment itself costs, against the write of its ten columns.

Each measurement runs in a fresh child process so that its peak memory (max RSS) is its own; the
figures are the median of ``--repeats`` runs.

    python benchmarks/bench_nbo.py [--sizes 1000000 10000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nbo_platform.domain.offers import offers_sql, versions_of_day_sql, write_offers  # noqa: E402
from nbo_platform.domain.rules import DEFAULT_RULES_PATH, load_rules  # noqa: E402
from nbo_platform.duck import connect  # noqa: E402
from nbo_platform.lake import Lake  # noqa: E402

CUSTOMERS = 1_000_000
DAY = date(2025, 1, 1)


def generate(root: Path, activities: int, seed: int = 7) -> tuple[Path, Path]:
    con = connect()
    con.execute(f"SELECT setseed({seed / 100})")
    customers = root / "customers_v2.parquet"  # with valid_to
    if not customers.exists():
        con.execute(
            f"""
            COPY (
                WITH base AS (SELECT range AS customer_id FROM range({CUSTOMERS})),
                versions AS (
                    SELECT customer_id, 1 AS version, TIMESTAMPTZ '2024-01-01' AS valid_from FROM base
                    UNION ALL
                    SELECT customer_id, 2, TIMESTAMPTZ '2025-01-01' + to_seconds((random() * 86400)::BIGINT)
                    FROM base WHERE random() < 0.3
                )
                SELECT customer_id, version, valid_from,
                       lead(valid_from) OVER (PARTITION BY customer_id ORDER BY valid_from) AS valid_to,
                       (random() * 400000)::BIGINT AS income, (300 + random() * 550)::BIGINT AS fico,
                       NULL::VARCHAR AS gender
                FROM versions ORDER BY customer_id, valid_from
            ) TO '{customers}' (FORMAT parquet)
            """
        )
    activity = root / f"activity_{activities}_v2.parquet"  # v2: propensity in hundredths
    if not activity.exists():
        con.execute(
            f"""
            COPY (
                SELECT (random() * {CUSTOMERS * 1.02})::BIGINT AS customer_id, range AS activity_id,
                       ['deposit', 'web_open', 'mobile_open', 'branch_visit'][1 + (range % 4)::INT] AS activity_type,
                       round(random(), 2) AS propensity_to_buy,
                       TIMESTAMPTZ '2025-01-01' + to_seconds((random() * 86400)::BIGINT) AS event_time
                FROM range({activities})
            ) TO '{activity}' (FORMAT parquet)
            """
        )
    return customers, activity


def run_duckdb(customers: Path, activity: Path, out: Path) -> int:
    con = connect()
    rules = load_rules(DEFAULT_RULES_PATH)
    lake = Lake(str(out.parent / "lake"))
    result = write_offers(con, lake, DAY, f"read_parquet('{activity}')", f"read_parquet('{customers}')", rules)
    return result.assigned + result.unassigned


def run_assignment_only(customers: Path, activity: Path, out: Path) -> int:
    """The same join and rule list as ``run_duckdb``, counted per offer instead of written: what the
    assignment costs without the Parquet write of its ten columns."""
    con = connect()
    rules = load_rules(DEFAULT_RULES_PATH)
    of_day = versions_of_day_sql(f"read_parquet('{customers}')", DAY)
    query = offers_sql(f"read_parquet('{activity}')", of_day, rules)
    rows = con.execute(f"SELECT offer_id, rule_id, count(*) FROM ({query}) GROUP BY ALL").fetchall()
    return sum(n for *_, n in rows)


def run_pandas(customers: Path, activity: Path, out: Path) -> int:
    import numpy as np
    import pandas as pd

    c = pd.read_parquet(customers).sort_values("valid_from")
    a = pd.read_parquet(activity).sort_values("event_time")
    j = pd.merge_asof(a, c, left_on="event_time", right_on="valid_from", by="customer_id", direction="backward")
    j = j[j["valid_from"].notna()]
    p, inc, fico = j["propensity_to_buy"], j["income"], j["fico"]
    j["offer_id"] = np.select(
        [
            (inc > 100000) & (fico < 700) & (p < 0.9),
            (inc < 50000) & (p < 0.9),
            (inc >= 50000) & (fico >= 600) & (p < 0.9),
            (inc > 100000) & (fico >= 700) & (p < 0.9),
        ],
        [1, 2, 3, 4],
        default=5,
    )
    j.to_parquet(out)
    return len(a)


def _child(impl: str, customers: str, activity: str, out: str, queue) -> None:
    fn = {"duckdb": run_duckdb, "pandas": run_pandas, "no-write": run_assignment_only}[impl]
    started = time.perf_counter()
    n = fn(Path(customers), Path(activity), Path(out))
    seconds = time.perf_counter() - started
    queue.put((n, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(impl: str, customers: Path, activity: Path, out: Path) -> tuple[int, float, float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(impl, str(customers), str(activity), str(out), q))
    p.start()
    result = q.get()
    p.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=str(Path(__file__).resolve().parent / ".data"))
    args = ap.parse_args()
    root = Path(args.workdir)
    root.mkdir(parents=True, exist_ok=True)
    print(f"customers: {CUSTOMERS:,} (about 1.3 versions each); repeats: {args.repeats}; median figures")
    print(f"{'activities':>12} {'impl':>8} {'seconds':>8} {'events/s':>12} {'peak MiB':>9} {'vs pandas':>9}")
    for size in args.sizes:
        customers, activity = generate(root, size)
        medians = {}
        for impl in ("duckdb", "pandas", "no-write"):
            runs = []
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory(dir=root) as tmp:
                    runs.append(measure(impl, customers, activity, Path(tmp) / "out.parquet"))
            n = runs[0][0]
            seconds = statistics.median(r[1] for r in runs)
            peak = statistics.median(r[2] for r in runs)
            medians[impl] = (n, seconds, peak)
        base = medians["pandas"][1]
        for impl, (n, seconds, peak) in medians.items():
            print(f"{n:>12,} {impl:>8} {seconds:>8.2f} {n / seconds:>12,.0f} {peak:>9.0f} {base / seconds:>8.1f}x")


if __name__ == "__main__":
    main()
