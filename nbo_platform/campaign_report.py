"""The campaign report: one self-contained HTML file for marketing, analysts and allies.

It reads the marts the dbt project exports to the lake (``lake/marts/<mart>/``) and the reference and
geofence tables, with an in-memory DuckDB connection (never the analysts' warehouse file, so it
takes no lock), and writes HTML with its styles and PNG pictures embedded: no CDN, no fonts, no
scripts, nothing fetched when it is opened. Counts are re-aggregated from the marts' additive
columns, and the uplift interval is recomputed from the summed counts (the same normal
approximation as the dbt macro ``uplift_columns``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from nbo_platform import charts
from nbo_platform.duck import connect
from nbo_platform.lake import Lake

FUNNEL_STAGES = (
    "entries",
    "unknown_customer",
    "no_consent",
    "expired",
    "no_campaign",
    "throttled",
    "holdout",
    "sent",
    "effective",
)

_FIGURES = """
    coalesce(sum(notifications_sent), 0) AS notifications_sent,
    coalesce(sum(effective_notifications), 0) AS effective_notifications,
    coalesce(sum(attributed_amount), 0) AS attributed_amount,
    coalesce(sum(holdout_entries), 0) AS holdout_entries,
    coalesce(sum(holdout_converted), 0) AS holdout_converted
