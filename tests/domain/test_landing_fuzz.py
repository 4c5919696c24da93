"""Fuzzing ingestion: 1,200 malformed landing files (random bytes, truncations, wrong types, huge lines,
byte order marks, other encodings, broken Parquet) beside good ones.

Nothing crashes, every good file is taken in, every file is in the manifest, for every file rows read =
accepted + quarantined + discarded, and no warehouse table or view then shows an e-mail, phone number
or IP address, though the bad files are full of them.
"""

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nbo_platform.domain.feeds import LANDING_FEEDS
from nbo_platform.domain.landing import conservation_violations, ingest_pending, read_manifest
from nbo_platform.duck import connect
from nbo_platform.lake import Lake
from nbo_platform.warehouse import publish
from tests.defs.scenario import pii_in_warehouse
from tests.domain.test_landing import consenting

PII = ["ana@example.com", "+57 300 1234567", "(300) 123-4567", "10.1.2.3", "2001:db8::7", "fe80::1ff:fe23:4567:890a"]
GOOD = {
    "customer_activity": {"customer_id": 1, "activity_id": 0, "ip_address": "10.0.0.1", "activity_type": "deposit",
                          "propensity_to_buy": 0.5, "event_time": "2025-03-01T10:00:00Z"},
    "location_pings": {"customer_id": 1, "event_time": "2025-03-01T10:00:00Z", "lat": 4.6, "lon": -74.1,
                       "accuracy_m": 5.0},
    "transactions": {"transaction_id": "TX-0", "customer_id": 1, "store_id": 2, "amount": 9.5,
                     "event_time": "2025-03-01T10:00:00Z"},
    "customers": {"customer_id": 1, "first_name": "Ana", "last_name": "Diaz", "email": "ana@example.com",
                  "phone": "+57 300 1234567", "gender": "Female", "income": 1, "fico": 700, "location_opt_in": True,
                  "marketing_opt_in": True, "preferred_channel": "sms", "updated_at": "2025-03-01T10:00:00Z"},
}  # fmt: skip
KEY = {"customer_activity": "activity_id", "transactions": "transaction_id", "location_pings": "event_time",
       "customers": "updated_at"}  # fmt: skip


def good_record(feed: str, i: int) -> dict:
    rec = dict(GOOD[feed])
    k = KEY[feed]
    rec[k] = f"2025-03-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z" if k.endswith(("time", "_at")) else (
        f"TX-{i}" if feed == "transactions" else i)  # fmt: skip
    return rec


def mutate(rng: np.random.Generator, feed: str, i: int) -> tuple[str, bytes]:
    """One malformed file: its suffix and bytes."""
    kind = int(rng.integers(0, 12))
    recs = [good_record(feed, i * 10 + j) for j in range(int(rng.integers(1, 6)))]
    pii = PII[int(rng.integers(0, len(PII)))]
    lines = [json.dumps(r) for r in recs]
    if kind == 0:
        return ".jsonl", rng.bytes(int(rng.integers(1, 400)))
    if kind == 1:  # cut anywhere
        text = "\n".join(lines).encode()
        return ".jsonl", text[: int(rng.integers(1, len(text)))]
    if kind == 2:  # wrong types, with contact data in the values
        wrong = [pii, 1.5, [1], {"a": pii}, None, True, "", " ", 10**30]
        bad = [{**r, **{c: wrong[int(rng.integers(0, len(wrong)))] for c in list(r)[:2]}} for r in recs]
        return ".jsonl", "\n".join(json.dumps(r) for r in bad).encode()
    if kind == 3:  # a huge line
        return ".jsonl", (lines[0] + "\n" + json.dumps({"x": pii * 20000}) + "\n").encode()
    if kind == 4:  # a byte order mark, Windows line ends
        return ".jsonl", b"\xef\xbb\xbf" + "\r\n".join(lines).encode()
    if kind == 5:  # another encoding: Latin-1 text is not UTF-8
        return ".jsonl", ("\n".join(lines) + f'\n{{"first_name": "José {pii}"}}').encode("latin-1")
    if kind == 6:  # UTF-16
        return ".jsonl", "\n".join(lines).encode("utf-16")
    header = ",".join(GOOD[feed])
    values = [",".join(str(v) for v in r.values()) for r in recs]
    if kind == 7:  # fields too many and too few, a contact in an extra field
        return ".csv", "\n".join([header, values[0] + f",{pii}", "1,2", *values[1:]]).encode()
    if kind == 8:  # random bytes or an unterminated quote
        return ".csv", (header + "\n" + values[0] + ',"' + pii).encode() if rng.random() < 0.5 else rng.bytes(300)
    if kind == 9:  # a byte order mark before the header
        return ".csv", ("\ufeff" + "\n".join([header, *values])).encode()
    table = pa.Table.from_pylist([{k: str(v) for k, v in r.items()} | {"note": pii} for r in recs])
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    if kind == 10:  # a Parquet file cut short, as a producer still writing it leaves it
        return ".parquet", data[: int(rng.integers(1, len(data)))]
    return ".parquet", data  # text where numbers belong, and a column the feed does not have


# pyarrow's CSV reader cannot hand a row that is not UTF-8 to the invalid-row handler: it reports the
# handler's decode error as "ignored" and fails the read, and the file is recorded as unreadable.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_fuzzed_landing_files_never_stop_ingestion_and_every_row_is_counted(tmp_path):
    rng = np.random.default_rng(20261208)
    landing, lake, con = tmp_path / "landing", Lake(str(tmp_path / "lake")), connect()
    consenting(lake, con)
    good: dict[str, set[str]] = {f: set() for f in LANDING_FEEDS}
    n = 0
    for feed in LANDING_FEEDS:
        folder = landing / feed
        folder.mkdir(parents=True)
        for i in range(300):
            if i % 25 == 0:  # a good file now and then, between the bad ones
                name = f"f{i:04d}-good.jsonl"
                (folder / name).write_text("\n".join(json.dumps(good_record(feed, 10_000 + i)) for _ in range(2)))
                good[feed].add(name)
                continue
            suffix, data = mutate(rng, feed, i)
            (folder / f"f{i:04d}{suffix}").write_bytes(data)
            n += 1
    assert n >= 1000
    for name, feed in LANDING_FEEDS.items():
        results, _ = ingest_pending(
            con, lake, landing, feed, lock_dir=tmp_path / "locks", partitions_start="2024-01-01", pii_salt="s"
        )
        assert len(results) == 300
        by_file = {r.file: r for r in results}
        for r in results:
            assert r.rows_read == r.rows_accepted + r.rows_quarantined + r.rows_discarded, r
            assert r.rows_accepted == r.rows_new + r.rows_duplicate, r
        for g in good[name]:  # each good file's record is taken in (once: its second line repeats it)
            assert by_file[g].status == "ingested" and (by_file[g].rows_new, by_file[g].rows_duplicate) == (1, 1), g
        assert len(read_manifest(con, lake, feed)) == 300
        assert conservation_violations(con, lake, feed) == []
    warehouse = tmp_path / "warehouse.duckdb"
    publish(lake, warehouse)
    assert pii_in_warehouse(warehouse) == {}
