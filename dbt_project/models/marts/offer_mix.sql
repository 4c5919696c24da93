{{ config(materialized='external', location=mart_location('offer_mix')) }}

with assignments as (
    select * from {{ ref('stg_next_best_offer') }}
),

customers as (
    select * from {{ ref('stg_customers') }}
),

offer_mix as (
    select
        a.activity_date,
        a.offer_id,
        a.rule_id,
        coalesce(c.credit_segment, 'unknown') as credit_segment,
        count(*) as activities,
        count(distinct a.customer_id) as customers,
        avg(a.propensity_to_buy) as avg_propensity_to_buy
    from assignments as a
    left join customers as c
        on c.customer_id = a.customer_id and c.version = a.customer_version
    group by all
)

select * from offer_mix
order by activity_date, offer_id, rule_id, credit_segment
