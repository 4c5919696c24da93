-- depends_on: {{ source('lake', 'allies') }}
with source as (
    {% if lake_has('allies') %}
    select * from {{ source('lake', 'allies') }}
    {% else %}
    select null::bigint as ally_id, null::varchar as ally_name, null::varchar as category where false
    {% endif %}
)

select ally_id, ally_name, category from source
