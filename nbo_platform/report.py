"""What ``nbo demo`` prints: the warehouse's tables and the offers made."""

from __future__ import annotations

from nbo_platform.settings import Settings
from nbo_platform.warehouse import connect_read_only


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
    con.close()
    print(
        f"\nNext: query {settings.warehouse_path} read-only (duckdb -readonly), or browse the assets with "
        "`make ui` (dagster dev -w workspace.yaml)."
    )
