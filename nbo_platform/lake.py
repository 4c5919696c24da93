"""The Parquet data lake: where each table lives and how files get there atomically.

Tables are folders under the lake root; partitioned tables use Hive-style ``date=YYYY-MM-DD/``
folders. Every file is written under a temporary name and renamed into place, so a reader (an
analyst's query, a concurrent run) sees either the old file or the new one, never half a file.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

import duckdb


class UnsupportedLakeURI(ValueError):
    pass


def lake_root_path(uri: str) -> Path:
    """The local folder of a lake URI (a plain path or ``file://``)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme == "file" else uri
        return Path(path).expanduser().resolve()
    if len(parsed.scheme) == 1:  # a Windows drive letter, not a scheme
        return Path(uri).resolve()
    raise UnsupportedLakeURI(
        f"lake URI {uri!r}: scheme {parsed.scheme!r} is not supported yet; use a local path or file:// URI"
    )


class Lake:
    def __init__(self, uri: str):
        self.uri = uri
        self.root = lake_root_path(uri)

    def table_dir(self, table: str) -> Path:
        return self.root / table

    def partition_dir(self, table: str, date: str) -> Path:
        return self.table_dir(table) / f"date={date}"

    def has_files(self, table: str) -> bool:
        d = self.table_dir(table)
        return d.exists() and any(d.rglob("*.parquet"))

    def glob(self, table: str) -> str:
        """A DuckDB glob over every Parquet file of a table (partitioned or not)."""
        return str(self.table_dir(table) / "**" / "*.parquet")

    def partition_files(self, table: str, date: str) -> list[Path]:
        d = self.partition_dir(table, date)
        return sorted(d.glob("*.parquet")) if d.exists() else []

    def dates(self, table: str) -> list[str]:
        d = self.table_dir(table)
        if not d.exists():
            return []
        return sorted(
            p.name.removeprefix("date=")
            for p in d.iterdir()
            if p.is_dir() and p.name.startswith("date=") and any(p.glob("*.parquet"))
        )

    def scan_sql(self, table: str, hive: bool = True) -> str:
        """SQL reading a whole table; ``union_by_name`` so schema extensions stay readable."""
        return f"read_parquet('{self.glob(table)}', hive_partitioning = {str(hive).lower()}, union_by_name = true)"

    def write(self, con: duckdb.DuckDBPyConnection, query: str, target: Path) -> int:
        """Write a query's rows to ``target`` (one Parquet file) atomically; returns the row count."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            # DuckDB's default row groups (122,880 rows): written in parallel, a quarter faster than 1M-row groups
            # on two cores for the same file size.
            con.execute(f"COPY ({query}) TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)")
            rows = con.execute(f"SELECT count(*) FROM read_parquet('{tmp}')").fetchone()[0]
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        return int(rows)

    def write_partitioned(
        self, con: duckdb.DuckDBPyConnection, query: str, table: str, file_name: str
    ) -> dict[str, int]:
        """Write a query with a ``date`` column as ``<table>/date=D/<file_name>`` files, one per date.

        Returns rows written per date. Each file is replaced atomically; dates absent from the query
        keep their files.
        """
        staging = self.root / ".staging" / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            con.execute(
                f"COPY ({query}) TO '{staging}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (date), "
                "FILENAME_PATTERN 'part_{{i}}', OVERWRITE_OR_IGNORE true)"
            )
            written: dict[str, int] = {}
            for part_dir in sorted(staging.glob("date=*")):
                date = part_dir.name.removeprefix("date=")
                files = sorted(part_dir.glob("*.parquet"))
                target = self.partition_dir(table, date) / file_name
                target.parent.mkdir(parents=True, exist_ok=True)
                if len(files) == 1:
                    os.replace(files[0], target)
                else:  # DuckDB may split a large partition into several files: merge them
                    self.write(con, f"SELECT * FROM read_parquet({[str(f) for f in files]})", target)
                written[date] = int(con.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchone()[0])
            return written
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def remove(self, paths: Iterable[Path]) -> None:
        for p in paths:
            p.unlink(missing_ok=True)
