import dagster as dg

from nbo_platform.defs.offers.assets import next_best_offer, next_best_offer_lookup
from nbo_platform.defs.offers.checks import every_activity_accounted_for


def definitions() -> dg.Definitions:
    return dg.Definitions(assets=[next_best_offer, next_best_offer_lookup], asset_checks=[every_activity_accounted_for])
