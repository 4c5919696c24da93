import sys
from collections.abc import Sequence
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
    """The dbt CLI of this environment, without the two things dagster-dbt does before every
    invocation that this project does not need:

    - running ``dbt --version`` (a subprocess that imports dbt, 2-3 s): the version is the dbt-core
      package's, the one beside this interpreter;
    - loading a dbt adapter in this process (about 1.7 s): it only serves ``fetch_row_counts`` and
      ``fetch_column_metadata``, which the dbt asset does not call (its marts get their row counts
      and previews from the lake, ``mart_metadata``).

    Both are private hooks of dagster-dbt 0.29; should they change, dbt runs as before, only slower.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        from dbt.version import __version__

        return version.parse(__version__)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        return None


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
