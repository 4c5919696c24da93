-- depends_on: {{ source('lake', 'campaigns') }}
with source as (
    {% if lake_has('campaigns') %}
    select * from {{ source('lake', 'campaigns') }}
    {% else %}
    select null::bigint as campaign_id, null::bigint as ally_id, null::varchar as offer_text,
           null::timestamptz as starts_at, null::timestamptz as ends_at, null::bigint as priority,
           null::double as holdout_pct
    where false
    {% endif %}
)

select campaign_id, ally_id, offer_text, starts_at, ends_at, priority, holdout_pct from source
