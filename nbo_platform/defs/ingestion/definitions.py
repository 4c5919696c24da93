import dagster as dg

from nbo_platform.defs.ingestion.assets import feed_assets
from nbo_platform.defs.ingestion.checks import feed_checks
from nbo_platform.defs.ingestion.sensors import landing_zone_sensor


def definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=feed_assets,
        asset_checks=feed_checks,
        sensors=[landing_zone_sensor],
    )
