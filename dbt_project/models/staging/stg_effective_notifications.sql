-- depends_on: {{ source('lake', 'effective_notifications') }}
with source as (
    {% if lake_has('effective_notifications') %}
    select * from {{ source('lake', 'effective_notifications') }} where {{ in_mart_dates('date') }}  -- date: the lake partition
    {% else %}
    select null::varchar as notification_id, null::varchar as transaction_id, null::bigint as customer_id,
           null::bigint as ally_id, null::bigint as campaign_id, null::varchar as channel,
           null::double as amount, null::timestamptz as notified_at, null::timestamptz as purchased_at,
           null::double as minutes_to_purchase
    where false
    {% endif %}
),

renamed as (
    select
        notification_id,
        transaction_id,
        customer_id,
        ally_id,
        campaign_id,
        channel,
        amount,
        notified_at,
        purchased_at,
        minutes_to_purchase,
        {{ utc_date("notified_at") }} as notification_date
    from source
)

select * from renamed
