"""Which dates of the marts a build must cover: the days whose lake inputs changed since the last build.

Every mart row belongs to one date (a notification's or an activity's UTC date) and is computed from
that day's partitions of the daily lake tables the dbt project reads, plus the allies (names and
categories). So a build only needs the days whose partitions changed: with a year of history, a new
day costs one day of SQL, not 365.

A day's inputs are fingerprinted by their Parquet files' names, sizes, modification times and inode
numbers: every lake write renames a new file into place, so a re-written partition always gets a new
fingerprint, even within the file system's clock tick. The allies are fingerprinted by their content:
the daily reference refresh rewrites their file, and the same allies must not cover every day again.

The fingerprints a build started from are recorded next to the marts (``lake/marts/.built_from.json``)
once dbt succeeds and its files are in place; a failed build changes neither the marts nor the record,
so its days stay due. Changed allies, a missing record or a full refresh cover every day; a day whose
mart file is missing is covered again; marts of days that are no longer in the lake are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from nbo_platform.duck import connect
from nbo_platform.lake import Lake

# The daily lake tables the dbt project reads, each partitioned by the date its mart rows carry.
MART_INPUTS = ("next_best_offer", "notifications", "effective_notifications", "holdout_conversions")
# The reference table whose values every day's marts carry (ally names and categories): a change of
# its content covers every day. Campaigns enter the marts only through a relationships test.
MART_REFERENCE = "allies"
MARTS = ("campaign_effectiveness", "channel_effectiveness", "ally_performance", "notification_funnel", "offer_mix")
RECORD = ".built_from.json"
LOCK = ".build.lock"
RECORD_VERSION = 1
_MART_FILE = re.compile(r"^(?P<mart>[a-z_]+)_(?P<date>\d{4}-\d{2}-\d{2})\.parquet$")


def mart_file(lake: Lake, mart: str, date: str) -> Path:
    """Where a mart's rows of one date live (the dbt macro ``mart_file`` writes the same path)."""
    return lake.root / "marts" / mart / f"{mart}_{date}.parquet"


