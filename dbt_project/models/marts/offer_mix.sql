{{ config(post_hook="{{ export_mart_by_date(this, 'activity_date') }}") }}

-- Each assignment carries the customer version it was computed with (income, FICO), so its segment
-- is the one the rules saw: no join back to the customer history is needed.
with assignments as (
    select * from {{ ref('stg_next_best_offer') }}
),

offer_mix as (
    select
        activity_date,
        offer_id,
        rule_id,
        credit_segment,
        count(*) as activities,
        count(distinct customer_id) as customers,
        avg(propensity_to_buy) as avg_propensity_to_buy
    from assignments
    group by all
)

select * from offer_mix
order by activity_date, offer_id, rule_id, credit_segment
