"""An analyst holding the warehouse open during a full run: neither side fails on DuckDB's lock."""

import subprocess
import sys
import textwrap
import time

import pytest

from nbo_platform.generate import PRESETS, generate

pytestmark = pytest.mark.e2e

READER = textwrap.dedent(
    """
    import sys, time, duckdb
    path, stop = sys.argv[1], sys.argv[2]
    con = duckdb.connect(path, read_only=True)  # held open for the whole run
    ok = errors = 0
    import os
    while not os.path.exists(stop):
        try:
            con.execute("SELECT count(*) FROM customers").fetchone()
            ok += 1
        except Exception as e:
            errors += 1
            print("error:", e, file=sys.stderr)
        time.sleep(0.05)
    con.close()  # DuckDB shares one instance per file within a process: reopen to see the new file
    fresh = duckdb.connect(path, read_only=True)
    tables = {r[0] for r in fresh.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    print(ok, errors, "campaign_effectiveness" in tables)
    """
)


def test_a_reader_holding_the_warehouse_open_during_a_full_run(settings, run_pipeline, tmp_path):
    generate(settings.data_dir, PRESETS["small"], seed=4)
    # A first run creates the warehouse; the reader opens it and keeps it open during the next one.
    (settings.landing_dir).rename(tmp_path / "later")
    settings.landing_dir.mkdir()
    run_pipeline()
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(settings.warehouse_path), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    settings.landing_dir.rmdir()
    (tmp_path / "later").rename(settings.landing_dir)
    run_pipeline()  # rewrites the lake, publishes the warehouse and builds the marts
    stop.touch()
    out, err = reader.communicate(timeout=60)
    ok, errors, has_marts = out.split()
    assert reader.returncode == 0, err
    assert int(ok) > 10 and int(errors) == 0, err
    assert has_marts == "True"
