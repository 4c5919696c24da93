import dagster as dg

from nbo_platform.defs.attribution.assets import effective_notifications


def definitions() -> dg.Definitions:
    return dg.Definitions(assets=[effective_notifications])
