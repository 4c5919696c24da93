import dagster as dg

from nbo_platform.defs.geo.assets import geofence_hits_asset


def definitions() -> dg.Definitions:
    return dg.Definitions(assets=[geofence_hits_asset])
