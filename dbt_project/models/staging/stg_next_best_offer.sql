with source as (
    select * from {{ source('lake', 'next_best_offer') }}
),

renamed as (
    select
        activity_id,
        customer_id,
        offer_id,
        rule_id,
        activity_type,
        propensity_to_buy,
        income,
        fico,
        event_time,
        customer_version,
        cast(event_time as date) as activity_date
    from source
)

select * from renamed
