"""The marts follow their inputs: a new partition of an input requests the dbt build and the report."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from nbo_platform.definitions import build_defs
from nbo_platform.defs.marts.assets import nbo_dbt_models
from nbo_platform.recipe import write_recipe
from nbo_platform.runner import run_pipeline


@pytest.mark.e2e
def test_a_new_partition_of_an_input_requests_every_model_and_the_report(settings):
    write_recipe(settings.data_dir, start=datetime(2025, 6, 2, 9, tzinfo=UTC))
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
