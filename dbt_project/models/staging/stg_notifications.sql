-- depends_on: {{ source('lake', 'notifications') }}
with source as (
    {% if lake_has('notifications') %}
    select * from {{ source('lake', 'notifications') }} where {{ in_mart_dates('date') }}  -- date: the lake partition
    {% else %}
    select null::varchar as notification_id, null::bigint as customer_id, null::bigint as ally_id,
           null::bigint as store_id, null::bigint as campaign_id, null::varchar as channel,
           null::timestamptz as event_time, null::varchar as status, null::varchar as reason,
           null::double as distance_m
    where false
    {% endif %}
),

renamed as (
    select
        notification_id,
        customer_id,
        ally_id,
        store_id,
        campaign_id,
        channel,
        event_time,
        status,
        reason,
        distance_m,
        {{ utc_date("event_time") }} as notification_date
    from source
)

select * from renamed