def _fingerprint(root: Path, files: Iterable[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        st = f.stat()
        h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
    return h.hexdigest()[:32]


def day_fingerprints(lake: Lake, inputs: Sequence[str] = MART_INPUTS) -> dict[str, str]:
    """Each date present in any input, with the fingerprint of all its input files."""
    files: dict[str, list[Path]] = {}
    for table in inputs:
        for part in lake.table_dir(table).glob("date=*"):  # each partition folder listed once
            found = list(part.glob("*.parquet"))
            if found:
                files.setdefault(part.name.removeprefix("date="), []).extend(found)
    return {date: _fingerprint(lake.root, fs) for date, fs in sorted(files.items())}


def reference_fingerprint(lake: Lake, table: str = MART_REFERENCE) -> str:
    """A digest of the reference table's rows (in a stable order), whatever files hold them."""
    return lake.content_digest(connect(), table)


@dataclass(frozen=True)
class MartPlan:
    """What one build covers and what it records once it succeeds."""

    dates: list[str]  # the dates to build, in order
    full: bool  # every date (the reason says why)
    reason: str
    reference: str
    fingerprints: dict[str, str]  # every date present now, with its fingerprint
    recorded: dict[str, str] = field(default_factory=dict)  # the last build's record
    gone: list[str] = field(default_factory=list)  # dates the marts hold that the lake no longer has

    @property
    def due(self) -> bool:
        """A build has something to do: dates to build, or mart files of days gone from the lake to remove."""
        return bool(self.dates or self.gone)

    @property
    def env_value(self) -> str:
        """``NBO_MART_DATES`` for dbt: the dates, comma-separated (empty: none)."""
        return ",".join(self.dates)

    def summary(self) -> str:
        if not self.dates:
            return "none"
        span = self.dates[0] if len(self.dates) == 1 else f"{self.dates[0]} .. {self.dates[-1]}"
        return f"{len(self.dates)} ({span})"


def read_record(lake: Lake) -> dict | None:
    path = lake.root / "marts" / RECORD
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("version") == RECORD_VERSION else None


def plan_mart_dates(lake: Lake, full_refresh: bool = False, marts: Sequence[str] = MARTS) -> MartPlan:
    """The dates a build must cover now (see the module's docstring)."""
    now = day_fingerprints(lake)
    reference = reference_fingerprint(lake)
    record = read_record(lake)
    recorded = dict(record["dates"]) if record else {}
    gone = sorted(set(recorded) - set(now))
    if full_refresh or record is None or record.get("reference") != reference:
        reason = (
            "full refresh requested"
            if full_refresh
            else "no record of an earlier build"
            if record is None
            else "the allies changed"
        )
        return MartPlan(sorted(now), True, reason, reference, now, recorded, gone)
    due = [
        d for d, fp in now.items() if recorded.get(d) != fp or not all(mart_file(lake, m, d).exists() for m in marts)
    ]
    reason = "days whose inputs changed or whose mart files are missing" if due else "nothing changed"
    return MartPlan(due, False, reason, reference, now, recorded, gone)


def new_staging(lake: Lake, marts: Sequence[str] = MARTS) -> Path:
    """A new folder for a build's files (``lake/.staging/marts-*``, one sub-folder per mart).

    Call it holding ``build_lock``: builds take turns, so any other such folder was left by a build
    that died (killed, out of memory) and is removed.
    """
    root = lake.root / ".staging"
    for old in root.glob("marts-*"):
        shutil.rmtree(old, ignore_errors=True)
    staged = root / f"marts-{uuid.uuid4().hex}"
    for mart in marts:
        (staged / mart).mkdir(parents=True)
    return staged


def publish_build(lake: Lake, plan: MartPlan, staged: Path, marts: Sequence[str] = MARTS) -> int:
    """After a successful build: move its files into the lake, remove what no day of the lake backs and
    record what the build started from. Returns the files placed.

    ``staged`` holds what dbt wrote (``<mart>/<mart>_<date>.parquet``, every covered date of every mart).
    Each file replaces its predecessor atomically, so a reader sees the old day or the new one. A full
    build removes every mart file of a date it did not write (days gone from the lake, files of an
    earlier layout); any other build removes the files of days gone from the lake.
    """
    moves = [(staged / m / mart_file(lake, m, d).name, mart_file(lake, m, d)) for m in marts for d in plan.dates]
    missing = [str(src.relative_to(staged)) for src, _ in moves if not src.is_file()]
    if missing:
        raise FileNotFoundError(f"the dbt build did not write {len(missing)} mart file(s): {', '.join(missing[:5])}")
    for src, dst in moves:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    built = {d: plan.fingerprints[d] for d in plan.dates}
    if plan.full:
        dates = built
        for mart in marts:
            folder = lake.root / "marts" / mart
            for f in folder.glob("*.parquet") if folder.exists() else ():
                m = _MART_FILE.match(f.name)
                if not (m and m["mart"] == mart and m["date"] in built):
                    f.unlink(missing_ok=True)
    else:
        dates = {d: fp for d, fp in plan.recorded.items() if d in plan.fingerprints} | built
        for date in plan.gone:
            for mart in marts:
                mart_file(lake, mart, date).unlink(missing_ok=True)
    path = lake.root / "marts" / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps({"version": RECORD_VERSION, "reference": plan.reference, "dates": dates}, indent=1))
    os.replace(tmp, path)
    return len(moves)


@contextmanager
def build_lock(lake: Lake) -> Iterator[None]:
    """One mart build at a time per lake (an automation request and the daily schedule may meet): the
    second waits, then plans from what the first recorded. Without ``fcntl`` (Windows) builds are not
    serialized."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    path = lake.root / "marts" / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
