"""The marts follow their inputs: a new partition of an input requests the dbt build and the report, and
so does reference data whose content changed, but not a reload of the same rows."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from nbo_platform.definitions import build_defs
from nbo_platform.defs.marts.assets import nbo_dbt_models
from nbo_platform.recipe import write_recipe
from nbo_platform.runner import run_pipeline


def _write_allies(settings, *names: str) -> None:
    rows = "".join(f"{i},{name},coffee\n" for i, name in enumerate(names, start=1))
    (settings.data_dir / "reference" / "allies.csv").write_text("ally_id,ally_name,category\n" + rows)


@pytest.mark.e2e
def test_new_input_partitions_and_changed_reference_data_request_every_model_and_the_report(settings):
    write_recipe(settings.data_dir, start=datetime(2025, 6, 2, 9, tzinfo=UTC))
    _write_allies(settings, "Cafe Uno", "Cafe Dos")
    instance = dg.DagsterInstance.ephemeral()
    run_pipeline(settings, instance=instance, echo=lambda _: None)
    defs = build_defs(settings)
    # The daily inputs have days without data (every day since the partitions' start but one): plain
    # eager automation treats them as missing inputs and never requests the marts.
    materialized = instance.get_materialized_partitions(dg.AssetKey("next_best_offer"))
    assert materialized == {"2025-06-02"}

    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0  # everything is up to date after `nbo run`

    dg.materialize(
        [*defs.assets, *defs.asset_checks],
        selection=dg.AssetSelection.assets("next_best_offer").required_multi_asset_neighbors(),
        partition_key="2025-06-02",
        resources=defs.resources,
        instance=instance,
    )
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    # The models are built together (never split), so all of them are requested, and the report after them.
    requested = {k.to_user_string(): second.get_num_requested(k) for k in nbo_dbt_models.keys}
    assert requested == dict.fromkeys(requested, 1) and len(requested) == 12
    assert second.get_num_requested(dg.AssetKey("campaign_report")) == 1
    assert second.get_num_requested(dg.AssetKey("next_best_offer")) == 0

    third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
    assert third.total_requested == 0  # requested once, not again on the next tick

    # The daily reference refresh reloads allies, stores and campaigns whole. The same rows keep their
    # data version: no build is requested (it would cover no day).
    def refresh() -> None:
        dg.materialize(
            [*defs.assets, *defs.asset_checks],
            selection=dg.AssetSelection.assets("allies", "stores", "campaigns"),
            resources=defs.resources,
            instance=instance,
        )

    def data_versions() -> dict[str, str]:
        events = {k: instance.get_latest_materialization_event(dg.AssetKey(k)) for k in ("allies", "stores")}
        return {k: e.asset_materialization.tags["dagster/data_version"] for k, e in events.items()}

    versions = data_versions()
    refresh()
    assert data_versions() == versions
    fourth = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=third.cursor)
    assert fourth.total_requested == 0

    # An ally renamed: the marts carry ally names, so every model and the report are requested, once.
    _write_allies(settings, "Cafe Uno", "Cafe Two")
    refresh()
    assert data_versions()["allies"] != versions["allies"] and data_versions()["stores"] == versions["stores"]
    fifth = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=fourth.cursor)
    assert {k.to_user_string(): fifth.get_num_requested(k) for k in nbo_dbt_models.keys} == requested
    assert fifth.get_num_requested(dg.AssetKey("campaign_report")) == 1
    sixth = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=fifth.cursor)
    assert sixth.total_requested == 0
