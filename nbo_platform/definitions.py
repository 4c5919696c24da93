"""The code location: every domain's definitions merged, with the platform's resources."""

import dagster as dg

from nbo_platform.defs.attribution.definitions import definitions as attribution
from nbo_platform.defs.geo.definitions import definitions as geo
from nbo_platform.defs.ingestion.definitions import definitions as ingestion
from nbo_platform.defs.marts.definitions import definitions as marts
from nbo_platform.defs.notifications.definitions import definitions as notifications
from nbo_platform.defs.offers.definitions import definitions as offers
from nbo_platform.defs.reference.definitions import definitions as reference
from nbo_platform.defs.resources import build_resources
from nbo_platform.settings import Settings


def build_defs(settings: Settings | None = None) -> dg.Definitions:
    return dg.Definitions.merge(
        ingestion(),
        reference(),
        offers(),
        geo(),
        notifications(),
        attribution(),
        marts(),
        dg.Definitions(resources=build_resources(settings)),
    )


defs = build_defs()
