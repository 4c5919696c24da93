{# The dates a build covers. The Dagster asset sets NBO_MART_DATES to the days whose inputs changed
   since the marts were last built (comma-separated, possibly none); unset or '*', every date. It is
   read only while executing, so a new set of dates never makes dbt parse the project again. #}
{% macro mart_dates() -%}
{%- if not execute -%}{{ return(none) }}{%- endif -%}
{%- set raw = env_var('NBO_MART_DATES', '*') | trim -%}
{%- if raw == '*' -%}{{ return(none) }}{%- endif -%}
{%- set dates = [] -%}
{%- for d in raw.split(',') if d | trim -%}
    {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', d | trim) -%}
        {{ exceptions.raise_compiler_error("NBO_MART_DATES: '" ~ d ~ "' is not a date (YYYY-MM-DD)") }}
    {%- endif -%}
    {%- do dates.append(d | trim) -%}
{%- endfor -%}
{{ return(dates) }}
{%- endmacro %}

{# A filter on the dates a build covers: on a daily lake table's partition column, DuckDB reads only
   those days' files. #}
{% macro in_mart_dates(column) -%}
{%- set dates = mart_dates() -%}
{%- if dates is none -%}true
{%- elif dates | length == 0 -%}false
{%- else -%}{{ column }} in ({% for d in dates %}date '{{ d }}'{% if not loop.last %}, {% endif %}{% endfor %})
{%- endif -%}
{%- endmacro %}

{# Post-hook of every mart: its rows written as one Parquet file per date (mart_file), for the dates
   the build covers; a covered date without rows gets an empty file, so nothing an earlier build wrote
   survives for it. #}
{% macro export_mart_by_date(relation, column) -%}
{%- if not execute -%}{{ return('select 0 as dates_exported') }}{%- endif -%}
{%- set dates = mart_dates() -%}
{%- if dates is none -%}
    {%- set dates = run_query("select distinct strftime(" ~ column ~ ", '%Y-%m-%d') from " ~ relation ~ " where " ~ column ~ " is not null order by 1").columns[0].values() -%}
{%- endif -%}
{%- for d in dates -%}
    {% do run_query("copy (select * from " ~ relation ~ " where " ~ column ~ " = date '" ~ d ~ "') to '" ~ mart_file(relation.identifier, d) ~ "' (format parquet, compression zstd, use_tmp_file true)") %}
{%- endfor -%}
select {{ dates | length }} as dates_exported
{%- endmacro %}
