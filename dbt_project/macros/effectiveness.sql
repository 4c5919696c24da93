{# The effectiveness figures of a group of measured notifications (int_notification_outcomes). #}
{% macro effectiveness_figures() -%}
        count(*) filter (where not is_holdout) as notifications_sent,
        count(*) filter (where not is_holdout and converted) as effective_notifications,
        count(*) filter (where not is_holdout and converted) / nullif(count(*) filter (where not is_holdout), 0)
            as effective_rate,
        coalesce(sum(amount) filter (where not is_holdout), 0) as attributed_amount,
        median(minutes_to_first_purchase) filter (where not is_holdout and converted) as median_minutes_to_purchase,
        count(*) filter (where is_holdout) as holdout_entries,
        count(*) filter (where is_holdout and converted) as holdout_converted,
        count(*) filter (where is_holdout and converted) / nullif(count(*) filter (where is_holdout), 0)
            as holdout_rate
{%- endmacro %}

{# Uplift (effective rate minus holdout rate) with a 95% normal-approximation interval. #}
{% macro uplift_columns() -%}
        effective_rate - holdout_rate as uplift,
        effective_rate - holdout_rate - 1.96 * sqrt(
            effective_rate * (1 - effective_rate) / notifications_sent
            + holdout_rate * (1 - holdout_rate) / holdout_entries
        ) as uplift_ci_low,
        effective_rate - holdout_rate + 1.96 * sqrt(
            effective_rate * (1 - effective_rate) / notifications_sent
            + holdout_rate * (1 - holdout_rate) / holdout_entries
        ) as uplift_ci_high
{%- endmacro %}
