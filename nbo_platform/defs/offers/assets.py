"""Next Best Offer: the offer for each activity, and the same rows with the offer's name and URL."""

from datetime import date

import dagster as dg

from nbo_platform.built_from import building
from nbo_platform.defs.ingestion.assets import FEED_ASSET_KEYS
from nbo_platform.defs.metadata import table_metadata
from nbo_platform.defs.partitions import daily_partitions
from nbo_platform.defs.reference.assets import RULES_SNAPSHOT
from nbo_platform.defs.resources import LakeResource, WarehouseResource
from nbo_platform.domain.offers import lookup_text_values, offer_lookup_sql, write_offers
from nbo_platform.domain.rules import load_rules
from nbo_platform.duck import connect

ACTIVITY = FEED_ASSET_KEYS["customer_activity"]


EMPTY_ACTIVITY = (
    "(SELECT NULL::BIGINT customer_id, NULL::BIGINT activity_id, NULL::VARCHAR activity_type, "
    "NULL::DOUBLE propensity_to_buy, NULL::TIMESTAMPTZ event_time WHERE false)"
)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "next_best_offer",
            deps=[ACTIVITY, "customers", "nbo_rules"],
            group_name="offers",
            kinds={"duckdb", "parquet"},
            owners=["team:marketing"],
            description="The offer picked for each activity: the customer version valid at the activity's "
            "event time (the version whose [valid_from, valid_to) holds it), the first matching rule of "
            "`nbo_rules`, else the default offer. "
            "`rule_id` names the rule that fired.",
        ),
        dg.AssetSpec(
            "next_best_offer_unassigned",
            deps=[ACTIVITY, "customers"],
            group_name="offers",
            kinds={"duckdb", "parquet"},
            owners=["team:marketing"],
            description="Activities that got no offer because the customer was unknown at that time "
            "(reason `unknown_customer`), kept with the detail instead of being lost.",
        ),
    ],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def next_best_offer(context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource):
    the_lake = lake.lake()
    con = connect()
    rules = load_rules(the_lake.table_dir("nbo_rules") / RULES_SNAPSHOT)
    customers = f"read_parquet('{the_lake.table_dir('customers')}/customers.parquet')"
    assigned = unassigned = 0
    for d in context.partition_keys:
        files = [str(f) for f in the_lake.partition_files("customer_activity", d)]
        activity = f"read_parquet({files})" if files else EMPTY_ACTIVITY
        with building(the_lake, "next_best_offer", d):
            result = write_offers(con, the_lake, date.fromisoformat(d), activity, customers, rules)
        assigned, unassigned = assigned + result.assigned, unassigned + result.unassigned
    warehouse.publish(the_lake)
    written = [str(f) for d in context.partition_keys for f in the_lake.partition_files("next_best_offer", d)]
    rows = f"SELECT * FROM read_parquet({written})"
    by_offer = con.execute(
        f"SELECT offer_id, rule_id, count(*) AS activities FROM ({rows}) GROUP BY ALL ORDER BY offer_id"
    ).df()
    yield dg.MaterializeResult(
        asset_key="next_best_offer",
        metadata={
            **table_metadata(con, rows, "next_best_offer", "event_time, activity_id"),
            "dagster/row_count": assigned,
            "offers_by_rule": dg.MetadataValue.md(by_offer.to_markdown(index=False)),
            "rules_source": rules.source,
        },
    )
    yield dg.MaterializeResult(asset_key="next_best_offer_unassigned", metadata={"dagster/row_count": unassigned})


@dg.asset(
    deps=["next_best_offer", "offers"],
    partitions_def=daily_partitions,
    group_name="offers",
    kinds={"duckdb", "parquet"},
    owners=["team:marketing"],
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="`next_best_offer` enriched with the offer's name and URL (the recipe's final stream).",
)
def next_best_offer_lookup(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    the_lake = lake.lake()
    con = connect()
    offers = the_lake.scan_sql("offers", hive=False)
    rows = 0
    for d in context.partition_keys:
        with building(the_lake, "next_best_offer_lookup", d):
            files = [str(f) for f in the_lake.partition_files("next_best_offer", d)]
            target = the_lake.partition_dir("next_best_offer_lookup", d) / "data.parquet"
            if not files:
                target.unlink(missing_ok=True)
                continue
            assignments = f"read_parquet({files})"
            values = lookup_text_values(con, assignments, offers)
            rows += the_lake.write(con, offer_lookup_sql(assignments, offers, values), target)
    warehouse.publish(the_lake)
    files = [str(f) for d in context.partition_keys for f in the_lake.partition_files("next_best_offer_lookup", d)]
    shown = table_metadata(con, f"SELECT * FROM read_parquet({files})", "next_best_offer_lookup") if files else {}
    return dg.MaterializeResult(metadata={**shown, "dagster/row_count": rows})
