-- One row per measured notification: sent ones (treatment) and holdout entries (control),
-- with whether a purchase followed within the attribution window.
with notifications as (
    select * from {{ ref('stg_notifications') }}
    where reason in ('sent', 'holdout')
),

credited as (
    select notification_id, amount, minutes_to_purchase from {{ ref('stg_effective_notifications') }}
    union all
    select notification_id, amount, minutes_to_purchase from {{ ref('stg_holdout_conversions') }}
),

per_notification as (
    select
        notification_id,
        count(*) as purchases,
        sum(amount) as amount,
        min(minutes_to_purchase) as minutes_to_first_purchase
    from credited
    group by notification_id
),

outcomes as (
    select
        n.notification_id,
        n.customer_id,
        n.campaign_id,
        n.ally_id,
        n.channel,
        n.notification_date,
        n.reason = 'holdout' as is_holdout,
        coalesce(p.purchases, 0) > 0 as converted,
        coalesce(p.purchases, 0) as purchases,
        coalesce(p.amount, 0) as amount,
        p.minutes_to_first_purchase
    from notifications as n
    left join per_notification as p using (notification_id)
)

select * from outcomes
