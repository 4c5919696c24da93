"""Checks on the landing feeds: conservation per file, and files that changed or could not be read."""

import dagster as dg

from nbo_platform.defs.resources import LakeResource, LandingZoneResource
from nbo_platform.domain.feeds import LANDING_FEEDS, Feed
from nbo_platform.domain.landing import conservation_violations, latest_versions, read_manifest, scan_landing
from nbo_platform.duck import connect


def build_feed_checks(feed: Feed) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(
        asset=feed.table,
        name="rows_conserved",
        description="For every ingested file: rows read = accepted + quarantined, and the lake and the "
        "quarantine hold exactly the rows the manifest records.",
        blocking=True,
    )
    def rows_conserved(lake: LakeResource) -> dg.AssetCheckResult:
        con = connect()
        the_lake = lake.lake()
        problems = conservation_violations(con, the_lake, feed)
        files = len(read_manifest(con, the_lake, feed))
        return dg.AssetCheckResult(
            passed=not problems,
            metadata={"files_checked": files, "violations": len(problems), "details": "\n".join(problems[:50])},
        )

    @dg.asset_check(
        asset=feed.table,
        name="landing_files_intact",
        description="No landing file changed after it was ingested (or while it was read), and every file "
        "could be read. A changed file's new records are not read until `nbo retake <feed>/<file>` takes it in "
        "again (records already accepted stay once); a changed file fails the check, an unreadable one warns.",
    )
    def landing_files_intact(lake: LakeResource, landing: LandingZoneResource) -> dg.AssetCheckResult:
        con = connect()
        the_lake = lake.lake()
        _, changed = scan_landing(con, the_lake, landing.landing_dir, feed)
        unreadable = [
            m for m in latest_versions(read_manifest(con, the_lake, feed)).values() if m["status"] == "unreadable"
        ]
        lines = [f"changed after ingestion: {c.file.relpath}" for c in changed]
        lines += [f"unreadable: {m['file']}: {m['error']}" for m in unreadable]
        return dg.AssetCheckResult(
            passed=not lines,
            severity=dg.AssetCheckSeverity.ERROR if changed else dg.AssetCheckSeverity.WARN,
            metadata={
                "changed_files": len(changed),
                "unreadable_files": len(unreadable),
                "details": "\n".join(lines[:50]),
            },
        )

    return [rows_conserved, landing_files_intact]


feed_checks = [c for f in LANDING_FEEDS.values() for c in build_feed_checks(f)]
