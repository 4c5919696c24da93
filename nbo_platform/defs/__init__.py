"""Dagster definitions, one folder per domain with the same file roles in each."""
