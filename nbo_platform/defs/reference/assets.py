"""Reference data: offers, the offer rules and customers as a history of versions."""

import shutil
from dataclasses import asdict
from datetime import UTC, datetime

import dagster as dg
import pyarrow as pa

from nbo_platform.defs.ingestion.assets import FEED_ASSET_KEYS
from nbo_platform.defs.resources import LakeResource, LandingZoneResource, WarehouseResource
from nbo_platform.domain.customers import customer_versions_sql
from nbo_platform.domain.feeds import ALLIES, CAMPAIGNS, OFFERS, REFERENCE_CUSTOMERS, STORES, Feed
from nbo_platform.domain.geofence import polygon_problems
from nbo_platform.domain.landing import find_reference_file, load_reference
from nbo_platform.domain.policy import parse_policy
from nbo_platform.domain.rules import DEFAULT_RULES_PATH, lint, load_rules, rule_condition_sql
from nbo_platform.duck import connect

RULES_SNAPSHOT = "nbo_rules.yaml"
POLICY_SNAPSHOT = "policy.yaml"


def reference_is_consistent(landing: LandingZoneResource) -> None:
    """Raise if a reference file that would fail its own asset is broken (the policy, the rules), before
    any reference asset writes: a reference change applies whole or not at all. Every reference asset
    calls it first, so a typo in ``policy.yaml`` leaves the offers, rules and allies as they were."""
    policy_path = landing.reference_dir / POLICY_SNAPSHOT
    if policy_path.exists():
        parse_policy(policy_path.read_text(), source=str(policy_path))  # PolicyError names the key
    rules_path = landing.reference_dir / RULES_SNAPSHOT
    if rules_path.exists():
        load_rules(rules_path)  # RulesError names the file and the rule


def _preview(con, sql: str, limit: int = 10) -> dg.MarkdownMetadataValue:
    return dg.MetadataValue.md(con.execute(f"SELECT * FROM ({sql}) LIMIT {limit}").df().to_markdown(index=False))


@dg.asset(
    group_name="reference",
    kinds={"parquet", "duckdb"},
    owners=["team:marketing"],
    description="The offers the bank can make (`reference/offers`): offer_id, offer_name, offer_url.",
)
def offers(lake: LakeResource, warehouse: WarehouseResource, landing: LandingZoneResource) -> dg.MaterializeResult:
    reference_is_consistent(landing)
    path = find_reference_file(landing.reference_dir, "offers")
    if path is None:
        raise FileNotFoundError(f"{landing.reference_dir}: no offers file (offers.csv, .parquet or .jsonl)")
    con, the_lake = connect(), lake.lake()
    loaded = load_reference(con, the_lake, OFFERS, path, loaded_at=datetime.now(UTC))
    the_lake.write(
        con,
        f"SELECT * EXCLUDE (_line) FROM {loaded.view} ORDER BY offer_id",
        the_lake.table_dir("offers") / "offers.parquet",
    )
    warehouse.publish(the_lake)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": loaded.rows_accepted,
            "rows_read": loaded.rows_read,
            "rows_quarantined": loaded.rows_quarantined,
            "source": str(path),
            "preview": _preview(con, f"SELECT * EXCLUDE (_line) FROM {loaded.view}"),
        }
    )


@dg.asset(
    group_name="reference",
    kinds={"yaml", "parquet"},
    owners=["team:marketing"],
    description="The ordered Next Best Offer rules (`reference/nbo_rules.yaml`; the recipe's five rules "
    "when the file is absent). A snapshot is kept in the lake so every offer can be traced to the rules "
    "in force; the `rules_lint` check reports rules that can never fire.",
)
def nbo_rules(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource, landing: LandingZoneResource
) -> dg.MaterializeResult:
    reference_is_consistent(landing)
    source = landing.reference_dir / "nbo_rules.yaml"
    if not source.exists():
        context.log.info(f"{source} not found: using the shipped default rules")
        source = DEFAULT_RULES_PATH
    rules = load_rules(source)  # raises RulesError naming the file and the rule
    the_lake = lake.lake()
    target_dir = the_lake.table_dir("nbo_rules")
    target_dir.mkdir(parents=True, exist_ok=True)
    tmp = target_dir / f".{RULES_SNAPSHOT}.tmp"
    shutil.copyfile(source, tmp)
    tmp.replace(target_dir / RULES_SNAPSHOT)
    findings = {f.rule.position: f.message for f in lint(rules) if f.rule}
    table = pa.table(
        {
            "position": [r.position for r in rules.rules] + [len(rules.rules) + 1],
            "rule_id": [r.id for r in rules.rules] + ["default"],
            "offer_id": [r.offer_id for r in rules.rules] + [rules.default_offer],
            "condition_sql": [rule_condition_sql(r) for r in rules.rules] + ["no earlier rule matched"],
            "lint": [findings.get(r.position) for r in rules.rules] + [None],
        }
    )
    con = connect()
    con.register("rules_table", table)
    the_lake.write(con, "SELECT * FROM rules_table", target_dir / "nbo_rules.parquet")
    warehouse.publish(the_lake)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rules.rules),
            "source": str(source),
            "default_offer": rules.default_offer,
            "rules": dg.MetadataValue.md(table.to_pandas().to_markdown(index=False)),
        }
    )


