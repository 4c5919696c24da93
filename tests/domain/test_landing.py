import hashlib
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from nbo_platform.domain.feeds import CUSTOMER_ACTIVITY, LOCATION_PINGS
from nbo_platform.domain.landing import (
    BATCH_BYTES,
    _dates_by_path,
    _jsonl_event_times_sql,
    conservation_violations,
    ingest_pending,
    jsonl_lines,
    planned_dates,
    read_manifest,
    scan_landing,
    stored_types,
)
from nbo_platform.duck import connect
from nbo_platform.lake import Lake
from nbo_platform.settings import load_settings

NOW = datetime(2025, 3, 2, 12, tzinfo=UTC)


def activity(aid: int, **over) -> dict:
    rec = {
        "customer_id": 1,
        "activity_id": aid,
        "ip_address": "10.0.0.1",
        "activity_type": "deposit",
        "propensity_to_buy": 0.5,
        "event_time": "2025-03-01T10:00:00",
    }
    rec.update(over)
    return rec


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def ingest(settings, lake, con, feed=CUSTOMER_ACTIVITY, batch_bytes=BATCH_BYTES, dedup_window_days=None):
    return ingest_pending(
        con,
        lake,
        settings.landing_dir,
        feed,
        lock_dir=settings.state_dir / "locks",
        partitions_start="2024-01-01",
        pii_salt="salt",
        now=NOW,
        batch_bytes=batch_bytes,
        dedup_window_days=dedup_window_days,
    )


def consenting(lake, con, versions=((1, None, True),)) -> None:
    """The lake's customer history: (customer_id, valid_from or None for ever, location_opt_in) versions."""
    since = lambda t: f"TIMESTAMPTZ '{t or '0001-01-01 00:00:00+00'}'"  # noqa: E731
    rows = ", ".join(f"({c}, {since(t)}, {str(o).lower()})" for c, t, o in versions)
    lake.write(
        con,
        f"SELECT customer_id, valid_from, lead(valid_from) OVER (PARTITION BY customer_id ORDER BY valid_from) "
        f"AS valid_to, location_opt_in, NULL::VARCHAR AS email, NULL::VARCHAR AS phone "
        f"FROM (VALUES {rows}) t(customer_id, valid_from, location_opt_in)",
        lake.table_dir("customers") / "customers.parquet",
    )


def quarantine(con, lake) -> list[tuple]:
    return con.execute(
        f"SELECT file, line, reason FROM read_parquet('{lake.table_dir('quarantine')}/**/*.parquet') "
        "ORDER BY file, line"
    ).fetchall()


def lake_rows(con, lake, table="customer_activity") -> list[tuple]:
    return con.execute(f"SELECT * EXCLUDE (ingested_at) FROM {lake.scan_sql(table)} ORDER BY ALL").fetchall()


def test_bad_rows_are_quarantined_with_reasons_and_rows_are_conserved(settings, lake, con):
    write_jsonl(
        settings.landing_dir / "customer_activity" / "a.jsonl",
        [
            activity(1),
            "{not json",
            activity(2, customer_id=None),
            activity(3, propensity_to_buy=1.5),
            activity(4, customer_id="abc"),
            activity(5, customer_id=2.5),
            activity(6, event_time="yesterday"),
            "[1, 2]",
            activity(7),
            activity(8, customer_id=" ", activity_type="", propensity_to_buy="x", event_time="2999-01-01T00:00:00Z"),
            activity(9, activity_id="  12  ", propensity_to_buy="0", event_time=None),  # fine
        ],
    )
    [r], changed = ingest(settings, lake, con)
    assert (r.rows_read, r.rows_accepted, r.rows_quarantined) == (11, 3, 8)
    assert r.rows_read == r.rows_accepted + r.rows_quarantined
    assert quarantine(con, lake) == [
        ("a.jsonl", 2, "unparseable JSON"),
        ("a.jsonl", 3, "customer_id: missing"),
        ("a.jsonl", 4, "propensity_to_buy: outside [0, 1]: 1.5"),
        ("a.jsonl", 5, "customer_id: not an integer: abc"),
        ("a.jsonl", 6, "customer_id: not an integer: 2.5"),
        ("a.jsonl", 7, "event_time: not a timestamp: yesterday"),
        ("a.jsonl", 8, "not a JSON object"),
        (
            "a.jsonl",
            10,
            "customer_id: missing; activity_type: missing; propensity_to_buy: not a number: x; "
            "event_time: more than a day in the future",
        ),
    ]
    assert conservation_violations(con, lake, CUSTOMER_ACTIVITY) == []
    assert changed == []


INTEGER_TEXTS = {
    # whole numbers in any spelling of digits, sign and surrounding spaces
    "7": 7,
    "007": 7,
    "+5": 5,
    "-0": 0,
    " 12 ": 12,
    "9223372036854775807": 2**63 - 1,
    "-9223372036854775808": -(2**63),
    # what a cast to BIGINT would also take, but is no whole number's text, or does not fit
    "1.5": None,
    "2.0": None,
    "1e3": None,
    "0x10": None,
    "1_000": None,
    "9223372036854775808": None,
    "٣": None,
}


def test_an_integer_is_a_whole_number_written_in_digits(settings, lake, con):
    texts = list(INTEGER_TEXTS)
    write_jsonl(
        settings.landing_dir / "customer_activity" / "ids.jsonl",
        [activity(i + 1, customer_id=t) for i, t in enumerate(texts)],
    )
    [r], _ = ingest(settings, lake, con)
    accepted = dict(
        con.execute(f"SELECT activity_id, customer_id FROM {lake.scan_sql('customer_activity')}").fetchall()
    )
    rejected = {line for _, line, _ in quarantine(con, lake)}
    for i, text in enumerate(texts):
        expected = INTEGER_TEXTS[text]
        if expected is None:
            assert i + 1 in rejected and i + 1 not in accepted, text
        else:
            assert accepted.get(i + 1) == expected, text
    assert r.rows_read == len(texts) == r.rows_accepted + r.rows_quarantined


