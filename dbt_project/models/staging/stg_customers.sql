-- Customer versions without contact data: only what segmenting needs.
with source as (
    select * from {{ source('lake', 'customers') }}
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
