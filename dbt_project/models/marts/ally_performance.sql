{{ config(post_hook="{{ export_mart_by_date(this, 'date') }}") }}

-- What the bank reports to each ally: how many of its customers' visits were entries, how many
-- were notified, and what the notifications brought in against the holdout group.
with outcomes as (
    select * from {{ ref('int_notification_outcomes') }}
),

entries as (
    select ally_id, notification_date as date, count(*) as store_entries, count(distinct customer_id) as visitors
    from {{ ref('stg_notifications') }}
    group by all
),

figures as (
    select
        ally_id,
        notification_date as date,
        count(distinct campaign_id) as campaigns,
        {{ effectiveness_figures() }}
    from outcomes
    group by all
),

allies as (
    select * from {{ ref('stg_allies') }}
)

select
    e.ally_id,
    a.ally_name,
    a.category,
    e.date,
    e.store_entries,
    e.visitors,
    coalesce(f.campaigns, 0) as campaigns,
    coalesce(f.notifications_sent, 0) as notifications_sent,
    coalesce(f.effective_notifications, 0) as effective_notifications,
    f.effective_rate,
    coalesce(f.attributed_amount, 0) as attributed_amount,
    f.median_minutes_to_purchase,
    coalesce(f.holdout_entries, 0) as holdout_entries,
    coalesce(f.holdout_converted, 0) as holdout_converted,
    f.holdout_rate,
    f.effective_rate - f.holdout_rate as uplift
from entries as e
left join figures as f using (ally_id, date)
left join allies as a using (ally_id)
order by e.date, e.ally_id