def test_a_json_object_after_leading_whitespace_is_a_record_and_other_json_is_not(settings, lake, con):
    d = settings.landing_dir / "customer_activity"
    d.mkdir(parents=True)
    lines = [
        b" \t" + json.dumps(activity(1)).encode(),  # 1: JSON whitespace before the object
        b'  [{"customer_id": 1}]',  # 2: an array
        b" 5",  # 3: a number
        b'"text"',  # 4: a string
        b"\xef\xbb\xbf" + json.dumps(activity(2)).encode(),  # 5: a byte-order mark is not JSON
        json.dumps(activity(3)).encode() + b" {}",  # 6: two values on one line
        json.dumps(activity(4))[:-1].encode() + b', "extra": NaN,}',  # 7: DuckDB's JSON allows NaN and a trailing comma
    ]
    (d / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    [r], _ = ingest(settings, lake, con)
    assert (r.rows_read, r.rows_new, r.rows_quarantined) == (7, 2, 5)
    assert [(line, reason) for _, line, reason in quarantine(con, lake)] == [
        (2, "not a JSON object"),
        (3, "not a JSON object"),
        (4, "not a JSON object"),
        (5, "unparseable JSON"),
        (6, "unparseable JSON"),
    ]
    assert [row[1] for row in lake_rows(con, lake)] == [1, 4]


def test_jsonl_lines_line_breaks_blank_lines_and_text_that_is_not_utf8(settings, lake, con):
    d = settings.landing_dir / "customer_activity"
    d.mkdir(parents=True)
    (d / "a.jsonl").write_bytes(
        json.dumps(activity(1)).encode()
        + b"\r\n"  # 1: Windows line break
        + b"\n"  # 2: blank
        + b"   \r\n"  # 3: spaces only, blank
        + b"{not json\r\r\n"  # 4
        + b"\t\n"  # 5: a tab is not blank (nor JSON)
        + json.dumps(activity(2, activity_type="d\u00e9p\u00f4t")).encode()  # 6: no line break at the end
    )
    (d / "b.jsonl").write_bytes(json.dumps(activity(3)).encode() + b"\n\xff\xfe\n")
    (d / "c.jsonl").write_bytes(b"")  # empty: no records (and nothing to memory-map)
    results, _ = ingest(settings, lake, con)
    by_file = {r.file: r for r in results}
    a = by_file["a.jsonl"]
    assert (a.status, a.rows_read, a.rows_new, a.rows_quarantined) == ("ingested", 4, 2, 2)
    c = by_file["c.jsonl"]
    assert (c.status, c.rows_read, c.rows_quarantined) == ("ingested", 0, 0)
    assert by_file["b.jsonl"].status == "unreadable" and "UTF" in by_file["b.jsonl"].error
    assert [(r[1], r[3]) for r in lake_rows(con, lake)] == [(1, "deposit"), (2, "dépôt")]
    assert con.execute(
        f"SELECT line, reason, raw FROM read_parquet('{lake.table_dir('quarantine')}/**/*.parquet') ORDER BY line"
    ).fetchall() == [(4, "unparseable JSON", "{not json"), (5, "unparseable JSON", "\t")]
    assert conservation_violations(con, lake, CUSTOMER_ACTIVITY) == []


def test_jsonl_lines_keep_the_text_read_when_the_file_is_replaced(tmp_path):
    # The lines are the memory-mapped file: a file renamed over it (how landing files are written)
    # leaves them as they were read.
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n')
    lines = jsonl_lines([path])
    (tmp_path / "b.jsonl").write_bytes(b"changed\n")
    (tmp_path / "b.jsonl").replace(path)
    assert lines.column("_raw").to_pylist() == ['{"a": 1}\n', '{"a": 2}\n']
    assert lines.column("_line").to_pylist() == [1, 2]
    assert jsonl_lines([path]).column("_raw").to_pylist() == ["changed\n"]


def test_jsonl_lines_are_read_into_memory_where_the_file_cannot_be_mapped(tmp_path, monkeypatch):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}')
    mapped = jsonl_lines([path])

    def cannot_map(*args, **kwargs):
        raise OSError("mmap not supported")

    monkeypatch.setattr(pa, "memory_map", cannot_map)
    assert jsonl_lines([path]).equals(mapped)


