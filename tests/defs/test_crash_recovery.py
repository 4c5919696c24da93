"""Fault injection: ``nbo run`` killed (SIGKILL of its process group) at many points, then run again.

Every warehouse table, the manifest and the outbox must then equal those of an uninterrupted run, and
no notification_id may be in the outbox twice.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from nbo_platform.generate import Spec, generate
from nbo_platform.runner import run_pipeline
from nbo_platform.settings import load_settings

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
# What differs between two correct runs: when things happened, and how files were grouped in batches.
VOLATILE = {"ingested_at", "decided_at", "delivered_at", "quarantined_at", "planned_at", "batch", "batch_id",
            "delivered_to", "mtime_ns"}  # fmt: skip
POINTS = [
    ("manifest", 1),  # the first feed counted as ingested, nothing after it
    ("manifest", 3),
    ("fragment", 2),  # a batch's fragments written, its manifest not
    ("write:hits-", 1),  # geofence hits written, the customers' state not
    ("write:geofence_state", 1),
    ("write:.staging/notifications", 1),  # decisions staged, not in place
    ("record:notifications", 1),
    ("write:all_notifications", 1),
    ("write:delivery_batches", 1),  # a batch recorded, nothing handed over
    ("outbox", 1),  # handed over, not logged
    ("write:delivery_log", 1),
    ("record:effective_notifications", 1),
    ("dbt", 1),  # inside the dbt build
    ("publish", 3),  # while the warehouse file is replaced
]


def _settings(data: Path):
    return load_settings({"NBO_DATA_DIR": str(data), "NBO_LANDING_SETTLE_SECONDS": "0"})


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    spec = Spec(customers=150, allies=3, stores=12, days=2, files_per_day=2)
    generate(root / "source", spec, seed=5)
    reference = root / "reference"
    shutil.copytree(root / "source", reference)
    run_pipeline(_settings(reference), instance=dg.DagsterInstance.ephemeral(), echo=lambda _: None)
    return root


def outbox(data: Path) -> list[str]:
    return sorted(
        json.loads(line)["notification_id"]
        for f in (data / "outbox").rglob("*.jsonl")
        for line in f.read_text().splitlines()
    )


def differences(a: Path, b: Path) -> dict[str, int]:
    """Per warehouse table, the rows one warehouse has and the other has not (volatile columns aside)."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{a / 'warehouse.duckdb'}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{b / 'warehouse.duckdb'}' AS b (READ_ONLY)")
    tables = lambda c: {r[0] for r in con.execute(  # noqa: E731
        f"SELECT table_name FROM information_schema.tables WHERE table_catalog = '{c}'").fetchall()}  # fmt: skip
    found = {t: -1 for t in tables("a") ^ tables("b")}
    for t in sorted(tables("a") & tables("b")):
        cols = con.execute(
            f"SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = 'a' "
            f"AND table_name = '{t}' ORDER BY ordinal_position"
        ).fetchall()
        select = ", ".join(
            f'round("{c}", 6) AS "{c}"' if kind == "DOUBLE" else f'"{c}"' for c, kind in cols if c not in VOLATILE
        )
        (n,) = con.execute(
            f"SELECT (SELECT count(*) FROM (SELECT {select} FROM a.{t} EXCEPT ALL SELECT {select} FROM b.{t})) + "
            f"(SELECT count(*) FROM (SELECT {select} FROM b.{t} EXCEPT ALL SELECT {select} FROM a.{t}))"
        ).fetchone()
        if n:
            found[t] = n
    return found


@pytest.mark.parametrize(("point", "nth"), POINTS, ids=[f"{p}#{n}" for p, n in POINTS])
def test_a_run_killed_at_any_point_is_completed_by_the_next_run(generated, point, nth):
    data = generated / f"{point.replace(':', '_').replace('/', '_')}-{nth}"
    shutil.copytree(generated / "source", data)
    # Only this data dir's settings: an in-process run of the marts leaves NBO_* variables of its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBO_", "DAGSTER_"))}
    env |= {"NBO_LANDING_SETTLE_SECONDS": "0", "DAGSTER_HOME": str(data / ".nbo" / "dagster_home")}
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.defs.crash_run", point, str(nth), str(data)],
        cwd=REPO,
        env=env,
        start_new_session=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr[-2000:])
    run_pipeline(_settings(data), instance=dg.DagsterInstance.ephemeral(), echo=lambda _: None)
    ids = outbox(data)
    assert len(ids) == len(set(ids)), "a notification delivered twice"
    assert ids == outbox(generated / "reference")
    assert differences(generated / "reference", data) == {}
