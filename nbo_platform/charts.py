"""Pictures of the campaign metrics and of the geofences, rendered locally as PNG.

Matplotlib's object API (no pyplot state, no display) with its bundled fonts; the map draws the
stores and the day's hits on plain longitude/latitude axes, no tiles or services from the network.
Each function takes plain frames and returns PNG bytes; :func:`markdown_image` embeds them where the
Dagster UI shows Markdown.
"""

from __future__ import annotations

import base64
import functools
import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

INK, TREATED, CONTROL, UPLIFT = "#1f2937", "#2563eb", "#9ca3af", "#059669"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(png).decode()}"


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}]({data_uri(png)})"


def _empty(fig: Figure, message: str) -> bytes:
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", color=INK)
    return _png(fig)


_EFFECTIVENESS = ("effective_rate", "holdout_rate", "uplift", "uplift_ci_low", "uplift_ci_high")


def effectiveness_chart(df: pd.DataFrame, label: str, title: str) -> bytes:
    """Effective rate (sent) against the holdout's rate, and the uplift with its 95% interval, per row.

    ``df``: ``label``, effective_rate, holdout_rate, uplift, uplift_ci_low, uplift_ci_high. The same
    rows and title give the same picture, drawn once: the campaign mart's Dagster metadata and the
    campaign report show the same chart.
    """
    rows = tuple(
        (str(r[0]), *(None if pd.isna(v) else float(v) for v in r[1:]))
        for r in df[[label, *_EFFECTIVENESS]].itertuples(index=False)
    )
    return _effectiveness_png(rows, title)


@functools.lru_cache(maxsize=8)
def _effectiveness_png(rows: tuple[tuple, ...], title: str) -> bytes:
    df = pd.DataFrame(list(rows), columns=["label", *_EFFECTIVENESS], dtype=object)
    df[list(_EFFECTIVENESS)] = df[list(_EFFECTIVENESS)].astype(float)
    label = "label"
    n = len(df)
    fig = Figure(figsize=(9, 1.2 + 0.42 * max(n, 1)))
    if n == 0:
        return _empty(fig, "no notifications measured yet")
    labels = df[label].astype(str).to_numpy()
    y = np.arange(n)[::-1]
    ax1, ax2 = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1.1, 1]})
    ax1.barh(y + 0.2, df["effective_rate"].fillna(0), height=0.38, color=TREATED, label="sent")
    ax1.barh(y - 0.2, df["holdout_rate"].fillna(0), height=0.38, color=CONTROL, label="holdout")
    ax1.set_yticks(y, labels)
    ax1.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax1.set_title("conversion within the window", fontsize=10, color=INK)
    ax1.legend(loc="best", fontsize=8, framealpha=0.9)
    # As arrays: matplotlib calls float() on each error value, deprecated on a one-row Series.
    lo = (df["uplift"] - df["uplift_ci_low"]).fillna(0).clip(lower=0).to_numpy()
    hi = (df["uplift_ci_high"] - df["uplift"]).fillna(0).clip(lower=0).to_numpy()
    uplift = df["uplift"].fillna(0).to_numpy()
    ax2.errorbar(uplift, y, xerr=[lo, hi], fmt="o", color=UPLIFT, ecolor=UPLIFT, capsize=3)
    ax2.axvline(0, color=INK, lw=0.8)
    ax2.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax2.set_title("uplift vs holdout (95% interval)", fontsize=10, color=INK)
    for ax in (ax1, ax2):
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=11, color=INK, x=0.01, ha="left")
    return _png(fig)


def trend_chart(df: pd.DataFrame) -> bytes:
    """Per day: notifications sent (bars) and effective rate vs holdout rate (lines).

    ``df``: date, notifications_sent, effective_rate, holdout_rate.
    """
    fig = Figure(figsize=(9, 3.2))
    if df.empty:
        return _empty(fig, "no days measured yet")
    x = df["date"].astype(str).to_numpy()
    ax = fig.add_subplot()
    ax.bar(x, df["notifications_sent"], color="#dbeafe", label="sent")
    ax.set_ylabel("notifications sent", color=INK)
    ax2 = ax.twinx()
    ax2.plot(x, df["effective_rate"], marker="o", color=TREATED, label="effective rate")
    ax2.plot(x, df["holdout_rate"], marker="o", color=CONTROL, label="holdout rate")
    ax2.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax2.set_ylim(bottom=0)
    ax2.legend(loc="upper left", fontsize=8, frameon=False)
    ax.spines[["top"]].set_visible(False)
    ax2.spines[["top"]].set_visible(False)
    ax.set_xticks(range(len(x)), x, rotation=30 if len(x) > 7 else 0)
    return _png(fig)


def funnel_chart(stages: Sequence[tuple[str, int]]) -> bytes:
    """Horizontal bars, one per stage (label, count), top to bottom.

    The same stages give the same picture, drawn once: the campaign report's page and its Dagster
    metadata show the same funnel."""
    return _funnel_png(tuple((str(s), int(c)) for s, c in stages))


@functools.lru_cache(maxsize=4)
def _funnel_png(stages: tuple[tuple[str, int], ...]) -> bytes:
    fig = Figure(figsize=(9, 0.9 + 0.38 * len(stages)))
    if not stages or max(c for _, c in stages) == 0:
        return _empty(fig, "no geofence entries yet")
    ax = fig.add_subplot()
    y = np.arange(len(stages))[::-1]
    counts = [c for _, c in stages]
    ax.barh(y, counts, color=[TREATED if s in ("sent", "effective") else CONTROL for s, _ in stages])
    ax.set_yticks(y, [s for s, _ in stages])
    for yi, c in zip(y, counts, strict=True):
        ax.text(c, yi, f" {c:,}", va="center", fontsize=8, color=INK)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_xlim(0, max(counts) * 1.15)
    return _png(fig)


def geo_map(stores: pd.DataFrame, hits: pd.DataFrame, title: str, max_points: int = 50_000) -> bytes:
    """Stores (circles scaled to their fence, coloured by ally category) and the hits as a density.

    ``stores``: lat, lon, radius_m, category; ``hits``: lat, lon, is_entry. Hits beyond
    ``max_points`` are drawn as a deterministic sample (the density keeps its shape).
    """
    fig = Figure(figsize=(7, 8))
    if stores.empty:
        return _empty(fig, "no stores")
    ax = fig.add_subplot()
    mid_lat = float(stores["lat"].mean())
    ax.set_aspect(1 / math.cos(math.radians(mid_lat)))  # equal metres on both axes at the city's latitude
    if not hits.empty:
        h = hits.iloc[:: max(1, len(hits) // max_points)]
        ax.hexbin(h["lon"], h["lat"], gridsize=60, cmap="Blues", mincnt=1, bins="log", linewidths=0, alpha=0.9)
        entries = h[h["is_entry"]]
        ax.scatter(entries["lon"], entries["lat"], s=2, color="#dc2626", alpha=0.35, label="entries", linewidths=0)
    categories = stores["category"].fillna("other").astype(str)
    palette = colormaps["tab10"].colors
    for i, cat in enumerate(sorted(categories.unique())):
        s = stores[categories == cat]
        ax.scatter(s["lon"], s["lat"], s=(s["radius_m"] / 25) ** 2, facecolors="none",
                   edgecolors=palette[i % len(palette)], linewidths=0.8, label=cat)  # fmt: skip
    ax.legend(loc="upper left", fontsize=7, frameon=True, markerscale=0.6)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(title, fontsize=11, color=INK)
    ax.grid(alpha=0.2)
    return _png(fig)
