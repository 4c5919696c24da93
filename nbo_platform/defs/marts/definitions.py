import sys
from functools import cached_property
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource
from packaging import version

from nbo_platform.defs.marts.assets import (
    campaign_report,
    dbt_project,
    marts_automation_sensor,
    marts_daily_job,
    marts_daily_schedule,
    nbo_dbt_models,
)


def dbt_executable() -> str:
    """The dbt installed with this environment, even when its bin/ folder is not on PATH."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else "dbt"


class LocalDbtCliResource(DbtCliResource):
    """The dbt CLI of this environment: its version is the dbt-core package's, known without running
    ``dbt --version`` (a subprocess that imports dbt, 2-3 s, before every dbt invocation)."""

    @cached_property
    def _cli_version(self) -> version.Version:
        from dbt.version import __version__

        return version.parse(__version__)


def dbt_resource() -> DbtCliResource:
    """The dbt CLI resource: the environment's own dbt when it is there, else ``dbt`` on PATH."""
    executable = dbt_executable()
    local = executable != "dbt"
    return (LocalDbtCliResource if local else DbtCliResource)(project_dir=dbt_project, dbt_executable=executable)


def definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[nbo_dbt_models, campaign_report],
        jobs=[marts_daily_job],
        schedules=[marts_daily_schedule],
        sensors=[marts_automation_sensor],
        resources={"dbt": dbt_resource()},
    )
