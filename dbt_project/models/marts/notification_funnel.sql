{{ config(post_hook="{{ export_mart_by_date(this, 'date') }}") }}

-- Per day: geofence entries, what stopped each one, what was sent and what worked.
with decisions as (
    select * from {{ ref('stg_notifications') }}
),

funnel as (
    select
        notification_date as date,
        count(*) as entries,
        count(*) filter (where reason = 'unknown_customer') as unknown_customer,
        count(*) filter (where reason = 'no_consent') as no_consent,
        count(*) filter (where reason = 'expired') as expired,
        count(*) filter (where reason = 'no_campaign') as no_campaign,
        count(*) filter (where reason = 'throttled') as throttled,
        count(*) filter (where reason = 'holdout') as holdout,
        count(*) filter (where reason = 'sent') as sent
    from decisions
    group by notification_date
),

-- Effective: sent notifications a purchase followed, counted per day from the outcomes (one row per
-- measured notification) instead of looking every entry up among them.
effective as (
    select notification_date as date, count(*) as effective
    from {{ ref('int_notification_outcomes') }}
    where not is_holdout and converted
    group by notification_date
)

select funnel.*, coalesce(effective.effective, 0) as effective
from funnel
left join effective using (date)
order by date