def test_planned_dates_are_the_dates_ingestion_writes(settings, lake, con):
    d = settings.landing_dir / "customer_activity"
    write_jsonl(
        d / "1.jsonl",
        [activity(1, event_time="2025-03-01T23:59:59Z"), activity(2, event_time="2025-03-02T00:30:00+01:00"), "{bad"],
    )
    write_jsonl(d / "2.jsonl", [activity(3, event_time="2025-03-03T10:00:00")])
    (d / "3.jsonl").write_bytes(b"\xff\n")  # not UTF-8: unreadable, it touches no date
    write_jsonl(d / "4.jsonl", [activity(4, event_time=None)])  # no event time: the ingestion time
    # Parquet storing the event time as a timestamp (read as stored), with an offset and a null.
    bogota = pa.timestamp("us", tz="America/Bogota")
    evening = [datetime(2025, 3, 3, 2, 0, tzinfo=UTC)] * 2  # the 2nd, 21:00 in Bogota: the 3rd in UTC
    for name, times in (("5.parquet", [datetime(2025, 2, 28, 20, 0, tzinfo=UTC), None]), ("6.parquet", evening)):
        pq.write_table(
            pa.table(
                {
                    "customer_id": [5, 6],
                    "activity_id": [50 + int(name[0]), 60 + int(name[0])],
                    "activity_type": ["deposit", "deposit"],
                    "propensity_to_buy": [0.1, 0.2],
                    "event_time": pa.array(times, type=bogota),
                }
            ),
            d / name,
        )
    # An object after whitespace is a record; an array holding one is not, and its date is not planned.
    (d / "7.jsonl").write_text(
        " " + json.dumps(activity(7, event_time="2025-03-01T05:00:00Z")) + "\n"
        '[{"event_time": "2025-02-20T00:00:00Z"}]\n'
    )
    pending, _ = scan_landing(con, lake, settings.landing_dir, CUSTOMER_ACTIVITY)
    planned = planned_dates(con, pending, CUSTOMER_ACTIVITY, NOW)
    assert planned == {
        "1.jsonl": {"2025-03-01"},
        "2.jsonl": {"2025-03-03"},
        "3.jsonl": set(),
        "4.jsonl": {"2025-03-02"},
        "5.parquet": {"2025-02-28", "2025-03-02"},
        "6.parquet": {"2025-03-03"},
        "7.jsonl": {"2025-03-01"},
    }
    results, _ = ingest(settings, lake, con)
    assert {r.file: set(r.dates) for r in results} == planned
    assert [r.status for r in results] == ["ingested"] * 2 + ["unreadable"] + ["ingested"] * 4


def test_jsonl_dates_are_planned_by_duckdbs_reader_as_ingestion_writes_them(settings, lake, con):
    d = settings.landing_dir / "customer_activity"
    lines = {
        # A repeated key: the first one is the record's, in planning as in ingestion.
        "1.jsonl": [
            '{"customer_id": 1, "activity_id": 1, "activity_type": "deposit", "propensity_to_buy": 0.1, '
            '"event_time": "2025-03-01T10:00:00Z", "event_time": "2025-03-03T10:00:00Z"}'
        ],
        # A record longer than what DuckDB reads by default (objects of 16 MB, in buffers of 32 MB).
        "2.jsonl": [json.dumps(activity(2, event_time="2025-03-03T01:00:00Z", ip_address="1" * (34 << 20)))],
        # Not records: their (missing) event time is not the ingestion's date ...
        "3.jsonl": ["{bad", "[1]", "null", '"text"', "", json.dumps(activity(3, event_time="2025-03-01T01:00:00Z"))],
        # ... but a record without event time is (field names are case-sensitive), and one that is
        # rejected for a missing customer may add its date (never fewer dates than ingestion writes).
        "4.jsonl": [
            json.dumps(activity(4, event_time=None)),
            json.dumps({**activity(5, event_time=None), "Event_Time": "2025-03-01T00:00:00Z"}),
            '{"event_time": "2025-03-03T00:00:00Z"}',
        ],
    }
    d.mkdir(parents=True)
    for name, text in lines.items():
        (d / name).write_text("\n".join(text) + "\n")
    pending, _ = scan_landing(con, lake, settings.landing_dir, CUSTOMER_ACTIVITY)
    day = "CAST(make_timestamp(epoch_us(coalesce(TRY_CAST(event_time AS TIMESTAMPTZ), "
    day += f"TIMESTAMPTZ '{NOW.isoformat()}'))) AS DATE)"
    # DuckDB's reader itself, not the line-by-line reading it falls back to.
    fast = _dates_by_path(con, _jsonl_event_times_sql([f.path for f in pending], CUSTOMER_ACTIVITY), day)
    assert {Path(p).name: ds for p, ds in fast.items()} == {
        "1.jsonl": {"2025-03-01"},
        "2.jsonl": {"2025-03-03"},
        "3.jsonl": {"2025-03-01"},
        "4.jsonl": {"2025-03-02", "2025-03-03"},
    }
    planned = planned_dates(con, pending, CUSTOMER_ACTIVITY, NOW)
    assert planned == {Path(p).name: ds for p, ds in fast.items()}
    results, _ = ingest(settings, lake, con)
    written = {r.file: set(r.dates) for r in results}
    assert written == {**planned, "4.jsonl": {"2025-03-02"}}


def test_csv_with_a_short_row_and_parquet_with_a_missing_column(settings, lake, con):
    d = settings.landing_dir / "customer_activity"
    d.mkdir(parents=True)
    (d / "b.csv").write_text(
        "customer_id,activity_id,activity_type,propensity_to_buy,event_time\n"
        "1,10,deposit,0.3,2025-03-01T08:00:00Z\n"
        "1,11\n"
        "2,12,web_open,0.2,2025-03-01T09:00:00+02:00\n"
    )
    pq.write_table(
        pa.table(
            {
                "customer_id": [3, 4],
                "activity_id": [20, 21],
                "propensity_to_buy": [0.1, 0.2],
                "event_time": ["2025-03-01T01:00:00", "2025-03-01T02:00:00"],
            }
        ),
        d / "c.parquet",
    )
    results, _ = ingest(settings, lake, con)
    by_file = {r.file: r for r in results}
    assert (by_file["b.csv"].rows_read, by_file["b.csv"].rows_new, by_file["b.csv"].rows_quarantined) == (3, 2, 1)
    assert (by_file["c.parquet"].rows_read, by_file["c.parquet"].rows_quarantined) == (2, 2)
    assert quarantine(con, lake) == [
        ("b.csv", 3, "expected 5 fields, found 2"),
        ("c.parquet", 1, "activity_type: missing"),
        ("c.parquet", 2, "activity_type: missing"),
    ]
    # The raw record: the CSV line as written, the Parquet row's columns as stored.
    raws = [
        json.loads(r) if r.startswith("{") else r
        for (r,) in con.execute(
            f"SELECT raw FROM read_parquet('{lake.table_dir('quarantine')}/**/*.parquet') ORDER BY file, line"
        ).fetchall()
    ]
    assert raws[0] == "1,11"
    assert raws[1] == {
        "customer_id": 3,
        "activity_id": 20,
        "propensity_to_buy": 0.1,
        "event_time": "2025-03-01T01:00:00",
    }
    # +02:00 is converted to UTC; a timestamp without offset is UTC.
    times = con.execute(
        f"SELECT activity_id, event_time FROM {lake.scan_sql('customer_activity')} ORDER BY 1"
    ).fetchall()
    assert [t[1].isoformat() for t in times] == ["2025-03-01T08:00:00+00:00", "2025-03-01T07:00:00+00:00"]


