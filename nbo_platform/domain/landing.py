"""Landing-zone ingestion: one mechanism for every feed and every file format.

A landing file is read into raw string records (``read_records``), typed and checked against its
feed's schema in one SQL pass (``validate_sql``), de-duplicated on the feed's key against everything
accepted before, and split three ways:

* new rows land in the lake as ``<table>/date=D/<file_id>.parquet`` (one fragment per event date);
* rows already accepted from an earlier file (at-least-once delivery) are counted as duplicates;
* rows that break the schema go to ``quarantine/<feed>/<file_id>.parquet`` with line, reason and
  the raw record.

For every file ``rows_read = rows_accepted + rows_quarantined`` and
``rows_accepted = rows_new + rows_duplicate``; the counts are recorded in the landing manifest
(``landing_manifest/<feed>/<file_id>.parquet``), written last, which also makes every file
ingested exactly once: a file whose name is in the manifest is never read again, and a file that
changed after it was ingested is reported by ``scan_landing`` instead of being re-read.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from nbo_platform.domain.feeds import Column, Feed
from nbo_platform.duck import sql_literal
from nbo_platform.lake import Lake

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
MANIFEST_TABLE = "landing_manifest"
QUARANTINE_TABLE = "quarantine"


class LandingError(Exception):
    """A file that cannot be read at all (not a format problem of single rows)."""


# --------------------------------------------------------------------------------------------
# Reading: any format -> raw string records with their line numbers
# --------------------------------------------------------------------------------------------


def file_format(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())


def read_records(con: duckdb.DuckDBPyConnection, path: Path, feed: Feed) -> str:
    """Load a file's records into a temp view and return its name.

    The view has ``_line`` (1-based line of the record; for CSV the record number, the header being
    line 1), ``_raw`` (the record as read), ``_parse_error`` (why the record could not be parsed,
    else NULL) and one VARCHAR column per feed column (NULL where absent).
    """
    fmt = file_format(path)
    view = f"records_{hashlib.md5(str(path).encode()).hexdigest()[:10]}"
    cols = feed.column_names
    try:
        if fmt == "jsonl":
            extract = ", ".join(
                f"CASE WHEN json_type(j) = 'OBJECT' THEN json_extract_string(j, {sql_literal('$.' + c)}) END AS {c}"
                for c in cols
            )
            con.execute(
                f"""
                CREATE OR REPLACE TEMP VIEW {view} AS
                WITH lines AS (
                    SELECT generate_subscripts(l, 1) AS _line, unnest(l) AS _raw
                    FROM (SELECT string_split(content, chr(10)) AS l
                          FROM read_text({sql_literal(str(path))}))
                ),
                parsed AS (
                    SELECT _line, rtrim(_raw, chr(13)) AS _raw, try_cast(rtrim(_raw, chr(13)) AS JSON) AS j
                    FROM lines WHERE trim(_raw) <> ''
                )
                SELECT _line, _raw,
                       CASE WHEN j IS NULL THEN 'unparseable JSON'
                            WHEN json_type(j) <> 'OBJECT' THEN 'not a JSON object' END AS _parse_error,
                       {extract}
                FROM parsed
                """
            )
        elif fmt == "csv":
            con.register(view + "_arrow", _read_csv_records(path, cols))
            # Raw text of a valid row: a JSON object of its fields, built vectorized.
            field_json = ", ".join(f"{sql_literal(c)}, {c}" for c in cols)
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT _line, "
                f"coalesce(_raw, json_object({field_json})::VARCHAR) AS _raw, _parse_error, {', '.join(cols)} "
                f"FROM {view}_arrow"
            )
        elif fmt == "parquet":
            present = {
                r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_literal(str(path))})").fetchall()
            }
            select = ", ".join(f"p.{c}::VARCHAR AS {c}" if c in present else f"NULL::VARCHAR AS {c}" for c in cols)
            con.execute(
                f"""
                CREATE OR REPLACE TEMP VIEW {view} AS
                SELECT p.file_row_number + 1 AS _line,
                       to_json(p)::VARCHAR AS _raw,
                       NULL::VARCHAR AS _parse_error,
                       {select}
                FROM read_parquet({sql_literal(str(path))}, file_row_number = true) p
                """
            )
        else:
            raise LandingError(f"{path}: unsupported file type {path.suffix!r} (use .jsonl, .csv or .parquet)")
        con.execute(f"SELECT count(*) FROM {view}").fetchone()  # surface read errors here
    except (duckdb.Error, pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise LandingError(f"{path}: cannot be read as {fmt}: {e}") from e
    return view


def _read_csv_records(path: Path, cols: tuple[str, ...]) -> pa.Table:
    bad: list[tuple[int, str, str]] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        bad.append((row.number, row.text, f"expected {row.expected_columns} fields, found {row.actual_columns}"))
        return "skip"

    table = pcsv.read_csv(
        path,
        # Single-threaded so that invalid-row numbers are known and valid rows keep file order.
        read_options=pcsv.ReadOptions(use_threads=False),
        parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(
            column_types=dict.fromkeys(cols, pa.string()),
            include_columns=list(cols),
            include_missing_columns=True,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    # Record numbers of valid rows: the numbers not taken by invalid rows, in order (header = 1).
    total = table.num_rows + len(bad)
    lines = np.setdiff1d(np.arange(2, total + 2, dtype=np.int64), np.array([b[0] for b in bad], dtype=np.int64))
    good = table.append_column("_line", pa.array(lines, pa.int64()))
    good = good.append_column("_parse_error", pa.nulls(table.num_rows, pa.string()))
    good = good.append_column("_raw", pa.nulls(table.num_rows, pa.string()))
    invalid = pa.table(
        {
            **{c: pa.nulls(len(bad), pa.string()) for c in cols},
            "_line": pa.array([b[0] for b in bad], pa.int64()),
            "_parse_error": pa.array([b[2] for b in bad], pa.string()),
            "_raw": pa.array([b[1] for b in bad], pa.string()),
        }
    )
    return pa.concat_tables([good, invalid.select(good.column_names)]).sort_by("_line")


# --------------------------------------------------------------------------------------------
# Validation: raw records -> typed columns + a reason per rejected row
# --------------------------------------------------------------------------------------------

_INT_PATTERN = r"^\s*[+-]?[0-9]+\s*$"


def _typed(c: Column) -> str:
    v = c.name
    if c.type == "int":
        # TRY_CAST rounds '1.5' to 2; only whole numbers are integers.
        return f"CASE WHEN regexp_matches({v}, '{_INT_PATTERN}') THEN TRY_CAST(trim({v}) AS BIGINT) END"
    if c.type == "float":
        return f"CASE WHEN isfinite(TRY_CAST({v} AS DOUBLE)) THEN TRY_CAST({v} AS DOUBLE) END"
    if c.type == "timestamp":
        return f"TRY_CAST({v} AS TIMESTAMPTZ)"
    if c.type == "bool":
        return f"TRY_CAST({v} AS BOOLEAN)"
    return f"NULLIF(trim({v}), '')"


_TYPE_WORD = {"int": "an integer", "float": "a number", "timestamp": "a timestamp", "bool": "a boolean"}


def validate_sql(
    feed: Feed,
    records_view: str,
    *,
    ingested_at: datetime,
    partitions_start: str | None = None,
) -> str:
    """SQL typing a records view: one row per record with typed columns and ``_reason``."""
    typed = ", ".join(f"{_typed(c)} AS t_{c.name}" for c in feed.columns)
    checks: list[str] = []
    for c in feed.columns:
        missing = f"{c.name} IS NULL OR trim({c.name}) = ''"
        if c.required:
            checks.append(f"CASE WHEN {missing} THEN '{c.name}: missing' END")
        if c.type != "string":
            checks.append(
                f"CASE WHEN NOT ({missing}) AND t_{c.name} IS NULL "
                f"THEN '{c.name}: not {_TYPE_WORD[c.type]}: ' || left({c.name}, 80) END"
            )
        if c.check:
            pred = c.check.format(c=f"t_{c.name}")
            checks.append(
                f"CASE WHEN t_{c.name} IS NOT NULL AND NOT ({pred}) "
                f"THEN '{c.name}: {c.check_reason}: ' || t_{c.name}::VARCHAR END"
            )
    ingested = f"TIMESTAMPTZ {sql_literal(ingested_at.isoformat())}"
    if feed.event_time:
        et = f"coalesce(t_{feed.event_time}, {ingested})"
        if partitions_start:
            checks.append(
                f"CASE WHEN {et} < TIMESTAMPTZ {sql_literal(partitions_start)} "
                f"THEN '{feed.event_time}: before the first partition ({partitions_start})' END"
            )
        checks.append(
            f"CASE WHEN {et} > {ingested} + INTERVAL 1 DAY THEN '{feed.event_time}: more than a day in the future' END"
        )
    for pred, reason in feed.extra_checks:
        checks.append(f"CASE WHEN NOT ({pred}) THEN {sql_literal(reason)} END")
    renamed = ", ".join(f"t_{c.name} AS {c.name}" for c in feed.columns)
    # Only the first failure of each column is listed: enough to fix the record, short to read.
    return f"""
        WITH t AS (SELECT *, {typed} FROM {records_view})
        SELECT _line, _raw, {renamed},
               coalesce(_parse_error, NULLIF(concat_ws('; ', {", ".join(checks)}), '')) AS _reason
        FROM t
    """


# --------------------------------------------------------------------------------------------
# Files: fingerprints, the manifest, what is pending
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LandingFile:
    feed: str
    path: Path
    relpath: str  # relative to landing/<feed>/: the file's name in the manifest
    size: int
    mtime_ns: int

    @property
    def file_id(self) -> str:
        return file_id(self.feed, self.relpath)


@dataclass(frozen=True)
class ChangedFile:
    file: LandingFile
    ingested_sha256: str
    current_sha256: str


def file_id(feed: str, relpath: str) -> str:
    return hashlib.sha256(f"{feed}/{relpath}".encode()).hexdigest()[:20]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def list_landing_files(landing_dir: Path, feed: Feed) -> list[LandingFile]:
    """The feed's files in name order (streaming sinks name files by time or offset)."""
    root = landing_dir / feed.name
    if not root.exists():
        return []
    out = []
    for p in sorted(root.rglob("*")):
        # Hidden and temporary names are files still being written by the producer.
        if not p.is_file() or p.name.startswith((".", "_")) or file_format(p) is None:
            continue
        st = p.stat()
        out.append(LandingFile(feed.name, p, p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    return out


def read_manifest(con: duckdb.DuckDBPyConnection, lake: Lake, feed: Feed | None = None) -> list[dict]:
    d = lake.table_dir(MANIFEST_TABLE) / (feed.name if feed else "")
    if not d.exists() or not any(d.rglob("*.parquet")):
        return []
    rows = con.execute(
        f"SELECT * FROM read_parquet('{d}/**/*.parquet', union_by_name = true) ORDER BY feed, file"
    ).fetchall()
    names = [c[0] for c in con.description]
    return [dict(zip(names, r, strict=True)) for r in rows]


def scan_landing(
    con: duckdb.DuckDBPyConnection, lake: Lake, landing_dir: Path, feed: Feed
) -> tuple[list[LandingFile], list[ChangedFile]]:
    """Files not yet ingested, and ingested files whose content has changed since."""
    manifest = {m["file"]: m for m in read_manifest(con, lake, feed)}
    pending, changed = [], []
    for f in list_landing_files(landing_dir, feed):
        m = manifest.get(f.relpath)
        if m is None:
            pending.append(f)
        elif (m["size_bytes"], m["mtime_ns"]) != (f.size, f.mtime_ns):
            current = sha256_of(f.path)  # a touched but identical file is not a change
            if current != m["sha256"]:
                changed.append(ChangedFile(f, m["sha256"], current))
    return pending, changed


# --------------------------------------------------------------------------------------------
# Ingestion
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    feed: str
    file: str
    status: str  # ingested | unreadable
    rows_read: int
    rows_accepted: int
    rows_new: int
    rows_duplicate: int
    rows_quarantined: int
    dates: tuple[str, ...]
    error: str | None = None


def pii_hash_sql(column: str, salt: str) -> str:
    return f"CASE WHEN {column} IS NOT NULL THEN sha256({sql_literal(salt)} || {column}) END"


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    feed: Feed,
    file: LandingFile,
    *,
    ingested_at: datetime,
    partitions_start: str,
    pii_salt: str,
) -> IngestResult:
    """Ingest one landing file. Idempotent: a retry after a crash overwrites its own fragments."""
    fid = file.file_id
    sha = sha256_of(file.path)
    base = dict(feed=feed.name, file=file.relpath)
    try:
        records = read_records(con, file.path, feed)
    except LandingError as e:
        result = IngestResult(
            **base,
            status="unreadable",
            rows_read=0,
            rows_accepted=0,
            rows_new=0,
            rows_duplicate=0,
            rows_quarantined=0,
            dates=(),
            error=str(e),
        )
        _write_manifest(con, lake, file, sha, result, ingested_at)
        return result

    con.execute(
        f"CREATE OR REPLACE TEMP TABLE validated AS "
        f"{validate_sql(feed, records, ingested_at=ingested_at, partitions_start=partitions_start)}"
    )
    et = feed.event_time
    ingested = f"TIMESTAMPTZ {sql_literal(ingested_at.isoformat())}"
    if et and not feed.column(et).required:
        con.execute(f"UPDATE validated SET {et} = {ingested} WHERE {et} IS NULL")
    date_expr = f"{et}::DATE" if et else "NULL::DATE"
    key = ", ".join(feed.key)
    prior = _prior_keys_sql(con, lake, feed, file.relpath)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE checked AS
        WITH ranked AS (
            SELECT *, {date_expr} AS date,
                   row_number() OVER (PARTITION BY {key} ORDER BY _line) AS _rank
            FROM validated WHERE _reason IS NULL
        )
        SELECT r.*, CASE WHEN r._rank > 1 OR p.{feed.key[0]} IS NOT NULL THEN 'duplicate' ELSE 'new' END
               AS _status
        FROM ranked r LEFT JOIN ({prior}) p USING ({key})
        """
    )
    counts = dict(con.execute("SELECT _status, count(*) FROM checked GROUP BY ALL").fetchall())
    rows_read, quarantined = con.execute(
        "SELECT count(*), count(*) FILTER (_reason IS NOT NULL) FROM validated"
    ).fetchone()

    stored_cols = [f"{pii_hash_sql(c, pii_salt)} AS {c}_hash" if c in feed.hashed else c for c in feed.column_names]
    select_new = (
        f"SELECT {', '.join(stored_cols)}, {sql_literal(file.relpath)} AS source_file, _line AS source_line, "
        f"{ingested} AS ingested_at, date FROM checked WHERE _status = 'new' ORDER BY {et or key}, _line"
    )
    # Fragments of an earlier, interrupted attempt at this same file are replaced, not added to.
    lake.remove(lake.table_dir(feed.table).glob(f"*/{fid}.parquet"))
    written = lake.write_partitioned(con, select_new, feed.table, f"{fid}.parquet") if counts.get("new") else {}

    _write_quarantine(
        con,
        lake,
        feed,
        file.relpath,
        fid,
        ingested_at,
        "SELECT _line, _raw, _reason FROM validated WHERE _reason IS NOT NULL",
    )
    result = IngestResult(
        **base,
        status="ingested",
        rows_read=int(rows_read),
        rows_accepted=int(rows_read - quarantined),
        rows_new=int(counts.get("new", 0)),
        rows_duplicate=int(counts.get("duplicate", 0)),
        rows_quarantined=int(quarantined),
        dates=tuple(sorted(written)),
    )
    _write_manifest(con, lake, file, sha, result, ingested_at)
    return result


def _prior_keys_sql(con: duckdb.DuckDBPyConnection, lake: Lake, feed: Feed, relpath: str) -> str:
    key = ", ".join(feed.key)
    if not lake.has_files(feed.table):
        return f"SELECT {key} FROM validated WHERE false"
    where = f"source_file <> {sql_literal(relpath)}"
    if feed.event_time and feed.event_time in feed.key:
        # The key holds the event time, so a repeat can only sit in a date this file touches.
        where += f" AND date IN (SELECT DISTINCT {feed.event_time}::DATE FROM validated WHERE _reason IS NULL)"
    return f"SELECT DISTINCT {key} FROM {lake.scan_sql(feed.table)} WHERE {where}"


def _write_quarantine(
    con: duckdb.DuckDBPyConnection, lake: Lake, feed: Feed, file: str, fid: str, at: datetime, rows_sql: str
) -> int:
    target = lake.table_dir(QUARANTINE_TABLE) / feed.name.replace("/", "__") / f"{fid}.parquet"
    n = con.execute(f"SELECT count(*) FROM ({rows_sql})").fetchone()[0]
    if not n:
        target.unlink(missing_ok=True)
        return 0
    return lake.write(
        con,
        f"SELECT {sql_literal(feed.name)} AS feed, {sql_literal(file)} AS file, _line AS line, "
        f"_reason AS reason, _raw AS raw, TIMESTAMPTZ {sql_literal(at.isoformat())} AS quarantined_at "
        f"FROM ({rows_sql}) ORDER BY _line",
        target,
    )


def _write_manifest(
    con: duckdb.DuckDBPyConnection, lake: Lake, file: LandingFile, sha: str, r: IngestResult, at: datetime
) -> None:
    target = lake.table_dir(MANIFEST_TABLE) / file.feed / f"{file.file_id}.parquet"
    row = pa.table(
        {
            "feed": [r.feed],
            "file": [r.file],
            "file_id": [file.file_id],
            "size_bytes": [file.size],
            "mtime_ns": [file.mtime_ns],
            "sha256": [sha],
            "status": [r.status],
            "rows_read": [r.rows_read],
            "rows_accepted": [r.rows_accepted],
            "rows_new": [r.rows_new],
            "rows_duplicate": [r.rows_duplicate],
            "rows_quarantined": [r.rows_quarantined],
            "dates": [list(r.dates)],
            "error": [r.error],
            "ingested_at": [at],
        }
    )
    con.register("manifest_row", row)
    lake.write(con, "SELECT * FROM manifest_row", target)
    con.unregister("manifest_row")


@contextmanager
def feed_lock(lock_dir: Path, feed: Feed) -> Iterator[None]:
    """One ingester per feed at a time, across processes (concurrent runs, the CLI)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{feed.table}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ingest_pending(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    landing_dir: Path,
    feed: Feed,
    *,
    lock_dir: Path,
    partitions_start: str,
    pii_salt: str,
    now: datetime | None = None,
) -> tuple[list[IngestResult], list[ChangedFile]]:
    """Ingest every pending file of a feed, in name order; report changed files."""
    with feed_lock(lock_dir, feed):
        pending, changed = scan_landing(con, lake, landing_dir, feed)
        results = [
            ingest_file(
                con,
                lake,
                feed,
                f,
                ingested_at=now or datetime.now(UTC),
                partitions_start=partitions_start,
                pii_salt=pii_salt,
            )
            for f in pending
        ]
    return results, changed


def planned_dates(con: duckdb.DuckDBPyConnection, path: Path, feed: Feed, now: datetime) -> set[str]:
    """The event dates a pending file will touch, read with the same parser as ingestion."""
    if feed.event_time is None:
        return set()
    try:
        view = read_records(con, path, feed)
    except LandingError:
        return set()
    c = feed.column(feed.event_time)
    rows = con.execute(
        f"SELECT DISTINCT coalesce({_typed(c)}, TIMESTAMPTZ {sql_literal(now.isoformat())})::DATE::VARCHAR "
        f"FROM {view} WHERE _parse_error IS NULL"
    ).fetchall()
    return {r[0] for r in rows}


# --------------------------------------------------------------------------------------------
# Reference tables: the same validation, for a snapshot file
# --------------------------------------------------------------------------------------------


def find_reference_file(reference_dir: Path, stem: str) -> Path | None:
    found = [reference_dir / f"{stem}{ext}" for ext in (".csv", ".parquet", ".jsonl")]
    found = [p for p in found if p.exists()]
    if len(found) > 1:
        raise LandingError(f"{reference_dir}: several files for {stem!r}: {[p.name for p in found]}; keep one")
    return found[0] if found else None


@dataclass(frozen=True)
class ReferenceLoad:
    view: str  # temp table of accepted, typed rows
    rows_read: int
    rows_accepted: int
    rows_quarantined: int


def load_reference(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    feed: Feed,
    path: Path,
    *,
    loaded_at: datetime,
    row_checks: Callable[[duckdb.DuckDBPyConnection, str], str] | None = None,
) -> ReferenceLoad:
    """Validate a reference snapshot; rejected rows replace the snapshot's quarantine file.

    ``row_checks(con, view)`` may add checks SQL cannot express (geometry, cross-table references):
    given the view of rows that passed the schema, it returns a relation of ``(_line, _reason)`` for
    the rows it rejects.
    """
    records = read_records(con, path, feed)
    view = f"ref_{feed.table}"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {view}_validated AS {validate_sql(feed, records, ingested_at=loaded_at)}"
    )
    if row_checks is not None:
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {view}_passed AS SELECT * FROM {view}_validated WHERE _reason IS NULL"
        )
        rejected = row_checks(con, f"{view}_passed")
        con.execute(
            f"UPDATE {view}_validated v SET _reason = r._reason FROM ({rejected}) r "
            "WHERE v._line = r._line AND r._reason IS NOT NULL"
        )
    key = ", ".join(feed.key)
    # Within a snapshot a repeated key is an error of the maintainer, not a delivery repeat.
    con.execute(
        f"""
        UPDATE {view}_validated v SET _reason = 'duplicate key ({key}) in the snapshot, first at line ' || d.first_line
        FROM (SELECT _line, min(_line) OVER (PARTITION BY {key}) AS first_line
              FROM {view}_validated WHERE _reason IS NULL) d
        WHERE v._line = d._line AND d._line <> d.first_line
        """
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {view} AS SELECT * EXCLUDE (_reason, _raw) FROM {view}_validated "
        "WHERE _reason IS NULL ORDER BY _line"
    )
    rel = os.path.relpath(path, path.parent.parent)
    quarantined = _write_quarantine(
        con,
        lake,
        feed,
        rel,
        file_id(feed.name, rel),
        loaded_at,
        f"SELECT _line, _raw, _reason FROM {view}_validated WHERE _reason IS NOT NULL",
    )
    total = con.execute(f"SELECT count(*) FROM {view}_validated").fetchone()[0]
    return ReferenceLoad(view, int(total), int(total - quarantined), int(quarantined))


