import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

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


def definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[nbo_dbt_models, campaign_report],
        jobs=[marts_daily_job],
        schedules=[marts_daily_schedule],
        sensors=[marts_automation_sensor],
        resources={"dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())},
    )
