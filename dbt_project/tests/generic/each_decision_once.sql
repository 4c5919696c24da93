{# The funnel's entries of each day are that day's decisions, each counted once: no notification_id
   repeats among the decisions (an id digests the entry's instant, so a repeat would be within one
   day) and the funnel lost none and added none. It reads the decisions and the funnel, so it runs
   once both are built, alongside the other marts, instead of holding back every model downstream of
   the decisions as a uniqueness test on stg_notifications did (a large day's build: 5.3-5.6 s
   instead of 5.5-6.1 s, three runs each). #}
{% test each_decision_once(model, column_name) %}
with decisions as (
    select notification_date as date, count(*) as decisions, count(distinct notification_id) as ids
    from {{ ref('stg_notifications') }}
    group by all
)
select d.date, d.decisions, d.ids, f.{{ column_name }} as funnel_entries
from decisions as d
full join {{ model }} as f using (date)
where d.decisions is distinct from d.ids or f.{{ column_name }} is distinct from d.decisions
{% endtest %}
