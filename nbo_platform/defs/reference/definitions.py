import dagster as dg

from nbo_platform.defs.reference.assets import allies, campaigns, customers, nbo_rules, offers, policy, stores
from nbo_platform.defs.reference.checks import rules_lint
from nbo_platform.defs.reference.schedules import reference_job, reference_refresh_schedule


def definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[offers, nbo_rules, customers, allies, stores, campaigns, policy],
        asset_checks=[rules_lint],
        jobs=[reference_job],
        schedules=[reference_refresh_schedule],
    )
