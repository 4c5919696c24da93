{{ config(materialized='external', location=mart_location('notification_funnel')) }}

-- Per day: geofence entries, what stopped each one, what was sent and what worked.
with decisions as (
    select * from {{ ref('stg_notifications') }}
),

effective as (
    select notification_id from {{ ref('int_notification_outcomes') }} where not is_holdout and converted
)

select
    notification_date as date,
    count(*) as entries,
    count(*) filter (where reason = 'unknown_customer') as unknown_customer,
    count(*) filter (where reason = 'no_consent') as no_consent,
    count(*) filter (where reason = 'no_campaign') as no_campaign,
    count(*) filter (where reason = 'throttled') as throttled,
    count(*) filter (where reason = 'holdout') as holdout,
    count(*) filter (where reason = 'sent') as sent,
    count(*) filter (where notification_id in (select notification_id from effective)) as effective
from decisions
group by notification_date
order by date