def test_same_file_twice_and_repeated_records_change_nothing(settings, lake, con):
    d = settings.landing_dir / "customer_activity"
    write_jsonl(d / "1.jsonl", [activity(1), activity(2)])
    ingest(settings, lake, con)
    before = lake_rows(con, lake)
    assert ingest(settings, lake, con) == ([], [])  # the same file is never read twice
    # The same content under a new name, and a later file repeating a record (at-least-once delivery).
    write_jsonl(d / "2.jsonl", [activity(1), activity(2)])
    write_jsonl(d / "3.jsonl", [activity(2), activity(3), activity(3)])
    results, _ = ingest(settings, lake, con)
    assert [(r.file, r.rows_new, r.rows_duplicate) for r in results] == [("2.jsonl", 0, 2), ("3.jsonl", 1, 2)]
    after = lake_rows(con, lake)
    assert len(after) == 3 and all(row in after for row in before)
    assert conservation_violations(con, lake, CUSTOMER_ACTIVITY) == []


def test_a_dedup_window_looks_ids_up_only_in_the_dates_near_the_batch(settings, lake, con):
    d = settings.landing_dir / "customer_activity"

    def new_and_duplicate(name: str, rows: list[dict], window: int | None) -> tuple[int, int]:
        write_jsonl(d / name, rows)
        (r,), _ = ingest(settings, lake, con, dedup_window_days=window)
        return r.rows_new, r.rows_duplicate

    assert new_and_duplicate("1.jsonl", [activity(1, event_time="2025-02-01T10:00:00"), activity(2)], 3) == (2, 0)
    # The same record again has the same event time: a repeat within any window.
    assert new_and_duplicate("2.jsonl", [activity(1, event_time="2025-02-01T10:00:00"), activity(2)], 0) == (0, 2)
    # An id accepted 28 days of events away is not looked up with a 3-day window ...
    assert new_and_duplicate("3.jsonl", [activity(1)], 3) == (1, 0)
    # ... and is with a wider one, or without a window (all history, the default).
    assert new_and_duplicate("4.jsonl", [activity(1, event_time="2025-01-29T10:00:00")], 3) == (0, 1)
    assert new_and_duplicate("5.jsonl", [activity(1, event_time="2025-01-02T10:00:00")], None) == (0, 1)
    assert conservation_violations(con, lake, CUSTOMER_ACTIVITY) == []
    # Dates outside the window are not even read: an unreadable file there goes unnoticed ...
    junk = lake.partition_dir("customer_activity", "2025-01-10") / "not-parquet.parquet"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"not a parquet file")
    assert new_and_duplicate("6.jsonl", [activity(7)], 3) == (1, 0)
    # ... which a lookup in all history reads.
    write_jsonl(d / "7.jsonl", [activity(8)])
    with pytest.raises(Exception, match="not-parquet"):
        ingest(settings, lake, con)


def test_changed_file_is_reported_not_reread(settings, lake, con):
    path = write_jsonl(settings.landing_dir / "customer_activity" / "1.jsonl", [activity(1)])
    ingest(settings, lake, con)
    write_jsonl(path, [activity(1), activity(99)])
    results, changed = ingest(settings, lake, con)
    assert results == [] and [c.file.relpath for c in changed] == ["1.jsonl"]
    assert [r[1] for r in lake_rows(con, lake)] == [1]


def test_missing_activity_event_time_means_ingestion_time(settings, lake, con):
    write_jsonl(settings.landing_dir / "customer_activity" / "1.jsonl", [activity(1, event_time=None)])
    [r], _ = ingest(settings, lake, con)
    assert r.dates == ("2025-03-02",)
    (et,) = con.execute(f"SELECT event_time FROM {lake.scan_sql('customer_activity')}").fetchone()
    assert et == NOW


def test_events_land_in_daily_partitions_by_utc_event_date(settings, lake, con):
    write_jsonl(
        settings.landing_dir / "location_pings" / "p.jsonl",
        [
            {"customer_id": 1, "event_time": "2025-03-01T23:59:59Z", "lat": 4.6, "lon": -74.1},
            {"customer_id": 1, "event_time": "2025-03-01T20:30:00-05:00", "lat": 4.6, "lon": -74.1},
            {"customer_id": 1, "event_time": "2025-03-01T23:59:59Z", "lat": 4.6, "lon": -74.1},  # repeat
            {"customer_id": 1, "event_time": "2025-03-02T00:00:00Z", "lat": 91, "lon": -74.1},
        ],
    )
    consenting(lake, con)
    [r], _ = ingest(settings, lake, con, LOCATION_PINGS)
    assert r.dates == ("2025-03-01", "2025-03-02")
    assert (r.rows_new, r.rows_duplicate, r.rows_quarantined) == (2, 1, 1)
    assert lake.dates("location_pings") == ["2025-03-01", "2025-03-02"]
    [(_, _, reason)] = quarantine(con, lake)
    assert reason == "lat: latitude outside [-90, 90]: 91.0"


