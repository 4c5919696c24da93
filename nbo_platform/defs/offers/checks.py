"""Checks on Next Best Offer: every activity is accounted for."""

import dagster as dg

from nbo_platform.defs.partitions import checked_dates
from nbo_platform.defs.resources import LakeResource
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

        missing, extra, dupes = con.execute(
            f"""
            WITH out AS ({ids("next_best_offer")} UNION ALL {ids("next_best_offer_unassigned")}),
                 act AS ({ids("customer_activity")})
            SELECT (SELECT count(*) FROM act ANTI JOIN out USING (activity_id)),
                   (SELECT count(*) FROM out ANTI JOIN act USING (activity_id)),
                   (SELECT count(*) - count(DISTINCT activity_id) FROM out)
            """
        ).fetchone()
        if missing or extra or dupes:
            problems.append(f"{d}: {missing} activities without a row, {extra} rows without activity, {dupes} repeated")
    return dg.AssetCheckResult(
        passed=not problems, metadata={"dates_checked": len(dates), "details": "\n".join(problems) or "none"}
    )
