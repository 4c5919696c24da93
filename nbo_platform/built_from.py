"""What each daily derived partition was built from, and which ones are missing or stale.

Each daily derived asset records, for every date it completes, a fingerprint of the input files it
was about to read (``<table>/date=D/_built_from.json``: their names, sizes and modification times,
taken before it reads them). A run killed between two steps (after a feed's manifest, before the
geofence hits; after the decisions, before the All Notifications lake; after a refused delivery)
leaves the later steps' records old or absent: :func:`stale_partitions` finds them by comparing each
record with the inputs as they are now, and the landing plan (the sensor and ``nbo run``) requests
them again. Every step is idempotent, so building a partition again that was complete costs time only.

Dagster's own staleness lives in the instance's event log: ``nbo run`` on a new instance, or a run
killed before it reported its materializations, leaves it nothing to compare. The lake's own record
serves both the sensor and ``nbo run``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date as Date
from datetime import timedelta

from nbo_platform.domain.policy import Policy
from nbo_platform.lake import Lake

RECORD = "_built_from.json"


def _next(d: str) -> str:
    return (Date.fromisoformat(d) + timedelta(days=1)).isoformat()


def _before(d: str) -> str:
    return (Date.fromisoformat(d) - timedelta(days=1)).isoformat()


@dataclass(frozen=True)
class Step:
    """A recorded step: its record lives in the table of its name; ``driver`` is the daily input whose
    dates it is built for; ``inputs`` are the (table, date) partitions it reads for a date; ``assets``
    are what a run selects to bring it, and the steps after it, up to date.

    Only daily inputs are fingerprinted: the reference tables are rewritten by every refresh, and what
    a change of theirs makes stale is planned where they change (a customer change re-plans the offers
    of later activities)."""

    driver: str
    inputs: Callable[[str, bool], list[tuple[str, str]]]
    assets: tuple[str, ...]


# The attribution reads the next day's notifications only when a customer can be notified again within
# a window (``credits_next_day``): otherwise the next day's decisions change nothing of the day's credits.
ATTRIBUTION = ("effective_notifications", "holdout_conversions")
DELIVERY = ("all_notifications", "notification_deliveries")
STEPS: dict[str, Step] = {
    "next_best_offer": Step(
        "customer_activity",
        lambda d, _: [("customer_activity", d)],
        ("next_best_offer", "next_best_offer_unassigned", "next_best_offer_lookup"),
    ),
    "next_best_offer_lookup": Step(
        "next_best_offer", lambda d, _: [("next_best_offer", d)], ("next_best_offer_lookup",)
    ),
    "geofence_hits": Step(
        "location_pings",
        lambda d, _: [("location_pings", d), ("geofence_state", _before(d))],
        ("geofence_hits", "notifications", *DELIVERY, *ATTRIBUTION),
    ),
    "notifications": Step(
        "geofence_hits", lambda d, _: [("geofence_hits", d)], ("notifications", *DELIVERY, *ATTRIBUTION)
    ),
    "all_notifications": Step("notifications", lambda d, _: [("notifications", d)], DELIVERY),
    "delivery_log": Step("all_notifications", lambda d, _: [("all_notifications", d)], ("notification_deliveries",)),
    "effective_notifications": Step(
        "notifications",
        lambda d, next_day: [
            ("notifications", d),
            ("transactions", d),
            ("transactions", _next(d)),
            *([("notifications", _next(d))] if next_day else []),
        ],
        ATTRIBUTION,
    ),
}


def credits_next_day(policy: Policy) -> bool:
    """Whether a day's credits depend on the next day's decisions: a customer can be notified again
    before an attribution window closes, and a purchase goes to the latest notification."""
    return policy.cooldown_minutes < policy.attribution_window_minutes


def fingerprint(lake: Lake, step: str, date: str, credits_next_day: bool = False) -> str:
    """A digest of the input files of ``step`` for ``date`` as they are now."""
    parts = []
    for table, d in STEPS[step].inputs(date, credits_next_day):
        for p in lake.partition_files(table, d):
            st = p.stat()
            parts.append(f"{p.relative_to(lake.root)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def record_built(lake: Lake, step: str, date: str, digest: str) -> None:
    """Record that ``step``'s partition ``date`` was built from the inputs ``digest`` was taken of."""
    folder = lake.partition_dir(step, date)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / RECORD
    tmp = folder / f".{RECORD}.tmp"
    tmp.write_text(json.dumps({"inputs": digest}))
    os.replace(tmp, target)


@contextmanager
def building(lake: Lake, step: str, date: str, credits_next_day: bool = False) -> Iterator[None]:
    """Build ``step``'s partition ``date`` in the block; its inputs are fingerprinted before and the
    record written when the block completes (not when it raises, or the process dies in it)."""
    digest = fingerprint(lake, step, date, credits_next_day)
    yield
    record_built(lake, step, date, digest)


def recorded(lake: Lake, step: str, date: str) -> str | None:
    path = lake.partition_dir(step, date) / RECORD
    try:
        return json.loads(path.read_text()).get("inputs")
    except (OSError, ValueError):
        return None


def stale_partitions(lake: Lake, credits_next_day: bool = False) -> dict[str, set[str]]:
    """The assets to run per date so that every recorded step is built from its inputs as they are now:
    steps whose record is absent or differs, for every date any of their daily inputs holds files."""
    stale: dict[str, set[str]] = {}
    for name, step in STEPS.items():
        for d in lake.dates(step.driver):
            if recorded(lake, name, d) != fingerprint(lake, name, d, credits_next_day):
                stale.setdefault(d, set()).update(step.assets)
    return stale