@dg.asset(
    group_name="reference",
    kinds={"parquet", "duckdb"},
    owners=["team:data-engineering"],
    deps=[FEED_ASSET_KEYS["customers"]],
    description="Customers as a history of versions (valid_from, valid_to) from the reference snapshot "
    "(`reference/customers`) and the `customers` change feed. Every join with customers uses the version "
    "valid at the event's time. Holds contact data for delivery; the warehouse view shows only hashes.",
)
def customers(lake: LakeResource, warehouse: WarehouseResource, landing: LandingZoneResource) -> dg.MaterializeResult:
    reference_is_consistent(landing)
    con, the_lake = connect(), lake.lake()
    path = find_reference_file(landing.reference_dir, "customers")
    snapshot = None
    loaded = None
    if path is not None:
        loaded = load_reference(con, the_lake, REFERENCE_CUSTOMERS, path, loaded_at=datetime.now(UTC))
        snapshot = loaded.view
    updates = the_lake.scan_sql("customer_updates") if the_lake.has_files("customer_updates") else None
    if snapshot is None and updates is None:
        raise FileNotFoundError(
            f"no customers: neither {landing.reference_dir}/customers.(csv|parquet|jsonl) nor customer change files"
        )
    sql = customer_versions_sql(snapshot, updates, landing.pii_salt)
    rows = the_lake.write(con, sql, the_lake.table_dir("customers") / "customers.parquet")
    (n_customers,) = con.execute(
        f"SELECT count(DISTINCT customer_id) FROM read_parquet('{the_lake.table_dir('customers')}/customers.parquet')"
    ).fetchone()
    warehouse.publish(the_lake)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "customers": int(n_customers),
            "versions_per_customer": round(rows / n_customers, 3) if n_customers else 0.0,
            "snapshot_rows_quarantined": loaded.rows_quarantined if loaded else 0,
        }
    )


# --------------------------------------------------------------------------------------------
# Geo-marketing reference data: allies, their stores (geofences) and campaigns, the policy
# --------------------------------------------------------------------------------------------


def _unknown_ally_sql(the_lake, view: str) -> str:
    if not the_lake.has_files("allies"):
        return f"SELECT _line, 'ally_id: no allies loaded: ' || ally_id AS _reason FROM {view}"
    return (
        f"SELECT _line, 'ally_id: unknown ally: ' || ally_id AS _reason FROM {view} "
        f"WHERE ally_id NOT IN (SELECT ally_id FROM {the_lake.scan_sql('allies', hive=False)})"
    )


def _store_checks(the_lake):
    def check(con, view: str) -> str:
        df = con.execute(f"SELECT _line, geometry_wkt FROM {view}").df()
        df["_reason"] = polygon_problems(df["geometry_wkt"])
        con.register("store_geometry_problems", df[["_line", "_reason"]])
        return f"SELECT * FROM store_geometry_problems UNION ALL ({_unknown_ally_sql(the_lake, view)})"

    return check


def _content_version(con, the_lake, feed: Feed) -> dg.DataVersion:
    """The table's data version: a digest of its rows. The daily refresh reloads every reference table
    whole; the same rows keep their version, so what follows a change of content (the marts'
    automation) is not set off by a reload."""
    return dg.DataVersion(the_lake.content_digest(con, feed.table))


