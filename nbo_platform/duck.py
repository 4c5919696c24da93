"""DuckDB connections the pipeline computes with.

All computation happens in in-memory connections that read and write Parquet, so no pipeline step
ever holds a lock on the analysts' warehouse file (see ``warehouse.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb


def connect(threads: int | None = None, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    # The contract reads a timestamp without offset as UTC, and event dates are UTC dates.
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # run logs, not terminals
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    return con


def enum_sql(values: Iterable[str]) -> str:
    """An ENUM type of these values (repeats dropped, order kept)."""
    return "ENUM(" + ", ".join(sql_literal(v) for v in dict.fromkeys(values)) + ")"


def sql_literal(value: object) -> str:
    """A SQL literal for a value that came from configuration (numbers, strings, booleans)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"
