"""The one place that resolves where the platform's data lives.

Every path is derived from ``NBO_DATA_DIR`` (default: ``data/`` in the repository) unless a more
specific variable overrides it. Nothing else in the code base reads these environment variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    data_dir = Path(env.get("NBO_DATA_DIR") or _default_data_dir()).expanduser().resolve()
    lake_uri = env.get("NBO_LAKE_URI") or str(data_dir / "lake")
    warehouse = Path(env.get("NBO_WAREHOUSE_PATH") or data_dir / "warehouse.duckdb").expanduser().resolve()
    start = env.get("NBO_PARTITIONS_START") or "2024-01-01"
    salt = env.get("NBO_PII_SALT") or Settings.pii_salt
    return Settings(
        data_dir=data_dir,
        lake_uri=lake_uri,
        warehouse_path=warehouse,
        partitions_start=start,
        pii_salt=salt,
        delivery=env.get("NBO_DELIVERY") or "outbox",
        webhook_url=env.get("NBO_WEBHOOK_URL") or None,
        parquet_version=env.get("NBO_PARQUET_VERSION") or Settings.parquet_version,
        dedup_window_days=_days(env, "NBO_DEDUP_WINDOW_DAYS"),
    )


def _days(env: Mapping[str, str], name: str) -> int | None:
    """A whole number of days >= 0 from the environment, or None when unset or empty."""
    value = (env.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ValueError(f"{name}={value!r}: expected a whole number of days (0 or more), or unset")
    return int(value)
