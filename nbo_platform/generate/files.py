"""Landing files as a streaming sink writes them: many files per day, late, repeated and broken rows.

Each feed is cut into ``files_per_day`` time slots per shard (a sink partition). A small share of
rows arrives late (in a file 1-3 slots later, possibly the next day's folder), a share is repeated in
the next slot's file (at-least-once delivery), and a share is malformed in a way the contract's
schema rejects (truncated JSON, out-of-range values, unparseable numbers). Malformed rows are counted
so tests can check ingestion quarantines exactly those.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Imperfections:
    late_share: float = 0.01
    duplicate_share: float = 0.005
    malformed_share: float = 0.001


@dataclass
class FeedWriter:
    root: Path  # landing/<feed>
    feed: str
    fmt: str  # jsonl | csv | parquet
    files_per_day: int
    imperfections: Imperfections
    seed: int
    time_column: str = "event_time"
    carry: dict[int, list[pd.DataFrame]] = field(default_factory=dict)  # shard -> rows for later days
    rows_written: int = 0
    malformed: int = 0
    duplicates: int = 0
    files: int = 0

    def add(self, day: pd.Timestamp, day_index: int, shard: int, df: pd.DataFrame) -> None:
        """Rows of one day and shard: written to that day's files, late ones kept for the next day."""
        rng = np.random.default_rng([self.seed, day_index, shard, hash_feed(self.feed)])
        imp = self.imperfections
        n = len(df)
        hours = (df[self.time_column] - day).dt.total_seconds().to_numpy() / 3600 if n else np.zeros(0)
        slot = np.floor(hours * self.files_per_day / 24).astype(int).clip(0, self.files_per_day - 1)
        late = rng.random(n) < imp.late_share
        slot = slot + np.where(late, rng.integers(1, 4, n), 0)
        bad = rng.random(n) < imp.malformed_share
        rows = df.assign(_slot=slot, _bad=bad)
        dup = rows[rng.random(n) < imp.duplicate_share].assign(_bad=False)
        dup["_slot"] = dup["_slot"] + 1
        self.duplicates += len(dup)
        rows = pd.concat([rows, dup], ignore_index=True)
        rows = pd.concat([*self.carry.pop(shard, []), rows], ignore_index=True)
        later = rows["_slot"] >= self.files_per_day
        if later.any():
            self.carry.setdefault(shard, []).append(
                rows[later].assign(_slot=rows.loc[later, "_slot"] - self.files_per_day)
            )
        self._write(day, shard, rows[~later], rng)

    def flush(self, day: pd.Timestamp) -> None:
        """Write what arrives after the last generated day (late rows) into that next day's files."""
        rng = np.random.default_rng([self.seed, 999_999, hash_feed(self.feed)])
        for shard, parts in sorted(self.carry.items()):
            rows = pd.concat(parts, ignore_index=True)
            rows["_slot"] = rows["_slot"].clip(upper=self.files_per_day - 1)
            self._write(day, shard, rows, rng)
        self.carry.clear()

    def _write(self, day: pd.Timestamp, shard: int, rows: pd.DataFrame, rng: np.random.Generator) -> None:
        date = day.strftime("%Y-%m-%d")
        folder = self.root / date
        folder.mkdir(parents=True, exist_ok=True)
        for slot, part in rows.groupby("_slot", sort=True):
            part = part.sort_values(self.time_column, kind="stable")
            bad = part["_bad"].to_numpy()
            data = part.drop(columns=["_slot", "_bad"]).reset_index(drop=True)
            target = folder / f"{self.feed}-{date}T{int(slot):02d}-s{shard:02d}.{self.fmt}"
            self.malformed += int(bad.sum())
            self.rows_written += len(data)
            self.files += 1
            getattr(self, f"_write_{self.fmt}")(target, data, bad, rng)

    def _write_jsonl(self, target: Path, data: pd.DataFrame, bad: np.ndarray, rng) -> None:
        text = data.to_json(orient="records", lines=True, date_format="iso", date_unit="ms")
        lines = text.splitlines()
        for i in np.flatnonzero(bad):  # a handful of rows per file
            if rng.random() < 0.5:
                lines[i] = lines[i][: len(lines[i]) // 2]  # cut off mid-record
            else:
                rec = json.loads(lines[i])
                key = "propensity_to_buy" if "propensity_to_buy" in rec else "fico" if "fico" in rec else "customer_id"
                rec[key] = 1.5 if key == "propensity_to_buy" else 9999 if key == "fico" else "abc"
                lines[i] = json.dumps(rec)
        target.write_text("\n".join(lines) + "\n")

    def _write_csv(self, target: Path, data: pd.DataFrame, bad: np.ndarray, rng) -> None:
        out = data.copy()
        if "event_time" in out:
            out["event_time"] = out["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
        if bad.any():
            col = "amount" if "amount" in out else out.columns[0]
            out[col] = out[col].astype(object)
            out.loc[bad, col] = "12,50 COP"  # a locale-formatted number: not parseable
        out.to_csv(target, index=False)

    def _write_parquet(self, target: Path, data: pd.DataFrame, bad: np.ndarray, rng) -> None:
        out = data.copy()
        if bad.any() and "lat" in out:
            out.loc[bad, "lat"] = 123.456  # outside [-90, 90]
        pq.write_table(pa.Table.from_pandas(out, preserve_index=False), target, compression="zstd")


def hash_feed(name: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(name))  # stable across runs (unlike hash())
