"""``nbo generate``: a bank's reference data and landing files, generated deterministically.

The output is exactly the data contract's formats (``reference/`` and ``landing/<feed>/``), so the
pipeline ingests it like real data. Days are generated one at a time and customers in shards (a
shard is one sink partition of the landing files), so memory is bounded by a shard's day.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from nbo_platform.domain.geofence import Fences
from nbo_platform.domain.policy import Policy
from nbo_platform.domain.rules import DEFAULT_RULES_PATH
from nbo_platform.generate.events import Behaviour, ShardState, activity, movement, purchases, versions_table
from nbo_platform.generate.files import FeedWriter, Imperfections
from nbo_platform.generate.reference import build_city, customer_changes

DEFAULT_START = "2025-06-02"  # a Monday; fixed so that a seed gives the same files on any day


@dataclass(frozen=True)
class Spec:
    customers: int
    allies: int
    stores: int
    days: int
    shards: int = 1
    tracked_share: float = 1.0  # customers whose app reports location on a given day
    activities_per_customer: float = 2.0
    files_per_day: int = 24
    changed_share: float = 0.1  # customers with a new version during the period
    behaviour: Behaviour = field(default_factory=Behaviour)
    imperfections: Imperfections = field(default_factory=Imperfections)


PRESETS: dict[str, Spec] = {
    "small": Spec(customers=400, allies=6, stores=40, days=2, files_per_day=4),
    "demo": Spec(customers=4000, allies=12, stores=300, days=3, shards=2, files_per_day=12),
    # Per day: about 10M pings, 10M activities and 1M transactions.
    "large": Spec(
        customers=1_000_000,
        allies=50,
        stores=10_000,
        days=1,
        shards=20,
        tracked_share=0.1,
        activities_per_customer=10.0,
        behaviour=Behaviour(background_tx_per_customer=0.95),
    ),
}


@dataclass
class GenerateReport:
    spec: Spec
    rows: dict[str, int] = field(default_factory=dict)
    malformed: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def generate(
    data_dir: Path,
    spec: Spec,
    *,
    seed: int = 7,
    start: str = DEFAULT_START,
    policy: Policy | None = None,
    salt: str = "nbo-platform-development-salt",
    progress: bool = False,
) -> GenerateReport:
    """Write reference data and landing files for ``spec`` into ``data_dir``."""
    policy = policy or Policy()
    data_dir = Path(data_dir)
    ref, landing = data_dir / "reference", data_dir / "landing"
    ref.mkdir(parents=True, exist_ok=True)
    t_start = datetime.fromisoformat(start)
    rng = np.random.default_rng([seed, 0])
    report = GenerateReport(spec)
    clock = time.perf_counter()
    city = build_city(
        rng, customers=spec.customers, allies=spec.allies, stores=spec.stores, start=t_start, days=spec.days
    )
    changes = customer_changes(rng, city.customers, t_start, spec.days, spec.changed_share)
    _write_reference(ref, city, policy)
    versions = versions_table(city.customers, changes, salt)
    fences = Fences.from_frame(city.stores)
    report.seconds["reference"] = time.perf_counter() - clock

    writers = {
        "customer_activity": FeedWriter(
            landing / "customer_activity", "customer_activity", "jsonl", spec.files_per_day, spec.imperfections, seed
        ),
        "location_pings": FeedWriter(
            landing / "location_pings", "location_pings", "parquet", spec.files_per_day, spec.imperfections, seed
        ),
        "transactions": FeedWriter(
            landing / "transactions", "transactions", "csv", spec.files_per_day, spec.imperfections, seed
        ),
        "customers": FeedWriter(
            landing / "customers", "customers", "jsonl", 1, Imperfections(0, 0, 0), seed, time_column="updated_at"
        ),
    }
    bounds = np.linspace(0, spec.customers, spec.shards + 1).astype(int)
    states = [ShardState() for _ in range(spec.shards)]
    next_activity = next_tx = 1
    day0 = pd.Timestamp(t_start, tz="UTC")
    timings = {"movement": 0.0, "activity": 0.0, "behaviour": 0.0, "write": 0.0}
    for i in range(spec.days):
        day = day0 + pd.Timedelta(days=i)
        day_changes = changes[(changes["updated_at"] >= day) & (changes["updated_at"] < day + pd.Timedelta(days=1))]
        writers["customers"].add(day, i, 0, day_changes)
        for s in range(spec.shards):
            srng = np.random.default_rng([seed, 1, i, s])
            idx = np.arange(bounds[s], bounds[s + 1])
            t = time.perf_counter()
            tracked = idx[srng.random(len(idx)) < spec.tracked_share]
            pings = movement(srng, city, tracked, day)
            timings["movement"] += time.perf_counter() - t
            t = time.perf_counter()
            acts = activity(srng, city, idx, day, spec.activities_per_customer, next_activity)
            next_activity += len(acts)
            timings["activity"] += time.perf_counter() - t
            t = time.perf_counter()
            shard_versions = versions[
                (versions["customer_id"] > bounds[s]) & (versions["customer_id"] <= bounds[s + 1])
            ]
            tx, stats = purchases(
                srng, city, idx, day, pings, shard_versions, policy, spec.behaviour, states[s], fences, next_tx
            )
            next_tx += len(tx)
            for k, v in stats.items():
                report.decisions[k] = report.decisions.get(k, 0) + int(v)
            timings["behaviour"] += time.perf_counter() - t
            t = time.perf_counter()
            writers["location_pings"].add(day, i, s, pings)
            writers["customer_activity"].add(day, i, s, acts)
            writers["transactions"].add(day, i, s, tx)
            timings["write"] += time.perf_counter() - t
            report.rows["location_pings"] = report.rows.get("location_pings", 0) + len(pings)
            report.rows["customer_activity"] = report.rows.get("customer_activity", 0) + len(acts)
            report.rows["transactions"] = report.rows.get("transactions", 0) + len(tx)
            if progress:
                print(
                    f"  day {i + 1}/{spec.days} shard {s + 1}/{spec.shards}: {len(pings):,} pings, "
                    f"{len(acts):,} activities, {len(tx):,} purchases ({time.perf_counter() - clock:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    after = day0 + pd.Timedelta(days=spec.days)
    for name, w in writers.items():
        w.flush(after)
        report.malformed[name], report.duplicates[name], report.files[name] = w.malformed, w.duplicates, w.files
    report.rows["customers"] = len(changes)
    report.seconds |= timings
    report.seconds["total"] = time.perf_counter() - clock
    return report


def _write_reference(ref: Path, city, policy: Policy) -> None:
    city.customers.assign(updated_at=city.customers["updated_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(
        ref / "customers.csv", index=False
    )
    city.offers.to_csv(ref / "offers.csv", index=False)
    city.allies.to_csv(ref / "allies.csv", index=False)
    city.stores.to_csv(ref / "stores.csv", index=False)
    camp = city.campaigns.copy()
    for c in ("starts_at", "ends_at"):
        camp[c] = camp[c].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    camp.to_csv(ref / "campaigns.csv", index=False)
    (ref / "policy.yaml").write_text(
        "# Notification policy (see docs/contract.md)\n"
        + yaml.safe_dump(
            {
                "cooldown_minutes": policy.cooldown_minutes,
                "attribution_window_minutes": policy.attribution_window_minutes,
                "max_accuracy_m": policy.max_accuracy_m,
            },
            sort_keys=False,
        )
    )
    shutil.copyfile(DEFAULT_RULES_PATH, ref / "nbo_rules.yaml")


def spec_for(preset: str, **overrides) -> Spec:
    spec = PRESETS[preset]
    return replace(spec, **{k: v for k, v in overrides.items() if v is not None})
