-- Customer versions without contact data: only what segmenting needs.
-- depends_on: {{ source('lake', 'customers') }}
with source as (
    {% if lake_has('customers') %}
    select * from {{ source('lake', 'customers') }}
    {% else %}
    select null::bigint as customer_id, null::bigint as version, null::timestamptz as valid_from,
           null::timestamptz as valid_to, null::bigint as income, null::bigint as fico
    where false
    {% endif %}
)

select
    customer_id,
    version,
    valid_from,
    valid_to,
    income,
    fico,
    case
        when fico >= 740 then 'prime_plus'
        when fico >= 670 then 'prime'
        when fico >= 580 then 'near_prime'
        else 'subprime'
    end as credit_segment
from source