"""


def _with_rates(df: pd.DataFrame) -> pd.DataFrame:
    """Effective rate, holdout rate and uplift with its 95% interval from summed counts."""
    df = df.copy()
    sent, hold = df["notifications_sent"].astype(float), df["holdout_entries"].astype(float)
    p1 = df["effective_notifications"] / sent.where(sent > 0)
    p0 = df["holdout_converted"] / hold.where(hold > 0)
    se = ((p1 * (1 - p1) / sent) + (p0 * (1 - p0) / hold)) ** 0.5
    df["effective_rate"], df["holdout_rate"] = p1, p0
    df["uplift"] = p1 - p0
    df["uplift_ci_low"], df["uplift_ci_high"] = df["uplift"] - 1.96 * se, df["uplift"] + 1.96 * se
    return df


@dataclass
class ReportData:
    date: str | None  # None: every day present
    dates: list[str]
    funnel: list[tuple[str, int]]
    campaigns: pd.DataFrame
    channels: pd.DataFrame
    allies: pd.DataFrame
    trend: pd.DataFrame
    stores: pd.DataFrame
    hits: pd.DataFrame
    missing: list[str] = field(default_factory=list)  # marts not built yet


def _mart(lake: Lake, name: str) -> str | None:
    d = lake.root / "marts" / name
    return f"read_parquet('{d}/*.parquet')" if d.exists() and any(d.glob("*.parquet")) else None


def _table(lake: Lake, name: str) -> str | None:
    return lake.scan_sql(name) if lake.has_files(name) else None


REPORT_FILE = "campaign_report.html"


def report_path(data_dir: Path, date: str | None = None) -> Path:
    """Where the report of one day (or of every day, ``date=None``) is written by default."""
    return Path(data_dir) / "reports" / (f"campaign_report_{date}.html" if date else REPORT_FILE)


_EMPTY_ALLIES = "(SELECT NULL::BIGINT ally_id, NULL ally_name, NULL category WHERE false)"
_EMPTY_CAMPAIGNS = "(SELECT NULL::BIGINT campaign_id, NULL offer_text WHERE false)"


def _grouped(
    con: duckdb.DuckDBPyConnection, ce: str | None, by: str, joins: str = "", on_date: str = ""
) -> pd.DataFrame:
    if not ce:
        return pd.DataFrame()
    return _with_rates(
        con.execute(f"SELECT {by}, {_FIGURES} FROM {ce} c {joins} {on_date} GROUP BY ALL ORDER BY ALL").df()
    )


def campaign_figures(con: duckdb.DuckDBPyConnection, lake: Lake, date: str | None = None) -> pd.DataFrame:
    """Sent, effective, holdout and uplift with its interval per campaign (one day or every day)."""
    allies = _table(lake, "allies") or _EMPTY_ALLIES
    campaigns_ref = _table(lake, "campaigns") or _EMPTY_CAMPAIGNS
    return _grouped(
        con,
        _mart(lake, "campaign_effectiveness"),
        "c.campaign_id, '#' || c.campaign_id || coalesce(': ' || left(k.offer_text, 40), '') AS campaign, a.ally_name",
        f"LEFT JOIN (SELECT DISTINCT campaign_id, offer_text FROM {campaigns_ref}) k USING (campaign_id) "
        f"LEFT JOIN (SELECT DISTINCT ally_id, ally_name FROM {allies}) a ON a.ally_id = c.ally_id",
        f"WHERE date = DATE '{date}'" if date else "",
    )


def load_report_data(lake: Lake, date: str | None = None, con: duckdb.DuckDBPyConnection | None = None) -> ReportData:
    con = con or connect()
    ce, funnel_mart = _mart(lake, "campaign_effectiveness"), _mart(lake, "notification_funnel")
    missing = [m for m, rel in (("campaign_effectiveness", ce), ("notification_funnel", funnel_mart)) if rel is None]
    on_date = f"WHERE date = DATE '{date}'" if date else ""
    dates = [str(r[0]) for r in con.execute(f"SELECT DISTINCT date FROM {ce} ORDER BY 1").fetchall()] if ce else []
    allies = _table(lake, "allies") or _EMPTY_ALLIES

    def grouped(by: str, joins: str = "") -> pd.DataFrame:
        return _grouped(con, ce, by, joins, on_date)

    campaigns = campaign_figures(con, lake, date)
    channels = grouped("c.channel")
    ally_rows = grouped(
        "c.ally_id, coalesce(a.ally_name, 'ally ' || c.ally_id) AS ally_name, a.category",
        f"LEFT JOIN (SELECT DISTINCT ally_id, ally_name, category FROM {allies}) a ON a.ally_id = c.ally_id",
    )
    trend = (
        _with_rates(con.execute(f"SELECT date, {_FIGURES} FROM {ce} GROUP BY ALL ORDER BY date").df())
        if ce
        else pd.DataFrame()
    )
    funnel: list[tuple[str, int]] = []
    if funnel_mart:
        sums = ", ".join(f"coalesce(sum({s}), 0)::BIGINT" for s in FUNNEL_STAGES)
        row = con.execute(f"SELECT {sums} FROM {funnel_mart} {on_date}").fetchone()
        funnel = list(zip(FUNNEL_STAGES, (int(v) for v in row), strict=True))
    map_date = date or (dates[-1] if dates else None)
    stores, hits = map_inputs(con, lake, map_date)
    return ReportData(date, dates, funnel, campaigns, channels, ally_rows, trend, stores, hits, missing)


def map_inputs(
    con: duckdb.DuckDBPyConnection, lake: Lake, date: str | None, max_hits: int = 50_000
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stores with their ally's category, and a repeatable sample of one day's geofence hits."""
    stores_sql, allies = _table(lake, "stores"), _table(lake, "allies")
    category = "a.category" if allies else "NULL::VARCHAR"
    join = f"LEFT JOIN (SELECT DISTINCT ally_id, category FROM {allies}) a USING (ally_id)" if allies else ""
    stores = (
        con.execute(f"SELECT s.lat, s.lon, s.radius_m, {category} AS category FROM {stores_sql} s {join}").df()
        if stores_sql
        else pd.DataFrame(columns=["lat", "lon", "radius_m", "category"])
    )
    hits = pd.DataFrame(columns=["lat", "lon", "is_entry"])
    if date and lake.partition_files("geofence_hits", date):
        files = [str(f) for f in lake.partition_files("geofence_hits", date)]
        hits = con.execute(
            f"SELECT lat, lon, is_entry FROM read_parquet({files}) "
            f"USING SAMPLE reservoir({int(max_hits)} ROWS) REPEATABLE (7)"
        ).df()
    return stores, hits


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2937;margin:2rem auto;max-width:1100px;
padding:0 1rem;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #e5e7eb}
.sub{color:#6b7280}.kpis{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.kpi{border:1px solid #e5e7eb;border-radius:8px;padding:.6rem 1rem;min-width:9rem}
.kpi b{display:block;font-size:1.4rem}table{border-collapse:collapse;width:100%;font-size:.88rem;margin:.6rem 0}
th,td{padding:.3rem .5rem;border-bottom:1px solid #f3f4f6;text-align:right}th{background:#f9fafb}
td:first-child,th:first-child{text-align:left}img{max-width:100%}.pos{color:#059669}.neg{color:#dc2626}
.note{background:#fffbeb;border:1px solid #fde68a;padding:.5rem 1rem;border-radius:6px}
"""


def _pct(x: float | None) -> str:
    return "–" if x is None or pd.isna(x) else f"{x:.1%}"


def _uplift_cell(row: pd.Series) -> str:
    if pd.isna(row["uplift"]):
        return "<td>–</td>"
    significant = row["uplift_ci_low"] > 0 or row["uplift_ci_high"] < 0
    cls = ("pos" if row["uplift"] > 0 else "neg") if significant else ""
    return (
        f'<td class="{cls}">{row["uplift"]:+.1%} '
        f"<small>[{row['uplift_ci_low']:+.1%}, {row['uplift_ci_high']:+.1%}]</small></td>"
    )


def _table_html(df: pd.DataFrame, label_cols: list[str]) -> str:
    if df.empty:
        return "<p class='sub'>No rows yet.</p>"
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in label_cols)
    head += (
        "<th>sent</th><th>effective</th><th>effective rate</th><th>holdout</th><th>holdout rate</th>"
        "<th>uplift [95% CI]</th><th>attributed amount</th>"
    )
    rows = []
    for _, r in df.iterrows():
        labels = "".join(f"<td>{html.escape(str(r[c]) if pd.notna(r[c]) else '–')}</td>" for c in label_cols)
        rows.append(
            f"<tr>{labels}<td>{int(r['notifications_sent']):,}</td><td>{int(r['effective_notifications']):,}</td>"
            f"<td>{_pct(r['effective_rate'])}</td><td>{int(r['holdout_entries']):,}</td>"
            f"<td>{_pct(r['holdout_rate'])}</td>{_uplift_cell(r)}<td>{float(r['attributed_amount']):,.2f}</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{charts.data_uri(png)}">'


def render_html(data: ReportData) -> str:
    scope = f"for {data.date}" if data.date else (f"{data.dates[0]} to {data.dates[-1]}" if data.dates else "")
    c = data.campaigns
    counts = ["notifications_sent", "effective_notifications", "holdout_entries", "holdout_converted"]
    overall = None
    if len(c):
        totals = c[counts].sum().to_dict()
        overall = _with_rates(pd.DataFrame([{**totals, "attributed_amount": 0.0}])).iloc[0]
    kpis = [
        ("geofence entries", f"{dict(data.funnel).get('entries', 0):,}"),
        ("notifications sent", f"{int(overall['notifications_sent']):,}" if overall is not None else "0"),
        ("effective rate", _pct(overall["effective_rate"]) if overall is not None else "–"),
        ("holdout rate", _pct(overall["holdout_rate"]) if overall is not None else "–"),
        ("uplift", f"{overall['uplift']:+.1%}" if overall is not None and pd.notna(overall["uplift"]) else "–"),
    ]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Campaign report {html.escape(scope)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Campaign effectiveness</h1><p class='sub'>{html.escape(scope)} · generated "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · a notification is effective when the customer buys at "
        "the same ally within the attribution window; uplift compares with the holdout (entries decided "
        "but never sent).</p>",
    ]
    if data.missing:
        parts.append(
            f"<p class='note'>Not built yet: {', '.join(data.missing)}. Run <code>nbo run</code> "
            "(or materialize the marts in the Dagster UI) first.</p>"
        )
    parts.append("<div class='kpis'>" + "".join(f"<div class='kpi'>{k}<b>{v}</b></div>" for k, v in kpis) + "</div>")
    parts += ["<h2>Funnel</h2>", _img(charts.funnel_chart(data.funnel), "notification funnel")]
    parts += [
        "<h2>Campaigns</h2>",
        _img(charts.effectiveness_chart(c, "campaign", "per campaign"), "effectiveness per campaign") if len(c) else "",
        _table_html(c, ["campaign", "ally_name"]),
        "<h2>Channels</h2>",
        _img(charts.effectiveness_chart(data.channels, "channel", "per channel"), "effectiveness per channel")
        if len(data.channels)
        else "",
        _table_html(data.channels, ["channel"]),
        "<h2>Allies</h2>",
        _table_html(data.allies, ["ally_name", "category"]),
    ]
    if len(data.trend) > 1:
        parts += ["<h2>Trend</h2>", _img(charts.trend_chart(data.trend), "trend per day")]
    map_date = data.date or (data.dates[-1] if data.dates else "")
    parts += [
        f"<h2>Stores and geofence hits {html.escape(map_date)}</h2>",
        _img(charts.geo_map(data.stores, data.hits, f"stores and hits {map_date}"), "map of stores and hits"),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(lake: Lake, out: Path, date: str | None = None) -> ReportData:
    """Write the report to ``out`` atomically; returns the data it shows."""
    data = load_report_data(lake, date)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(render_html(data), encoding="utf-8")
    tmp.replace(out)
    return data
