"""Next Best Offer assignment: the recipe's stream-table join and CASE rule list, point in time.

For each activity the customer version valid at the activity's event time is joined (the version
with ``valid_from <= event_time < valid_to``), the first matching rule gives the offer and
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
    """Create the temp relations ``assigned_table`` (a view) and ``unassigned_table`` from an activity
    relation and a customer-versions relation.

    ``activity`` needs customer_id, activity_id, activity_type, propensity_to_buy, event_time;
    ``customers`` needs customer_id, version, valid_from, valid_to (NULL for the current version),
    income, fico, gender.
    """
    # Versions are disjoint intervals [valid_from, valid_to), so the point-in-time join is an equi-join
    # on customer_id with a range filter: a hash join (about 1.3 versions per customer), faster than
    # an ASOF join's sort. (The open end is written with coalesce: an OR in a LEFT JOIN's condition
    # makes DuckDB fall back to a nested-loop join.) One LEFT JOIN pass gives both the assignments and
    # the activities whose customer had no version at that time; the rule CASE runs in the same pass.
    joined = f"_{assigned_table}_joined"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {joined} AS
        WITH matched AS (
            SELECT a.customer_id, a.activity_id, a.propensity_to_buy, a.activity_type, a.event_time,
                   c.income, c.fico, c.gender, c.version AS customer_version
            FROM {activity} a
            LEFT JOIN {customers} c
              ON a.customer_id = c.customer_id AND a.event_time >= c.valid_from
             AND a.event_time < coalesce(c.valid_to, 'infinity'::TIMESTAMPTZ)
        ),
        ranked AS (
            SELECT *, CASE WHEN customer_version IS NOT NULL THEN {rule_index_sql(rules)} END AS _rule FROM matched
        )
        SELECT customer_id, activity_id, propensity_to_buy, activity_type, income, fico,
               {offer_ids_sql(rules)}[_rule] AS offer_id,
               {rule_ids_sql(rules)}[_rule] AS rule_id,
               event_time, customer_version
        FROM ranked
        """
    )
    # The assignments are a view over the joined rows (no second copy of every activity).
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {assigned_table} AS SELECT * FROM {joined} WHERE customer_version IS NOT NULL"
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {unassigned_table} AS
        WITH unknown AS (
            SELECT customer_id, activity_id, activity_type, event_time FROM {joined} WHERE customer_version IS NULL
        ),
        known AS (
            SELECT customer_id, min(valid_from) AS first_seen FROM {customers}
            WHERE customer_id IN (SELECT customer_id FROM unknown) GROUP BY ALL
        )
        SELECT u.customer_id, u.activity_id, u.activity_type, u.event_time,
               '{UNKNOWN_CUSTOMER}' AS reason,
               CASE WHEN k.first_seen IS NULL THEN 'no profile for this customer'
                    ELSE 'no profile before ' || strftime(k.first_seen, '%Y-%m-%dT%H:%M:%SZ') END AS detail
        FROM unknown u LEFT JOIN known k USING (customer_id)
        """
    )
    total, unassigned = con.execute(
        f"SELECT count(*), count(*) FILTER (customer_version IS NULL) FROM {joined}"
    ).fetchone()
    return Assignment(int(total - unassigned), int(unassigned))


def offer_lookup_sql(assignments: str, offers: str) -> str:
    """The recipe's second join: each assignment with its offer's name and URL."""
    return f"""
        SELECT n.offer_id, n.customer_id, n.activity_id, n.propensity_to_buy, n.activity_type,
               n.income, n.fico, o.offer_name, o.offer_url, n.rule_id, n.event_time, n.customer_version
        FROM {assignments} n LEFT JOIN {offers} o USING (offer_id)
        ORDER BY n.event_time, n.activity_id
    """
