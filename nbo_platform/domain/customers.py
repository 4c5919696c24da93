"""Customers as a history of versions.

Each row of the reference snapshot and of the ``customers`` change feed is a version of a customer,
valid from its ``updated_at`` until the next version of the same customer. Every join with customers
uses the version valid at the event's time (a stream-table join sees the table as it was).
"""

from __future__ import annotations

from nbo_platform.domain.landing import pii_hash_sql

# A snapshot row without updated_at has been valid since before any event.
BEGINNING_OF_TIME = "1970-01-01 00:00:00+00"

PROFILE_COLUMNS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "gender",
    "income",
    "fico",
    "location_opt_in",
    "marketing_opt_in",
    "preferred_channel",
)


def customer_versions_sql(snapshot: str | None, updates: str | None, pii_salt: str) -> str:
    """SQL of the version history from a snapshot relation and a change-feed relation (either may be None).

    Where both sources hold a version with the same customer and ``updated_at``, the change feed wins.
    """
    cols = ", ".join(("customer_id", *PROFILE_COLUMNS))
    parts = []
    if snapshot:
        parts.append(
            f"SELECT {cols}, coalesce(updated_at, TIMESTAMPTZ '{BEGINNING_OF_TIME}') AS updated_at, "
            f"'reference' AS source, 0 AS source_rank, NULL::VARCHAR AS source_file, NULL::BIGINT AS source_line "
            f"FROM {snapshot}"
        )
    if updates:
        parts.append(
            f"SELECT {cols}, updated_at, 'customers_feed' AS source, 1 AS source_rank, source_file, source_line "
            f"FROM {updates}"
        )
    if not parts:
        raise ValueError("customer versions need a snapshot or a change feed")
    union = " UNION ALL BY NAME ".join(parts)
    return f"""
        WITH all_versions AS ({union}),
        one_per_instant AS (
            SELECT * FROM all_versions
            QUALIFY row_number() OVER (
                PARTITION BY customer_id, updated_at ORDER BY source_rank DESC, source_file DESC, source_line DESC
            ) = 1
        )
        SELECT customer_id,
               row_number() OVER w AS version,
               updated_at AS valid_from,
               lead(updated_at) OVER w AS valid_to,
               {", ".join(PROFILE_COLUMNS)},
               {pii_hash_sql("lower(trim(email))", pii_salt)} AS email_hash,
               {pii_hash_sql("regexp_replace(phone, '[^0-9+]', '', 'g')", pii_salt)} AS phone_hash,
               source, source_file, source_line
        FROM one_per_instant
        WINDOW w AS (PARTITION BY customer_id ORDER BY updated_at)
        ORDER BY customer_id, valid_from
    """
