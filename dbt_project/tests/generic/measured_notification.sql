{# Every value is the id of a notification the outcomes measure, of the days the build covers: a sent
   one (holdout false) or a holdout entry (holdout true). Stronger than a relationship to every
   decision (a purchase credited to a throttled entry would pass that), and it reads the outcomes'
   table of measured notifications, not every entry of the day. #}
{% test measured_notification(model, column_name, holdout) %}
select credited.{{ column_name }}
from {{ model }} as credited
left join (
    select notification_id from {{ ref('int_notification_outcomes') }} where is_holdout = {{ holdout }}
) as measured on credited.{{ column_name }} = measured.notification_id
where credited.{{ column_name }} is not null and measured.notification_id is null
{% endtest %}