def test_ip_addresses_are_stored_only_as_salted_hashes(settings, lake, con):
    write_jsonl(settings.landing_dir / "customer_activity" / "1.jsonl", [activity(1)])
    ingest(settings, lake, con)
    cols = [c[0] for c in con.execute(f"DESCRIBE SELECT * FROM {lake.scan_sql('customer_activity')}").fetchall()]
    assert "ip_address" not in cols and "ip_address_hash" in cols


@pytest.mark.parametrize("next_day", [False, True], ids=["one date", "two dates"])
def test_a_partition_file_holds_each_new_row_once_with_its_file_line_and_hashes(settings, lake, con, next_day):
    d = settings.landing_dir / "customer_activity"
    t = "2025-03-01T10:00:0{}Z"
    write_jsonl(
        d / "1.jsonl",
        [activity(i, event_time=t.format(s), ip_address=f"10.0.0.{i}") for i, s in ((1, 5), (2, 1), (3, 1))]
        + [activity(6, event_time="2025-03-02T00:00:00Z")] * next_day,
    )
    write_jsonl(d / "2.jsonl", [activity(i, event_time=t.format(s), ip_address=None) for i, s in ((4, 0), (5, 1))])
    [r1, r2], _ = ingest(settings, lake, con)
    assert r1.dates == ("2025-03-01", "2025-03-02")[: 1 + next_day] and r2.dates == ("2025-03-01",)
    assert lake.dates("customer_activity") == ["2025-03-01", "2025-03-02"][: 1 + next_day]
    [path] = lake.partition_files("customer_activity", "2025-03-01")
    rows = con.execute(
        f"SELECT activity_id, source_file, source_line, ip_address_hash FROM read_parquet('{path}') ORDER BY ALL"
    ).fetchall()
    sha = {i: hashlib.sha256(f"salt10.0.0.{i}".encode()).hexdigest() for i in (1, 2, 3)}
    assert rows == [
        (1, "1.jsonl", 1, sha[1]),
        (2, "1.jsonl", 2, sha[2]),
        (3, "1.jsonl", 3, sha[3]),
        (4, "2.jsonl", 1, None),
        (5, "2.jsonl", 2, None),
    ]


def test_manifest_records_each_file_once(settings, lake, con):
    write_jsonl(settings.landing_dir / "customer_activity" / "1.jsonl", [activity(1)])
    ingest(settings, lake, con)
    ingest(settings, lake, con)
    [m] = read_manifest(con, lake, CUSTOMER_ACTIVITY)
    assert (m["file"], m["rows_read"], m["status"]) == ("1.jsonl", 1, "ingested")
    assert len(m["sha256"]) == 64
    assert scan_landing(con, lake, settings.landing_dir, CUSTOMER_ACTIVITY) == ([], [])


@pytest.mark.parametrize("name", ["notes.txt", ".partial.jsonl", "_tmp.jsonl"])
def test_files_being_written_or_of_other_types_are_not_picked_up(settings, lake, con, name):
    write_jsonl(settings.landing_dir / "customer_activity" / name, [activity(1)])
    assert ingest(settings, lake, con) == ([], [])


def _drop_mixed_files(d: Path) -> None:
    write_jsonl(d / "1.jsonl", [activity(1), activity(2), "{bad", activity(2)])
    write_jsonl(d / "2.jsonl", [activity(2), activity(3, event_time="2025-03-02T01:00:00")])
    (d / "3.csv").write_text(
        "customer_id,activity_id,activity_type,propensity_to_buy,event_time\n"
        "1,3,deposit,0.3,2025-03-01T08:00:00Z\n"
        "1,4,deposit,7,2025-03-01T08:00:00Z\n"
        "1,5,deposit,0.3,2025-03-01T09:00:00Z\n"
    )
    (d / "4.parquet").write_bytes(b"PAR1 not really parquet")
    write_jsonl(d / "5.jsonl", [activity(5), activity(6)])
    pq.write_table(pa.table({"customer_id": [1], "activity_id": [7], "propensity_to_buy": [0.5]}), d / "6.parquet")
    (d / "7.csv").write_text(
        "activity_id,customer_id,activity_type,propensity_to_buy,event_time\n8,1,web_open,0.1,2025-03-01T10:00:00Z\n9,1\n"
    )
    (d / "8.csv").write_bytes(b"customer_id,activity_id\n1,\xff\xfe\n")  # not UTF-8


def _outcome(settings, lake, con, batch_bytes: int):
    results, _ = ingest(settings, lake, con, batch_bytes=batch_bytes)
    return [(r.file, r.status, r.rows_read, r.rows_new, r.rows_duplicate, r.rows_quarantined, r.dates) for r in results]


