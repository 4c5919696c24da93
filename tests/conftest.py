import warnings
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from nbo_platform.duck import connect
from nbo_platform.lake import Lake
from nbo_platform.settings import Settings, load_settings

warnings.filterwarnings("ignore", message=".*(beta|preview|experimental).*")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Files are written whole before each run: no settling time (tests of it set their own).
    return load_settings({"NBO_DATA_DIR": str(tmp_path / "data"), "NBO_LANDING_SETTLE_SECONDS": "0"})


@pytest.fixture
def lake(settings: Settings) -> Lake:
    return Lake(settings.lake_uri)


@pytest.fixture
def con():
    return connect()


@pytest.fixture
def run_pipeline(settings: Settings) -> Callable[[], object]:
    """``nbo run`` in-process against the test's data dir, on an ephemeral Dagster instance."""
    from nbo_platform.runner import run_pipeline as run

    instance = dg.DagsterInstance.ephemeral()
    return lambda: run(settings, instance=instance, echo=lambda _: None)


@pytest.fixture
def warehouse(settings: Settings):
    """A read-only query of the analysts' warehouse, opened fresh each call."""
    from nbo_platform.warehouse import connect_read_only

    def query(sql: str) -> list[tuple]:
        con = connect_read_only(settings.warehouse_path)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    return query
