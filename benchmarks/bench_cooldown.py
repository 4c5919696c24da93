"""The notification cooldown: which of a day's open geofence entries are notified, for several cooldowns.

Entries are generated in memory: ``--entries`` entries of ``--customers`` customers over one day
(each customer's entries at uniformly random instants, so a customer has about entries/customers of
them), sorted by customer then time, as ``decide_notifications`` hands them over. For each cooldown,
``cooldown_notified`` (one binary search per notified entry) is timed against a baseline in the same
process: rounds over all open entries, each round notifying every customer's first open entry and
throttling that customer's entries within the cooldown (the work grows with the entries times the
longest chain). Both must agree. Printed: medians of ``--repeats`` runs, and the ratio.

    python benchmarks/bench_cooldown.py [--entries 10000000] [--customers 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nbo_platform.domain.notifications import cooldown_notified  # noqa: E402

DAY_US = 86_400 * 10**6
MINUTE_US = 60 * 10**6


def rounds_baseline(customer: np.ndarray, t_us: np.ndarray, cooldown_us: int) -> np.ndarray:
    """Rounds over the open entries: each notifies every customer's first open entry and throttles
    that customer's entries within the cooldown."""
    n = len(customer)
    notified = np.zeros(n, dtype=bool)
    open_ = np.arange(n)
    while open_.size:
        c, t = customer[open_], t_us[open_]
        first = np.ones(open_.size, dtype=bool)
        first[1:] = c[1:] != c[:-1]
        notified[open_[first]] = True
        run_start = np.maximum.accumulate(np.where(first, np.arange(open_.size), 0))
        throttled = ~first & (t < t[run_start] + cooldown_us)
        open_ = open_[~first & ~throttled]
    return notified


def entries(n: int, customers: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    customer = rng.integers(1, customers + 1, n, dtype=np.int64)
    t = rng.integers(0, DAY_US, n, dtype=np.int64) + 1_748_822_400 * 10**6  # 2025-06-02 UTC
    order = np.lexsort((t, customer))
    return customer[order], t[order]


def median_seconds(fn, args: tuple, repeats: int) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cooldowns", default="60,5,1", help="minutes, comma-separated")
    args = parser.parse_args()
    customer, t = entries(args.entries, args.customers)
    print(
        f"cooldown over {args.entries:,} open entries of {args.customers:,} customers in one day "
        f"(about {args.entries // args.customers} each), medians of {args.repeats}"
    )
    print(f"{'cooldown':>9}  {'notified':>11}  {'chains':>8}  {'rounds':>8}  ratio")
    for minutes in (int(m) for m in args.cooldowns.split(",")):
        cooldown = minutes * MINUTE_US
        chains, got = median_seconds(cooldown_notified, (customer, t, cooldown), args.repeats)
        rounds, expected = median_seconds(rounds_baseline, (customer, t, cooldown), args.repeats)
        if not np.array_equal(got, expected):
            raise SystemExit(f"cooldown {minutes} min: the two methods disagree")
        print(f"{minutes:>6} min  {int(got.sum()):>11,}  {chains:>6.3f} s  {rounds:>6.3f} s  {rounds / chains:.1f}x")


if __name__ == "__main__":
    main()
