"""nbo_platform: Next Best Offer and geo-based real-time marketing on Dagster, dbt and DuckDB."""

__version__ = "0.1.0"
