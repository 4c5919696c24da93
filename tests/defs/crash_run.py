"""``nbo run`` that kills its own process group (SIGKILL) at a named point: the fault-injection harness.

    python -m tests.defs.crash_run POINT N DATA_DIR

kills at the N-th time POINT is reached. Each point wraps one function of the pipeline, and kills
before or after it, with nothing flushed or cleaned up (SIGKILL):

- ``manifest``: after a feed's manifest is written (the files count as ingested, nothing after ran)
- ``fragment``: after a batch's lake fragments are written, before its quarantine and manifest
- ``write:<text>``: after a lake file whose path holds <text> is written (``hits-``, ``geofence_state``,
  ``.staging/notifications``, ``all_notifications``, ``delivery_batches``, ``delivery_log``, ...)
- ``record:<step>``: before the record of a step's partition is written (its outputs are there)
- ``outbox``: after the outbox wrote a batch, before the delivery log
- ``publish``: while the warehouse is being replaced
- ``dbt``: two seconds into the dbt build
"""

from __future__ import annotations

import os
import signal
import sys
import threading


def die() -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)


def arm(point: str, nth: int) -> None:
    from nbo_platform import built_from, lake, warehouse
    from nbo_platform.domain import delivery, landing

    calls = {"n": 0}

    def reached() -> bool:
        calls["n"] += 1
        return calls["n"] == nth

    def after(owner, name: str, matches=lambda *a, **k: True) -> None:
        real = getattr(owner, name)

        def wrapped(*args, **kwargs):
            out = real(*args, **kwargs)
            if matches(*args, **kwargs) and reached():
                die()
            return out

        setattr(owner, name, wrapped)

    kind, _, arg = point.partition(":")
    if kind == "manifest":
        after(landing, "_write_manifest")
    elif kind == "fragment":
        after(lake.Lake, "write_partitioned")
    elif kind == "write":
        after(lake.Lake, "write", lambda self, con, query, target: arg in str(target))
    elif kind == "record":
        real = built_from.record_built

        def record(the_lake, step, date, digest):
            if step == arg and reached():
                die()
            return real(the_lake, step, date, digest)

        built_from.record_built = record
    elif kind == "outbox":
        after(delivery.LocalOutbox, "deliver")
    elif kind == "publish":
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if str(dst).endswith(".duckdb") and reached():
                die()
            return real_replace(src, dst, *args, **kwargs)

        warehouse.os.replace = replace
    elif kind == "dbt":
        from dagster_dbt import DbtCliResource

        real_cli = DbtCliResource.cli

        def cli(self, *args, **kwargs):
            if reached():
                threading.Timer(2.0, die).start()
            return real_cli(self, *args, **kwargs)

        DbtCliResource.cli = cli
    else:
        raise SystemExit(f"unknown point {point!r}")


if __name__ == "__main__":
    point, nth, data_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.environ["NBO_DATA_DIR"] = data_dir
    arm(point, nth)
    from nbo_platform.cli import main

    sys.exit(main(["run"]))
