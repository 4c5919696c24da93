"""Checks on Next Best Offer: every activity is accounted for."""

import dagster as dg

from nbo_platform.defs.partitions import checked_dates
from nbo_platform.defs.resources import LakeResource
from nbo_platform.domain.offers import account_for_activities
from nbo_platform.duck import connect


@dg.asset_check(
    asset="next_best_offer",
    name="every_activity_accounted_for",
    additional_deps=["customer_activity", "next_best_offer_unassigned"],
    description="Each accepted activity has exactly one row in `next_best_offer` or in "
    "`next_best_offer_unassigned`: for the partitions of the run, or for every date that has offers "
    "computed when the check runs on its own.",
    blocking=True,
)
def every_activity_accounted_for(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    the_lake = lake.lake()
    con = connect()
    dates = checked_dates(
        context, list({*the_lake.dates("next_best_offer"), *the_lake.dates("next_best_offer_unassigned")})
    )
    problems = []
    for d in dates:

        def ids(table: str, d: str = d) -> str:
            files = [str(f) for f in the_lake.partition_files(table, d)]
            return (
                f"SELECT activity_id FROM read_parquet({files})"
                if files
                else "SELECT NULL::BIGINT AS activity_id WHERE false"
            )

        out = f"{ids('next_best_offer')} UNION ALL {ids('next_best_offer_unassigned')}"
        found = account_for_activities(con, ids("customer_activity"), out)
        if not found.exact:
            problems.append(
                f"{d}: {found.missing} activities without a row, {found.extra} rows without activity, "
                f"{found.repeated} repeated"
                + (f", {found.repeated_left} activities repeated" if found.repeated_left else "")
            )
    return dg.AssetCheckResult(
        passed=not problems, metadata={"dates_checked": len(dates), "details": "\n".join(problems) or "none"}
    )
