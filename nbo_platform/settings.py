"""The one place that resolves where the platform's data lives.

Every path is derived from ``NBO_DATA_DIR`` (default: ``data/`` in the repository) unless a more
specific variable overrides it. Nothing else in the code base reads these environment variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from nbo_platform.domain.delivery import CHANNEL_KINDS
from nbo_platform.lake import PARQUET_VERSIONS

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_data_dir() -> Path:
    # In a source checkout the embedded default is the repository's data/ folder; an installed
    # package has no repository, so it falls back to ./data of the working directory.
    if (REPO_ROOT / "pyproject.toml").exists():
        return REPO_ROOT / "data"
    return Path.cwd() / "data"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    lake_uri: str
    warehouse_path: Path
    partitions_start: str = "2024-01-01"
    # Salt of the hashes that replace contact data and IP addresses in analyst-facing tables.
    # Set NBO_PII_SALT to a secret in production: an unsalted hash of an IPv4 address is reversible.
    pii_salt: str = "nbo-platform-development-salt"
    # Where sent notifications go: "outbox" (files under outbox/) or "webhook" (POST to webhook_url).
    delivery: str = "outbox"
    webhook_url: str | None = None
    # Parquet format version of the lake's files (see ``lake.PARQUET_VERSIONS``): v1 for older readers.
    parquet_version: str = "v2"
    # Feeds keyed by an id alone (activities, transactions) look a batch's ids up in every date of the
    # feed's history, a cost that grows with it when ids are random. A number of days bounds that
    # lookup to the dates within that many days of the batch's event dates (docs/operations.md,
    # "De-duplication as history grows"); None: all history, the contract's "kept once" for any repeat.
    dedup_window_days: int | None = None
    # A landing file modified less than this many seconds ago is taken as still being written and is
    # not read yet (NBO_LANDING_SETTLE_SECONDS); ``nbo run`` waits for it, the sensor takes it next tick.
    landing_settle_seconds: float = 5.0

    @property
    def reference_dir(self) -> Path:
        return self.data_dir / "reference"

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def state_dir(self) -> Path:
        """Pipeline-private state: locks, dbt's working database, the local Dagster home."""
        return self.data_dir / ".nbo"

    @property
    def rules_path(self) -> Path:
        return self.reference_dir / "nbo_rules.yaml"

    @property
    def policy_path(self) -> Path:
        return self.reference_dir / "policy.yaml"

    @property
    def dagster_home(self) -> Path:
        return self.state_dir / "dagster_home"


class SettingsError(ValueError):
    """An environment variable with a value the platform cannot use; the message names it."""


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings from the environment, checked before anything runs (``SettingsError``)."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("NBO_DATA_DIR") or _default_data_dir()).expanduser().resolve()
    lake_uri = env.get("NBO_LAKE_URI") or str(data_dir / "lake")
    if "," in lake_uri:
        # dbt reads the lake through DuckDB's file search path, a comma-separated list of folders.
        name = "NBO_LAKE_URI" if env.get("NBO_LAKE_URI") else "NBO_DATA_DIR"
        raise SettingsError(f"{name}: the lake root {lake_uri!r} holds a comma; choose a path without one")
    warehouse = Path(env.get("NBO_WAREHOUSE_PATH") or data_dir / "warehouse.duckdb").expanduser().resolve()
    start = env.get("NBO_PARTITIONS_START") or Settings.partitions_start
    try:
        date.fromisoformat(start)
    except ValueError:
        raise SettingsError(f"NBO_PARTITIONS_START={start!r}: expected a date, YYYY-MM-DD") from None
    salt = env.get("NBO_PII_SALT") or Settings.pii_salt
    delivery = _one_of(env, "NBO_DELIVERY", CHANNEL_KINDS, Settings.delivery)
    webhook_url = env.get("NBO_WEBHOOK_URL") or None
    if delivery == "webhook" and not webhook_url:
        raise SettingsError("NBO_DELIVERY='webhook' needs NBO_WEBHOOK_URL, the endpoint batches are POSTed to")
    return Settings(
        data_dir=data_dir,
        lake_uri=lake_uri,
        warehouse_path=warehouse,
        partitions_start=start,
        pii_salt=salt,
        delivery=delivery,
        webhook_url=webhook_url,
        parquet_version=_one_of(env, "NBO_PARQUET_VERSION", PARQUET_VERSIONS, Settings.parquet_version),
        dedup_window_days=_days(env, "NBO_DEDUP_WINDOW_DAYS"),
        landing_settle_seconds=_seconds(env, "NBO_LANDING_SETTLE_SECONDS", Settings.landing_settle_seconds),
    )


def _one_of(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = env.get(name) or default
    if value not in allowed:
        raise SettingsError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
    return value


def _days(env: Mapping[str, str], name: str) -> int | None:
    """A whole number of days >= 0 from the environment, or None when unset or empty."""
    value = (env.get(name) or "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        raise SettingsError(f"{name}={value!r}: expected a whole number of days (0 or more), or unset")
    return int(value)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A number of seconds >= 0 from the environment, or ``default`` when unset or empty."""
    value = (env.get(name) or "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not (seconds >= 0 and seconds != float("inf")):
        raise SettingsError(f"{name}={value!r}: expected a number of seconds (0 or more), or unset")
    return seconds
