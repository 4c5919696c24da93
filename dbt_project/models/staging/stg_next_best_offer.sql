-- depends_on: {{ source('lake', 'next_best_offer') }}
with source as (
    {% if lake_has('next_best_offer') %}
    select * from {{ source('lake', 'next_best_offer') }} where {{ in_mart_dates('date') }}  -- date: the lake partition
    {% else %}
    select null::bigint as activity_id, null::bigint as customer_id, null::bigint as offer_id,
           null::varchar as rule_id, null::varchar as activity_type, null::double as propensity_to_buy,
           null::bigint as income, null::bigint as fico, null::timestamptz as event_time,
           null::bigint as customer_version
    where false
    {% endif %}
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
        {{ credit_segment("fico") }} as credit_segment,
        event_time,
        customer_version,
        {{ utc_date("event_time") }} as activity_date
    from source
)

select * from renamed
