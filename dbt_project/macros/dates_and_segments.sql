{# The UTC date of a timestamptz, whatever the session's time zone. A plain cast goes through the
   ICU calendar at close to a second per 10M rows; a timestamptz holds UTC microseconds, and the
   naive timestamp of those microseconds has the UTC date, at about a tenth of the cost. #}
{% macro utc_date(column) -%}
cast(make_timestamp(epoch_us({{ column }})) as date)
{%- endmacro %}

{# The FICO band analysts segment customers by (unknown when the score is missing). #}
{% macro credit_segment(fico) -%}
case
        when {{ fico }} is null then 'unknown'
        when {{ fico }} >= 740 then 'prime_plus'
        when {{ fico }} >= 670 then 'prime'
        when {{ fico }} >= 580 then 'near_prime'
        else 'subprime'
    end
{%- endmacro %}
