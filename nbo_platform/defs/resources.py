"""Dagster resources: the Parquet lake, the analysts' warehouse and the landing zone."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from nbo_platform import warehouse as wh
from nbo_platform.domain.delivery import Channel, build_channel
from nbo_platform.lake import Lake
from nbo_platform.settings import Settings, load_settings


class LakeResource(dg.ConfigurableResource):
    """The data lake root (a local path or a ``file://`` URI) and the Parquet version its files are written in."""

    uri: str
    parquet_version: str = "v2"

    def lake(self) -> Lake:
        return Lake(self.uri, self.parquet_version)


class WarehouseResource(dg.ConfigurableResource):
    """The analysts' DuckDB file; the pipeline only ever replaces it whole (see ``warehouse.py``)."""

    path: str

    def publish(self, lake: Lake) -> list[str]:
        return wh.publish(lake, Path(self.path))


class LandingZoneResource(dg.ConfigurableResource):
    """Where files arrive and reference data is maintained, and how ingestion treats them."""

    data_dir: str
    partitions_start: str = "2024-01-01"
    pii_salt: str = Settings.pii_salt
    dedup_window_days: int | None = None  # see ``Settings.dedup_window_days``
    settle_seconds: float = Settings.landing_settle_seconds  # see ``Settings.landing_settle_seconds``

    @property
    def landing_dir(self) -> Path:
        return Path(self.data_dir) / "landing"

    @property
    def reference_dir(self) -> Path:
        return Path(self.data_dir) / "reference"

    @property
    def state_dir(self) -> Path:
        """Pipeline-private state (``Settings.state_dir``): locks, dbt's database and run folders."""
        return Path(self.data_dir) / ".nbo"

    @property
    def lock_dir(self) -> Path:
        return self.state_dir / "locks"


class DeliveryResource(dg.ConfigurableResource):
    """The channel sent notifications are handed to: the local outbox by default (see ``delivery.py``)."""

    kind: str = "outbox"
    outbox_dir: str
    webhook_url: str | None = None

    def channel(self) -> Channel:
        return build_channel(self.kind, Path(self.outbox_dir), self.webhook_url)


def build_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    s = settings or load_settings()
    return {
        "lake": LakeResource(uri=s.lake_uri, parquet_version=s.parquet_version),
        "warehouse": WarehouseResource(path=str(s.warehouse_path)),
        "landing": LandingZoneResource(
            data_dir=str(s.data_dir),
            partitions_start=s.partitions_start,
            pii_salt=s.pii_salt,
            dedup_window_days=s.dedup_window_days,
            settle_seconds=s.landing_settle_seconds,
        ),
        "delivery": DeliveryResource(kind=s.delivery, outbox_dir=str(s.outbox_dir), webhook_url=s.webhook_url),
    }
