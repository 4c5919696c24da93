"""The campaign report's arithmetic and its HTML, without a pipeline run."""

import math

import pandas as pd
import pytest

from nbo_platform.campaign_report import ReportData, _with_rates, render_html
from nbo_platform.charts import effectiveness_chart, geo_map


def test_rates_and_uplift_interval_come_from_summed_counts():
    df = _with_rates(
        pd.DataFrame(
            {
                "notifications_sent": [400, 0],
                "effective_notifications": [60, 0],
                "holdout_entries": [100, 10],
                "holdout_converted": [5, 1],
                "attributed_amount": [0.0, 0.0],
            }
        )
    )
    p1, p0 = 60 / 400, 5 / 100
    se = math.sqrt(p1 * (1 - p1) / 400 + p0 * (1 - p0) / 100)
    assert df.loc[0, "uplift"] == pytest.approx(p1 - p0)
    assert df.loc[0, "uplift_ci_low"] == pytest.approx(p1 - p0 - 1.96 * se)
    assert df.loc[0, "uplift_ci_high"] == pytest.approx(p1 - p0 + 1.96 * se)
    assert pd.isna(df.loc[1, "effective_rate"]) and pd.isna(df.loc[1, "uplift"])  # nothing sent: no rate, no error


def test_a_report_before_any_mart_says_what_is_missing():
    empty = pd.DataFrame()
    data = ReportData(
        None, [], [], empty, empty, empty, empty, pd.DataFrame(), pd.DataFrame(), ["campaign_effectiveness"]
    )
    page = render_html(data)
    assert "Not built yet: campaign_effectiveness" in page
    assert "<script" not in page


def test_pictures_are_png():
    rows = pd.DataFrame(
        {"campaign": ["a", "b"], "effective_rate": [0.2, 0.1], "holdout_rate": [0.05, 0.1], "uplift": [0.15, 0.0],
         "uplift_ci_low": [0.1, -0.05], "uplift_ci_high": [0.2, 0.05]}
    )  # fmt: skip
    assert effectiveness_chart(rows, "campaign", "t").startswith(b"\x89PNG")
    stores = pd.DataFrame({"lat": [4.6, 4.7], "lon": [-74.1, -74.05], "radius_m": [100, 200], "category": ["a", None]})
    hits = pd.DataFrame({"lat": [4.6001], "lon": [-74.1], "is_entry": [True]})
    assert geo_map(stores, hits, "t").startswith(b"\x89PNG")


def test_the_funnel_is_drawn_once_for_the_page_and_the_metadata():
    from nbo_platform import charts

    stages = [("entries", 10), ("throttled", 4), ("sent", 6), ("effective", 2)]
    first = charts.funnel_chart(stages)
    drawn = charts._funnel_png.cache_info().misses
    assert charts.funnel_chart(list(stages)) == first and first.startswith(b"\x89PNG")
    assert charts._funnel_png.cache_info().misses == drawn  # the second call reused the picture
    assert charts.funnel_chart([*stages[:3], ("effective", 3)]) != first


def test_the_campaign_chart_is_drawn_once_for_the_report_and_the_mart_metadata():
    import math

    import pandas as pd

    from nbo_platform import charts

    def figures(uplift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "campaign": ["#1: coffee", "#2: shoes"],
                "ally_name": ["Cafe", "Shoes"],  # columns the chart does not draw are not its key
                "effective_rate": [0.12, 0.05],
                "holdout_rate": [0.04, math.nan],  # no holdout entries yet
                "uplift": [uplift, math.nan],
                "uplift_ci_low": [0.01, math.nan],
                "uplift_ci_high": [0.15, math.nan],
            }
        )

    first = charts.effectiveness_chart(figures(0.08), "campaign", "per campaign")
    drawn = charts._effectiveness_png.cache_info().misses
    again = figures(0.08).assign(ally_name=["other", "names"])
    assert charts.effectiveness_chart(again, "campaign", "per campaign") == first and first.startswith(b"\x89PNG")
    assert charts._effectiveness_png.cache_info().misses == drawn  # equal rows (NaN included): reused
    assert charts.effectiveness_chart(figures(0.09), "campaign", "per campaign") != first
    assert charts._effectiveness_png.cache_info().misses == drawn + 1
