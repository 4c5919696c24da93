with assignments as (
    select * from {{ ref('stg_next_best_offer') }}
),

offer_mix as (
    select
        activity_date,
        offer_id,
        rule_id,
        count(*) as activities,
        count(distinct customer_id) as customers,
        avg(propensity_to_buy) as avg_propensity_to_buy
    from assignments
    group by all
)

select * from offer_mix
