{# The lake root the pipeline writes (NBO_LAKE_URI, else NBO_DATA_DIR/lake). #}
{% macro lake_root() -%}
{{ env_var('NBO_LAKE_URI', env_var('NBO_DATA_DIR', '../data') ~ '/lake') }}
{%- endmacro %}

{# True when the lake holds files for a table. At parse time it is true, so dbt records the source
   dependency; at run time a table the pipeline has not written yet reads as empty. #}
{% macro lake_has(table) -%}
{%- if not execute -%}{{ return(true) }}{%- endif -%}
{%- set found = run_query("select count(*) from glob('" ~ lake_root() ~ "/" ~ table ~ "/**/*.parquet')") -%}
{{ return(found.columns[0].values()[0] > 0) }}
{%- endmacro %}

{# Where a mart is exported in the lake (Parquet), for engines other than DuckDB. #}
{% macro mart_location(name) -%}
{{ lake_root() }}/marts/{{ name }}/{{ name }}.parquet
{%- endmacro %}