def test_one_batch_or_one_file_at_a_time_gives_the_same_result(tmp_path):
    from nbo_platform.duck import connect
    from nbo_platform.lake import Lake
    from nbo_platform.settings import load_settings

    seen = []
    for batch_bytes in (1, 10**9):  # every file its own batch, then all files in one
        settings = load_settings({"NBO_DATA_DIR": str(tmp_path / str(batch_bytes))})
        lake, con = Lake(settings.lake_uri), connect()
        _drop_mixed_files(settings.landing_dir / "customer_activity")
        seen.append((_outcome(settings, lake, con, batch_bytes), lake_rows(con, lake), quarantine(con, lake)))
        assert conservation_violations(con, lake, CUSTOMER_ACTIVITY) == []
    assert seen[0] == seen[1]
    results, rows, quarantined = seen[1]
    assert results == [
        ("1.jsonl", "ingested", 4, 2, 1, 1, ("2025-03-01",)),
        ("2.jsonl", "ingested", 2, 1, 1, 0, ("2025-03-02",)),
        ("3.csv", "ingested", 3, 1, 1, 1, ("2025-03-01",)),
        ("4.parquet", "unreadable", 0, 0, 0, 0, ()),
        ("5.jsonl", "ingested", 2, 1, 1, 0, ("2025-03-01",)),
        ("6.parquet", "ingested", 1, 0, 0, 1, ()),
        ("7.csv", "ingested", 2, 1, 0, 1, ("2025-03-01",)),
        ("8.csv", "unreadable", 0, 0, 0, 0, ()),
    ]
    assert [r[1] for r in rows] == [1, 2, 3, 5, 6, 8]
    assert [(f, line) for f, line, _ in quarantined] == [
        ("1.jsonl", 3),
        ("3.csv", 3),
        ("6.parquet", 1),
        ("7.csv", 3),
    ]


def test_csv_files_read_together_keep_their_own_record_numbers(tmp_path):
    from nbo_platform.domain.landing import csv_records

    header = "customer_id,activity_id\n"
    (tmp_path / "a.csv").write_text(header + "1,10\n1\n1,12\n")
    (tmp_path / "b.csv").write_text(header + "2,20\n2,21,x\n")
    rows = csv_records([tmp_path / "a.csv", tmp_path / "b.csv"], ("customer_id", "activity_id")).to_pylist()
    assert [(Path(r["_path"]).name, r["_line"], r["activity_id"], r["_parse_error"]) for r in rows] == [
        ("a.csv", 2, "10", None),
        ("a.csv", 3, None, "expected 2 fields, found 1"),
        ("a.csv", 4, "12", None),
        ("b.csv", 2, "20", None),
        ("b.csv", 3, None, "expected 2 fields, found 3"),
    ]


def test_an_interrupted_batch_leaves_nothing_behind(settings, lake, con, monkeypatch):
    import nbo_platform.domain.landing as landing

    d = settings.landing_dir / "customer_activity"
    write_jsonl(d / "1.jsonl", [activity(1), "{bad"])
    ingest(settings, lake, con)
    write_jsonl(d / "2.jsonl", [activity(2), "{bad"])

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(landing, "_write_manifest", crash)
    with pytest.raises(OSError):
        ingest(settings, lake, con)
    monkeypatch.undo()
    # The crashed batch wrote its fragment and quarantine but no manifest; a new file arrives meanwhile,
    # so the next pass is a different batch: the orphans go, the files are ingested once.
    write_jsonl(d / "3.jsonl", [activity(3), activity(2)])
    results, _ = ingest(settings, lake, con)
    assert [(r.file, r.rows_new, r.rows_duplicate, r.rows_quarantined) for r in results] == [
        ("2.jsonl", 1, 0, 1),
        ("3.jsonl", 1, 1, 0),
    ]
    assert [r[1] for r in lake_rows(con, lake)] == [1, 2, 3]
    assert [(f, line) for f, line, _ in quarantine(con, lake)] == [("1.jsonl", 2), ("2.jsonl", 2)]
    assert conservation_violations(con, lake, CUSTOMER_ACTIVITY) == []


def test_parquet_columns_stored_with_their_type_validate_as_text_does(tmp_path):
    """Pings in Parquet with native types (read as stored) and the same pings in JSONL (parsed from
    text) give the same accepted rows and the same reasons."""
    from nbo_platform.duck import connect
    from nbo_platform.lake import Lake
    from nbo_platform.settings import load_settings

    t = datetime(2025, 3, 1, 10, tzinfo=UTC)
    pings = [
        (1, t, 4.6, -74.0, 5.0),  # good
        (2, t, float("nan"), -74.0, None),  # not a number
        (None, t, 4.6, -74.0, 5.0),  # missing customer
        (3, t, 123.5, -74.0, 5.0),  # latitude out of range
        (4, t, 4.6, float("inf"), -1.0),  # not a number, negative accuracy
        (5, None, 4.6, -74.0, 5.0),  # missing event time
        (6, datetime(2023, 1, 1, tzinfo=UTC), 4.6, -74.0, 5.0),  # before the first partition
    ]
    columns = ["customer_id", "event_time", "lat", "lon", "accuracy_m"]
    table = pa.table(
        {
            "customer_id": pa.array([p[0] for p in pings], pa.int64()),
            "event_time": pa.array([p[1] for p in pings], pa.timestamp("us", tz="UTC")),
            "lat": pa.array([p[2] for p in pings], pa.float64()),
            "lon": pa.array([p[3] for p in pings], pa.float64()),
            "accuracy_m": pa.array([p[4] for p in pings], pa.float64()),
        }
    )

    def as_text(value):
        if isinstance(value, datetime):
            return value.isoformat()
        return value if value is None or value == value and abs(value) != float("inf") else str(value)

    seen = []
    for fmt in ("parquet", "jsonl"):
        settings = load_settings({"NBO_DATA_DIR": str(tmp_path / fmt)})
        lake, con = Lake(settings.lake_uri), connect()
        d = settings.landing_dir / "location_pings"
        d.mkdir(parents=True)
        if fmt == "parquet":
            pq.write_table(table, d / "p.parquet")
            assert stored_types(con, LOCATION_PINGS, [d / "p.parquet"]) == {
                "customer_id": "BIGINT",
                "event_time": "TIMESTAMP WITH TIME ZONE",
                "lat": "DOUBLE",
                "lon": "DOUBLE",
                "accuracy_m": "DOUBLE",
            }
        else:
            write_jsonl(d / "p.jsonl", [dict(zip(columns, map(as_text, p), strict=True)) for p in pings])
        consenting(lake, con, [(c, None, True) for c in range(-5, 10)])
        (result,), _ = ingest(settings, lake, con, feed=LOCATION_PINGS)
        assert (result.rows_read, result.rows_new, result.rows_quarantined) == (7, 1, 6)
        accepted = con.execute(f"SELECT customer_id, lat, lon FROM {lake.scan_sql('location_pings')}").fetchall()
        reasons = [r for _, _, r in quarantine(con, lake)]
        seen.append((accepted, reasons))
    assert seen[0] == seen[1]
    assert seen[0][1] == [
        "lat: not a number: nan",
        "customer_id: missing",
        "lat: latitude outside [-90, 90]: 123.5",
        "lon: not a number: inf; accuracy_m: negative accuracy: -1.0",
        "event_time: missing",
        "event_time: before the first partition (2024-01-01)",
    ]


