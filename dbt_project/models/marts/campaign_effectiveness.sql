{{ config(post_hook="{{ export_mart_by_date(this, 'date') }}") }}

with outcomes as (
    select * from {{ ref('int_notification_outcomes') }}
),

figures as (
    select
        campaign_id,
        ally_id,
        channel,
        notification_date as date,
        {{ effectiveness_figures() }}
    from outcomes
    group by all
)

select
    *,
    {{ uplift_columns() }}
from figures
order by date, campaign_id, channel
