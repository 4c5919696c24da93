"""Checks on reference data: the offer rules."""

import dagster as dg

from nbo_platform.defs.resources import LakeResource
from nbo_platform.domain.rules import lint, load_rules
from nbo_platform.duck import connect


@dg.asset_check(
    asset="nbo_rules",
    name="rules_lint",
    additional_deps=["offers"],
    description="Every rule can fire (no rule is covered by earlier ones, no rule contradicts itself) "
    "and every offer id the rules give exists in `offers`.",
    blocking=True,
)
def rules_lint(lake: LakeResource) -> dg.AssetCheckResult:
    the_lake = lake.lake()
    rules = load_rules(the_lake.table_dir("nbo_rules") / "nbo_rules.yaml")
    known = None
    if the_lake.has_files("offers"):
        known = {
            r[0]
            for r in connect().execute(f"SELECT offer_id FROM {the_lake.scan_sql('offers', hive=False)}").fetchall()
        }
    findings = lint(rules, known)
    errors = [f for f in findings if f.severity == "error"]
    return dg.AssetCheckResult(
        passed=not findings,
        # Unknown offers would lose assignments: that blocks. A shadowed rule is wasted, not harmful.
        severity=dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN,
        metadata={"findings": "\n".join(f.message for f in findings) or "none"},
    )