# What a line of a generated activity file is: a good record (with an id from a small pool, so that
# repeats within and across files are frequent), one of the kinds of bad record, or a blank line.
_LINE = st.one_of(
    st.tuples(st.just("good"), st.integers(1, 6)),
    st.tuples(
        st.sampled_from(["unparseable", "not an object", "missing", "out of range", "not a number", "blank"]),
        st.integers(1, 6),
    ),
)
_BAD = {
    "unparseable": lambda i: '{"activity_id": ' + str(i),
    "not an object": lambda i: f"[{i}]",
    "missing": lambda i: json.dumps(activity(i, customer_id=None)),
    "out of range": lambda i: json.dumps(activity(i, propensity_to_buy=1.5)),
    "not a number": lambda i: json.dumps(activity(i, propensity_to_buy="high")),
    "blank": lambda i: "   ",
}


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_LINE, max_size=8), min_size=1, max_size=4), st.sampled_from([1, BATCH_BYTES]))
def test_every_line_is_new_duplicate_or_quarantined_as_one_file_after_another_would_have_it(files, batch_bytes):
    """Against the rule taken one line at a time, in file order: a bad record is quarantined, a good one
    is new unless its id was accepted before (earlier file or line), blank lines are no records; for
    every file, read = accepted + quarantined and accepted = new + duplicate; in one pass or a file a pass."""
    with tempfile.TemporaryDirectory() as tmp:
        config = load_settings({"NBO_DATA_DIR": tmp})
        lake, con = Lake(config.lake_uri), connect()
        expected, seen = {}, set()
        for n, lines in enumerate(files):
            name = f"f{n}.jsonl"
            text, counts, new = [], dict(read=0, quarantined=0, new=0, duplicate=0), []
            for line_no, (kind, i) in enumerate(lines, start=1):
                text.append(json.dumps(activity(i)) if kind == "good" else _BAD[kind](i))
                if kind == "blank":
                    continue
                counts["read"] += 1
                if kind != "good":
                    counts["quarantined"] += 1
                elif i in seen:
                    counts["duplicate"] += 1
                else:
                    seen.add(i)
                    counts["new"] += 1
                    new.append((i, line_no))
            write_jsonl(config.landing_dir / "customer_activity" / name, text)
            expected[name] = (counts, new)
        results, _ = ingest(config, lake, con, batch_bytes=batch_bytes)
        for r in results:
            counts, _ = expected[r.file]
            assert (r.rows_read, r.rows_quarantined, r.rows_new, r.rows_duplicate) == tuple(counts.values()), r
            assert r.rows_read == r.rows_accepted + r.rows_quarantined
            assert r.rows_accepted == r.rows_new + r.rows_duplicate
        assert {r.file for r in results} == set(expected)
        stored = []
        if lake.has_files("customer_activity"):
            stored = con.execute(
                f"SELECT source_file, activity_id, source_line FROM {lake.scan_sql('customer_activity')} ORDER BY ALL"
            ).fetchall()
        assert stored == sorted((f, i, line) for f, (_, new) in expected.items() for i, line in new)
        assert conservation_violations(con, lake, CUSTOMER_ACTIVITY) == []


def test_identifiers_transaction_ids_are_text_and_an_integer_is_its_decimal_text(settings, lake, con):
    from nbo_platform.domain.feeds import TRANSACTIONS

    def tx(tid, **over):
        return {"transaction_id": tid, "customer_id": 1, "store_id": 2, "amount": 9.5,
                "event_time": "2025-03-01T10:00:00Z", **over}  # fmt: skip

    folder = settings.landing_dir / "transactions"
    write_jsonl(folder / "core-1.jsonl", [tx("TX-2026-0001"), tx(42), tx(" 43 "), tx(""), tx(None)])
    (folder / "core-2.csv").write_text(
        "transaction_id,customer_id,store_id,amount,event_time\n"
        "TX-2026-0001,1,2,9.5,2025-03-01T10:00:00Z\n42,1,2,9.5,2025-03-01T10:00:00Z\nAB/77,1,2,1,2025-03-01T11:00:00Z\n"
    )
    pq.write_table(pa.table({"transaction_id": pa.array([44, 42], pa.int64()), "customer_id": [1, 1],
                             "store_id": [2, 2], "amount": [1.0, 1.0],
                             "event_time": pa.array([NOW, NOW], pa.timestamp("us", "UTC"))}),
                   folder / "core-3.parquet")  # fmt: skip
    results, _ = ingest(settings, lake, con, feed=TRANSACTIONS)
    assert [(r.rows_read, r.rows_new, r.rows_duplicate, r.rows_quarantined) for r in results] == [
        (5, 3, 0, 2),
        (3, 1, 2, 0),  # the same ids again, a number in the CSV is the same text as in the JSON
        (2, 1, 1, 0),
    ]
    ids = con.execute(f"SELECT transaction_id FROM {lake.scan_sql('transactions')} ORDER BY 1").fetchall()
    assert ids == [("42",), ("43",), ("44",), ("AB/77",), ("TX-2026-0001",)]
    assert {r[2] for r in quarantine(con, lake)} == {"transaction_id: missing"}


