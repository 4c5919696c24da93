"""Next Best Offer assignment: the recipe's stream-table join and CASE rule list, point in time.

For each activity the customer version valid at the activity's event time is joined (an ASOF join:
the latest version with ``valid_from <= event_time``), the first matching rule gives the offer and
no match gives the default offer. An activity whose customer is unknown at that time gets no offer,
as the recipe's inner join, and is returned apart with the reason instead of being lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from nbo_platform.domain.rules import RuleSet, offer_ids_sql, rule_ids_sql, rule_index_sql

UNKNOWN_CUSTOMER = "unknown_customer"


@dataclass(frozen=True)
class Assignment:
    assigned: int
    unassigned: int


def assign_offers(
    con: duckdb.DuckDBPyConnection,
    activity: str,
    customers: str,
    rules: RuleSet,
    *,
    assigned_table: str = "next_best_offer",
    unassigned_table: str = "next_best_offer_unassigned",
) -> Assignment:
    """Create two temp tables from an activity relation and a customer-versions relation.

    ``activity`` needs customer_id, activity_id, activity_type, propensity_to_buy, event_time;
    ``customers`` needs customer_id, version, valid_from, income, fico, gender.
    """
    # Inner ASOF join straight into the rule CASE: one pass, nothing materialized in between.
    # Rows are not sorted here (a sort of every activity costs more than the join); writers order
    # what they store.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {assigned_table} AS
        WITH matched AS (
            SELECT a.customer_id, a.activity_id, a.propensity_to_buy, a.activity_type, a.event_time,
                   c.income, c.fico, c.gender, c.version AS customer_version
            FROM {activity} a
            ASOF JOIN {customers} c ON a.customer_id = c.customer_id AND a.event_time >= c.valid_from
        ),
        ranked AS (SELECT *, {rule_index_sql(rules)} AS _rule FROM matched)
        SELECT customer_id, activity_id, propensity_to_buy, activity_type, income, fico,
               {offer_ids_sql(rules)}[_rule] AS offer_id,
               {rule_ids_sql(rules)}[_rule] AS rule_id,
               event_time, customer_version
        FROM ranked
        """
    )
    # The activities the ASOF join could not match: no version of the customer at or before the event.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {unassigned_table} AS
        WITH known AS (SELECT customer_id, min(valid_from) AS first_seen FROM {customers} GROUP BY ALL)
        SELECT a.customer_id, a.activity_id, a.activity_type, a.event_time,
               '{UNKNOWN_CUSTOMER}' AS reason,
               CASE WHEN k.first_seen IS NULL THEN 'no profile for this customer'
                    ELSE 'no profile before ' || strftime(k.first_seen, '%Y-%m-%dT%H:%M:%SZ') END AS detail
        FROM {activity} a LEFT JOIN known k USING (customer_id)
        WHERE k.first_seen IS NULL OR a.event_time < k.first_seen
        """
    )
    (assigned,) = con.execute(f"SELECT count(*) FROM {assigned_table}").fetchone()
    (unassigned,) = con.execute(f"SELECT count(*) FROM {unassigned_table}").fetchone()
    return Assignment(int(assigned), int(unassigned))


def offer_lookup_sql(assignments: str, offers: str) -> str:
    """The recipe's second join: each assignment with its offer's name and URL."""
    return f"""
        SELECT n.offer_id, n.customer_id, n.activity_id, n.propensity_to_buy, n.activity_type,
               n.income, n.fico, o.offer_name, o.offer_url, n.rule_id, n.event_time, n.customer_version
        FROM {assignments} n LEFT JOIN {offers} o USING (offer_id)
        ORDER BY n.event_time, n.activity_id
    """