def _load_reference_table(context, feed: Feed, lake: LakeResource, warehouse: WarehouseResource, landing, checks):
    reference_is_consistent(landing)
    path = find_reference_file(landing.reference_dir, feed.table)
    con, the_lake = connect(), lake.lake()
    if path is None:
        # Geo-marketing is optional: without the file the table is empty and nothing is notified.
        context.log.warning(f"{landing.reference_dir}: no {feed.table} file ({feed.table}.csv, .parquet or .jsonl)")
        empty = ", ".join(f"NULL::{c.sql_type} AS {c.name}" for c in feed.columns)
        the_lake.write(con, f"SELECT {empty} WHERE false", the_lake.table_dir(feed.table) / f"{feed.table}.parquet")
        warehouse.publish(the_lake)
        result = dg.MaterializeResult(
            metadata={"dagster/row_count": 0, "source": "none"}, data_version=_content_version(con, the_lake, feed)
        )
        return con, None, result
    loaded = load_reference(
        con, the_lake, feed, path, loaded_at=datetime.now(UTC), row_checks=checks(the_lake) if checks else None
    )
    if loaded.rows_quarantined:
        context.log.warning(
            f"{path}: {loaded.rows_quarantined} of {loaded.rows_read} rows rejected; see the `quarantine` table "
            f"(feed {feed.name!r})"
        )
    the_lake.write(
        con,
        f"SELECT * EXCLUDE (_line) FROM {loaded.view} ORDER BY {', '.join(feed.key)}",
        the_lake.table_dir(feed.table) / f"{feed.table}.parquet",
    )
    warehouse.publish(the_lake)
    return (
        con,
        loaded,
        dg.MaterializeResult(
            data_version=_content_version(con, the_lake, feed),
            metadata={
                "dagster/row_count": loaded.rows_accepted,
                "rows_read": loaded.rows_read,
                "rows_quarantined": loaded.rows_quarantined,
                "source": str(path),
                "preview": _preview(con, f"SELECT * EXCLUDE (_line) FROM {loaded.view}"),
            },
        ),
    )


@dg.asset(
    group_name="reference",
    kinds={"parquet", "duckdb"},
    owners=["team:partnerships"],
    description="The bank's allies (`reference/allies`): ally_id, ally_name, category.",
)
def allies(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource, landing: LandingZoneResource
) -> dg.MaterializeResult:
    return _load_reference_table(context, ALLIES, lake, warehouse, landing, None)[2]


@dg.asset(
    group_name="reference",
    deps=["allies"],
    kinds={"parquet", "geopandas"},
    owners=["team:partnerships"],
    description="Allies' stores and their geofences (`reference/stores`): a circle of radius_m around "
    "(lat, lon), or the polygon in geometry_wkt (WKT, lon lat order). Bad coordinates, invalid polygons "
    "and unknown allies are quarantined with the store's line and the reason.",
)
def stores(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource, landing: LandingZoneResource
) -> dg.MaterializeResult:
    con, loaded, result = _load_reference_table(context, STORES, lake, warehouse, landing, _store_checks)
    if loaded is None:
        return result
    (polygons,) = con.execute(f"SELECT count(*) FILTER (geometry_wkt IS NOT NULL) FROM {loaded.view}").fetchone()
    result.metadata["polygon_fences"] = int(polygons)
    result.metadata["circle_fences"] = loaded.rows_accepted - int(polygons)
    return result


@dg.asset(
    group_name="reference",
    deps=["allies"],
    kinds={"parquet", "duckdb"},
    owners=["team:marketing"],
    description="Allies' campaigns (`reference/campaigns`): offer text, window [starts_at, ends_at), "
    "priority (higher wins) and holdout_pct, the control group's share (0-100).",
)
def campaigns(
    context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource, landing: LandingZoneResource
) -> dg.MaterializeResult:
    return _load_reference_table(
        context, CAMPAIGNS, lake, warehouse, landing, lambda the_lake: lambda con, v: _unknown_ally_sql(the_lake, v)
    )[2]


@dg.asset(
    group_name="reference",
    kinds={"yaml"},
    owners=["team:marketing"],
    description="The notification policy (`reference/policy.yaml`): cooldown_minutes, "
    "attribution_window_minutes (at most a day), max_accuracy_m, max_delay_minutes (null: no limit). An unknown "
    "key or a negative value fails the run; absent file: the defaults (60, 15, 100, 30). A snapshot is kept in "
    "the lake for the runs that follow.",
)
def policy(context: dg.AssetExecutionContext, lake: LakeResource, landing: LandingZoneResource) -> dg.MaterializeResult:
    reference_is_consistent(landing)
    source = landing.reference_dir / POLICY_SNAPSHOT
    text = source.read_text() if source.exists() else ""
    parsed = parse_policy(text, source=str(source))  # raises PolicyError naming the key
    target_dir = lake.lake().table_dir("policy")
    target_dir.mkdir(parents=True, exist_ok=True)
    tmp = target_dir / f".{POLICY_SNAPSHOT}.tmp"
    tmp.write_text(text or "# defaults\n")
    tmp.replace(target_dir / POLICY_SNAPSHOT)
    if not source.exists():
        context.log.info(f"{source} not found: using the default policy")
    figures = {k: float(v) if v is not None else "no limit" for k, v in asdict(parsed).items()}
    return dg.MaterializeResult(metadata=figures | {"source": str(source)})
