"""Attribution: which purchases follow a notification (the "Effective Notifications" lake).

The contract's rule: a transaction of the same customer at any store of the same ally, strictly
after a sent notification's event_time and at most ``attribution_window_minutes`` later. A
transaction is credited to the latest such notification only. Holdout entries (the control group:
decided like a sent notification, never delivered) are measured the same way, on their own.

One ASOF join per group does it: for each transaction, the latest notification of the same customer
and ally strictly before it; kept when it is within the window. Notifications of one customer and
ally at the same instant (entries into two fences of an ally at once, both sent when the cooldown is
0) are one candidate: the first in decision order (the nearest store, then the lowest store id), so
that the credit does not depend on how the join meets equal times.
"""

from __future__ import annotations

import duckdb

from nbo_platform.duck import utc_date_sql


def attribute_sql(notifications: str, transactions: str, stores: str, window_minutes: float, *, reason: str) -> str:
    """SQL of the credited (notification, transaction) pairs of one group (``reason`` sent or holdout).

    ``notifications``: notification_id, customer_id, ally_id, store_id, campaign_id, channel, event_time,
    reason, distance_m. ``transactions``: transaction_id, customer_id, store_id, amount, event_time.
    ``stores``: store_id, ally_id.
    """
    window = f"to_microseconds({int(round(window_minutes * 60_000_000))})"
    return f"""
        WITH n AS (
            SELECT notification_id, customer_id, ally_id, store_id, campaign_id, channel, event_time
            FROM ({notifications}) WHERE reason = '{reason}'
            QUALIFY row_number() OVER (
                PARTITION BY customer_id, ally_id, event_time ORDER BY distance_m, store_id, notification_id
            ) = 1
        ),
        t AS (
            -- Only the transactions of customers with a notification of the group can be credited: the
            -- ASOF join sorts both sides, so the others are left out first (the large day's two groups
            -- attributed in 0.69 s instead of 1.08 s).
            SELECT t.transaction_id, t.customer_id, s.ally_id, t.store_id, t.amount, t.event_time
            FROM ({transactions}) t SEMI JOIN (SELECT customer_id FROM n) USING (customer_id)
            JOIN ({stores}) s USING (store_id)
        )
        SELECT n.notification_id, t.transaction_id, t.customer_id, t.ally_id, n.campaign_id, n.channel,
               n.store_id AS notified_store_id, t.store_id AS purchase_store_id, t.amount,
               n.event_time AS notified_at, t.event_time AS purchased_at,
               round(epoch(t.event_time - n.event_time) / 60.0, 3) AS minutes_to_purchase,
               {utc_date_sql("n.event_time")} AS date
        FROM t ASOF JOIN n
          ON n.customer_id = t.customer_id AND n.ally_id = t.ally_id AND t.event_time > n.event_time
        WHERE t.event_time <= n.event_time + {window}
    """


def attribute(
    con: duckdb.DuckDBPyConnection, notifications: str, transactions: str, stores: str, window_minutes: float
) -> tuple[str, str]:
    """Temp tables of effective notifications (sent) and of holdout conversions (control group)."""
    for table, reason in (("effective_pairs", "sent"), ("holdout_pairs", "holdout")):
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS "
            f"{attribute_sql(notifications, transactions, stores, window_minutes, reason=reason)} "
            "ORDER BY notified_at, notification_id, purchased_at, transaction_id"
        )
    return "effective_pairs", "holdout_pairs"
