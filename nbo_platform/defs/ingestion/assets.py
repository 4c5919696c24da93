"""One daily-partitioned asset per landing feed, all built by the same factory."""

from datetime import timedelta

import dagster as dg

from nbo_platform.defs.metadata import table_metadata
from nbo_platform.defs.partitions import daily_partitions
from nbo_platform.defs.resources import LakeResource, LandingZoneResource, WarehouseResource
from nbo_platform.domain.feeds import LANDING_FEEDS, Feed
from nbo_platform.domain.landing import ingest_pending
from nbo_platform.domain.pii import mask_pii
from nbo_platform.duck import connect
from nbo_platform.lake import Lake


def ingest_feed(feed: Feed, lake: Lake, landing: LandingZoneResource, log: dg.DagsterLogManager | None = None):
    """Ingest every pending file of a feed (the step every run of the feed's asset starts with)."""
    con = connect()
    results, changed = ingest_pending(
        con,
        lake,
        landing.landing_dir,
        feed,
        lock_dir=landing.lock_dir,
        partitions_start=landing.partitions_start,
        pii_salt=landing.pii_salt,
        dedup_window_days=landing.dedup_window_days,
        settle_seconds=landing.settle_seconds,
    )
    if log:
        for r in results:
            if r.status == "ingested":
                log.info(
                    f"{feed.name}/{r.file}: read {r.rows_read}, new {r.rows_new}, duplicate {r.rows_duplicate}, "
                    f"quarantined {r.rows_quarantined}"
                    + (f", discarded {r.rows_discarded} (no location consent)" if r.rows_discarded else "")
                )
            else:
                log.error(f"{feed.name}/{r.file}: {r.status}: {mask_pii(r.error)}")
        for c in changed:
            log.error(
                f"{feed.name}/{c.file.relpath} changed after it was ingested (sha256 {c.ingested_sha256[:12]} -> "
                f"{c.current_sha256[:12]}): its new records are not read. Once the producer has finished it, "
                f"take it in with `nbo retake {feed.name}/{c.file.relpath}` (records already accepted stay once)."
            )
    return con, results, changed


def partition_figures(con, lake: Lake, feed: Feed, date: str) -> dict:
    files = lake.partition_files(feed.table, date)
    if not files:
        return {"rows": 0, "files": 0}
    rows, n_files, customers = con.execute(
        f"SELECT count(*), count(DISTINCT source_file), count(DISTINCT customer_id) "
        f"FROM read_parquet({[str(f) for f in files]})"
    ).fetchone()
    return {"rows": int(rows), "files": int(n_files), "customers": int(customers)}


# Event feeds arrive all day, file after file: one silent for an hour is flagged (warn), for six
# hours it fails its freshness policy. The customers change feed is sparse by nature: no policy.
STREAMING_FEEDS = ("customer_activity", "location_pings", "transactions")
FEED_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=6), warn_window=timedelta(hours=1))


def build_feed_asset(feed: Feed) -> dg.AssetsDefinition:
    @dg.asset(
        name=feed.table,
        partitions_def=daily_partitions,
        group_name="ingestion",
        kinds={"parquet", "duckdb"},
        owners=["team:data-engineering"],
        description=(
            f"{feed.description} Landing files from `landing/{feed.name}/` validated against the feed's "
            f"schema and de-duplicated on ({', '.join(feed.key)}); one partition per UTC event date. "
            "Rejected rows go to `quarantine`."
            + (
                " Pings of customers without location consent at that time are discarded, only counted."
                if feed.needs_location_consent
                else ""
            )
        ),
        metadata={"landing_folder": f"landing/{feed.name}/", "key": ", ".join(feed.key)},
        # Consent is the customer version's as known at ingestion: the customers are loaded first.
        deps=["customers"] if feed.needs_location_consent else None,
        freshness_policy=FEED_FRESHNESS if feed.table in STREAMING_FEEDS else None,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def _feed_asset(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        warehouse: WarehouseResource,
        landing: LandingZoneResource,
    ) -> dg.MaterializeResult:
        the_lake = lake.lake()
        con, results, changed = ingest_feed(feed, the_lake, landing, context.log)
        warehouse.publish(the_lake)
        per_date = {d: partition_figures(con, the_lake, feed, d) for d in context.partition_keys}
        figures = (
            per_date[context.partition_keys[0]]
            if len(per_date) == 1
            else {"rows": sum(p["rows"] for p in per_date.values())}
        )
        files = [str(f) for d in context.partition_keys for f in the_lake.partition_files(feed.table, d)]
        shown = table_metadata(con, f"SELECT * FROM read_parquet({files})", feed.table) if files else {}
        return dg.MaterializeResult(
            metadata={
                **shown,
                "customers_in_partition": figures.get("customers", 0),
                "dagster/row_count": figures["rows"],
                "files_in_partition": figures.get("files", 0),
                "files_ingested_this_run": len(results),
                "rows_read_this_run": sum(r.rows_read for r in results),
                "rows_new_this_run": sum(r.rows_new for r in results),
                "rows_duplicate_this_run": sum(r.rows_duplicate for r in results),
                "rows_quarantined_this_run": sum(r.rows_quarantined for r in results),
                "rows_discarded_this_run": sum(r.rows_discarded for r in results),
                "changed_files_ignored": len(changed),
            }
        )

    return _feed_asset


feed_assets = [build_feed_asset(f) for f in LANDING_FEEDS.values()]
FEED_ASSET_KEYS = {name: dg.AssetKey(f.table) for name, f in LANDING_FEEDS.items()}
