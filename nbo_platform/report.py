"""What ``nbo demo`` prints: the warehouse's tables and the offers made."""

from __future__ import annotations

from nbo_platform.settings import Settings
from nbo_platform.warehouse import connect_read_only

CAMPAIGN_SUMMARY_SQL = """
    WITH n AS (
        SELECT campaign_id, ally_id, count(*) FILTER (reason = 'sent') AS sent,
               count(*) FILTER (reason = 'holdout') AS holdout
        FROM notifications WHERE campaign_id IS NOT NULL GROUP BY ALL
    ),
    e AS (SELECT campaign_id, count(DISTINCT notification_id) AS effective FROM effective_notifications GROUP BY ALL),
    h AS (SELECT campaign_id, count(DISTINCT notification_id) AS converted FROM holdout_conversions GROUP BY ALL)
    SELECT n.campaign_id, a.ally_name, n.sent, coalesce(e.effective, 0),
           coalesce(e.effective, 0) / nullif(n.sent, 0) AS rate, n.holdout,
           coalesce(h.converted, 0) / nullif(n.holdout, 0) AS holdout_rate,
           coalesce(e.effective, 0) / nullif(n.sent, 0) - coalesce(h.converted, 0) / nullif(n.holdout, 0)
    FROM n LEFT JOIN e USING (campaign_id) LEFT JOIN h USING (campaign_id) LEFT JOIN allies a USING (ally_id)
    ORDER BY n.campaign_id
"""


def _num(x: float | None) -> float:
    return float("nan") if x is None else x


def print_summary(settings: Settings) -> None:
    con = connect_read_only(settings.warehouse_path)
    views = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
    print("\nRows per table (warehouse.duckdb):")
    for v in views:
        print(f"  {v:<28} {con.execute(f'SELECT count(*) FROM {v}').fetchone()[0]:>10,}")
    if "next_best_offer_lookup" in views:
        print("\nOffers made:")
        rows = con.execute(
            "SELECT offer_id, offer_name, rule_id, count(*) FROM next_best_offer_lookup GROUP BY ALL ORDER BY 1"
        ).fetchall()
        for offer_id, name, rule_id, n in rows:
            print(f"  {offer_id:>3} {name or '?':<16} by {rule_id:<16} {n:>8,}")
    if "notifications" in views:
        print("\nNotifications by status, reason and channel:")
        rows = con.execute(
            "SELECT status, reason, coalesce(channel, '-'), count(*) FROM notifications GROUP BY ALL ORDER BY 1, 2, 3"
        ).fetchall()
        for status, reason, channel, n in rows:
            print(f"  {status:<10} {reason:<17} {channel:<6} {n:>8,}")
    if {"notifications", "effective_notifications", "holdout_conversions"} <= set(views):
        print("\nEffectiveness per campaign (effective rate of sent vs conversion rate of the holdout):")
        rows = con.execute(CAMPAIGN_SUMMARY_SQL).fetchall()
        print(
            f"  {'campaign':>8} {'ally':<26} {'sent':>6} {'effective':>9} {'rate':>6} "
            f"{'holdout':>7} {'rate':>6} {'uplift':>7}"
        )
        for cid, ally, sent, eff, rate, hold, hrate, uplift in rows:
            print(
                f"  {cid:>8} {ally or '?':<26} {sent:>6,} {eff:>9,} {_num(rate):>6.1%} {hold:>7,} "
                f"{_num(hrate):>6.1%} {_num(uplift):>+7.1%}"
            )
    con.close()
    print(
        f"\nNext: query {settings.warehouse_path} read-only (duckdb -readonly), or browse the assets with "
        "`make ui` (dagster dev -w workspace.yaml)."
    )