# --------------------------------------------------------------------------------------------
# Audit: what the manifest says against what the lake holds
# --------------------------------------------------------------------------------------------


def conservation_violations(con: duckdb.DuckDBPyConnection, lake: Lake, feed: Feed) -> list[str]:
    """Files whose recorded counts do not add up, or do not match the rows actually stored.

    For every file: read = accepted + quarantined, accepted = new + duplicate, the lake holds exactly
    ``rows_new`` rows from it and the quarantine exactly ``rows_quarantined``.
    """
    manifest = [m for m in read_manifest(con, lake, feed) if m["status"] == "ingested"]
    if not manifest:
        return []
    stored: dict[str, int] = {}
    if lake.has_files(feed.table):
        stored = dict(
            con.execute(f"SELECT source_file, count(*) FROM {lake.scan_sql(feed.table)} GROUP BY ALL").fetchall()
        )
    qdir = lake.table_dir(QUARANTINE_TABLE) / feed.name.replace("/", "__")
    quarantined: dict[str, int] = {}
    if qdir.exists() and any(qdir.glob("*.parquet")):
        quarantined = dict(
            con.execute(f"SELECT file, count(*) FROM read_parquet('{qdir}/*.parquet') GROUP BY ALL").fetchall()
        )
    problems = []
    for m in manifest:
        f = m["file"]
        if m["rows_read"] != m["rows_accepted"] + m["rows_quarantined"]:
            problems.append(
                f"{f}: read {m['rows_read']} != accepted {m['rows_accepted']} + quarantined {m['rows_quarantined']}"
            )
        if m["rows_accepted"] != m["rows_new"] + m["rows_duplicate"]:
            problems.append(
                f"{f}: accepted {m['rows_accepted']} != new {m['rows_new']} + duplicate {m['rows_duplicate']}"
            )
        if stored.get(f, 0) != m["rows_new"]:
            problems.append(f"{f}: lake holds {stored.get(f, 0)} rows, manifest says {m['rows_new']} new")
        if quarantined.get(f, 0) != m["rows_quarantined"]:
            problems.append(
                f"{f}: quarantine holds {quarantined.get(f, 0)} rows, manifest says {m['rows_quarantined']}"
            )
    return problems
