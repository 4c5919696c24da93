{# The grain of a model: no two rows share these columns (dbt_utils' test, without a package download). #}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
