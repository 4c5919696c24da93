{# The lake root the pipeline writes (NBO_LAKE_URI, else NBO_DATA_DIR/lake). #}
{% macro lake_root() -%}
{{ env_var('NBO_LAKE_URI', env_var('NBO_DATA_DIR', '../data') ~ '/lake') }}
{%- endmacro %}

{# True when the lake holds files for a table. At parse time it is true, so dbt records the source
   dependency; at run time a table the pipeline has not written yet reads as empty. Every staging
   model asks before it reads its source, so this is also where the lake root goes on DuckDB's file
   search path, against which the sources' relative paths are read (GLOBAL: the connections of every
   thread; `dbt show` of a staging model too). Only while executing: nothing dbt parses depends on
   the data dir. #}
{% macro lake_has(table) -%}
{%- if not execute -%}{{ return(true) }}{%- endif -%}
{%- set root = lake_root() -%}
{%- if ',' in root -%}
    {{ exceptions.raise_compiler_error("lake root '" ~ root ~ "': DuckDB's file search path is a comma-separated list, so the lake's path cannot hold a comma") }}
{%- endif -%}
{%- do run_query("set global file_search_path = '" ~ (root | replace("'", "''")) ~ "'") -%}
{%- set found = run_query("select count(*) from glob('" ~ root ~ "/" ~ table ~ "/**/*.parquet')") -%}
{{ return(found.columns[0].values()[0] > 0) }}
{%- endmacro %}

{# The file of one date of a mart: in the lake (lake/marts/<mart>/), where the warehouse's views and
   other engines read it, or under NBO_MART_OUTPUT when it is set: the Dagster asset has dbt write
   there and moves the files into the lake once every test has passed. #}
{% macro mart_file(name, date) -%}
{{ env_var('NBO_MART_OUTPUT', lake_root() ~ '/marts') }}/{{ name }}/{{ name }}_{{ date }}.parquet
{%- endmacro %}
