import dagster as dg

from nbo_platform.defs.notifications.assets import all_notifications, notification_deliveries, notifications
from nbo_platform.defs.notifications.checks import delivered_at_most_once, one_decision_per_entry


def definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[notifications, all_notifications, notification_deliveries],
        asset_checks=[one_decision_per_entry, delivered_at_most_once],
    )