def test_consent_at_ingestion_pings_without_location_consent_are_discarded_and_counted(settings, lake, con):
    # Customer 1 consents until 10:00, withdraws, consents again from 12:00; customer 2 never did;
    # customer 3 is unknown; customer 4 is known only from 09:00.
    consenting(
        lake,
        con,
        [(1, None, True), (1, "2025-03-01 10:00:00+00", False), (1, "2025-03-01 12:00:00+00", True),
         (2, None, False), (4, "2025-03-01 09:00:00+00", True)],
    )  # fmt: skip

    def p(cid, hhmm, lat=4.6):
        return {"customer_id": cid, "event_time": f"2025-03-01T{hhmm}:00Z", "lat": lat, "lon": -74.1}

    folder = settings.landing_dir / "location_pings"
    write_jsonl(folder / "a.jsonl", [p(1, "09:59"), p(1, "10:00"), p(1, "11:59"), p(1, "12:00"), p(2, "09:00"),
                                     p(3, "09:00"), p(4, "08:59"), p(4, "09:00"), p(2, "09:30", lat=95)])  # fmt: skip
    write_jsonl(folder / "b.jsonl", [p(1, "10:30"), p(1, "09:59")])  # a repeat of a kept ping, a refused one
    a, b = ingest(settings, lake, con, LOCATION_PINGS)[0]
    assert (a.rows_read, a.rows_accepted, a.rows_new, a.rows_quarantined, a.rows_discarded) == (9, 3, 3, 1, 5)
    assert (b.rows_read, b.rows_accepted, b.rows_duplicate, b.rows_discarded) == (2, 1, 1, 1)
    for r in (a, b):
        assert r.rows_read == r.rows_accepted + r.rows_quarantined + r.rows_discarded
    kept = con.execute(f"SELECT customer_id, strftime(event_time, '%H:%M') FROM {lake.scan_sql('location_pings')} "
                       "ORDER BY ALL").fetchall()  # fmt: skip
    assert kept == [(1, "09:59"), (1, "12:00"), (4, "09:00")]
    # Their coordinates are stored nowhere: not in the lake, and not in the quarantine (only the bad row).
    assert [r[2] for r in quarantine(con, lake)] == ["lat: latitude outside [-90, 90]: 95.0"]
    manifest = {m["file"]: m for m in read_manifest(con, lake, LOCATION_PINGS)}
    assert manifest["a.jsonl"]["rows_discarded"] == 5
    assert manifest["a.jsonl"]["discard_reason"] == "no_location_consent"
    assert conservation_violations(con, lake, LOCATION_PINGS) == []


def test_time_bound_offers_the_watermark_of_a_file_is_the_latest_event_time_of_the_passes_before_it(
    settings, lake, con
):
    consenting(lake, con)
    folder = settings.landing_dir / "location_pings"

    def p(hhmm):
        return {"customer_id": 1, "event_time": f"2025-03-01T{hhmm}:00Z", "lat": 4.6, "lon": -74.1}

    write_jsonl(folder / "1.jsonl", [p("10:00"), p("10:20")])
    write_jsonl(folder / "2.jsonl", [p("10:10"), p("10:30")])  # two shards of one slot, arriving together
    first = ingest(settings, lake, con, LOCATION_PINGS)[0]
    write_jsonl(folder / "3.jsonl", [p("09:00")])
    write_jsonl(folder / "4.jsonl", [p("11:00")])
    later = ingest(settings, lake, con, LOCATION_PINGS)[0]
    write_jsonl(folder / "5.jsonl", [p("10:45")])
    last = ingest(settings, lake, con, LOCATION_PINGS)[0]
    marks = [(r.file, r.watermark and r.watermark.strftime("%H:%M")) for r in first + later + last]
    assert marks == [("1.jsonl", None), ("2.jsonl", None), ("3.jsonl", "10:30"), ("4.jsonl", "10:30"),
                     ("5.jsonl", "11:00")]  # fmt: skip
    manifest = {m["file"]: m for m in read_manifest(con, lake, LOCATION_PINGS)}
    assert manifest["3.jsonl"]["min_event_time"].strftime("%H:%M") == "09:00"


def test_a_utf8_byte_order_mark_is_no_part_of_the_first_record(settings, lake, con):
    path = settings.landing_dir / "customer_activity" / "bom.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(activity(1)) + "\n" + json.dumps(activity(2)) + "\n").encode())
    [r], _ = ingest(settings, lake, con)
    assert (r.rows_read, r.rows_new, r.rows_quarantined) == (2, 2, 0)


def test_a_file_written_to_while_it_is_read_is_recorded_as_changed_at_once(settings, lake, con, monkeypatch):
    from nbo_platform.domain import landing

    path = write_jsonl(settings.landing_dir / "customer_activity" / "a.jsonl", [activity(1)])
    real = landing._write_manifest

    def producer_goes_on(*args, **kwargs):
        with open(path, "a") as fh:  # the producer appends while the pass is under way
            fh.write(json.dumps(activity(2)) + "\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(landing, "_write_manifest", producer_goes_on)
    [r], changed = ingest(settings, lake, con)
    assert r.rows_new == 1 and [c.file.relpath for c in changed] == ["a.jsonl"]
    statuses = sorted(m["status"] for m in read_manifest(con, lake, CUSTOMER_ACTIVITY))
    assert statuses == ["changed", "ingested"]
