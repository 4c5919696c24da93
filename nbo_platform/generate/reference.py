"""Generated reference data: customers, offers, allies, stores in Bogota, campaigns, the policy.

Everything is drawn from one NumPy generator, column by column (no per-row Python on the hot path),
so a seed gives the same tables every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from nbo_platform.domain.geofence import METRES_PER_DEGREE
from nbo_platform.recipe import OFFERS

# Bogota's urban area (lat, lon), and the commercial hubs stores cluster around.
BBOX = (4.47, 4.83, -74.22, -74.01)
HUBS = np.array(
    [
        (4.6097, -74.0817),  # Centro
        (4.6486, -74.0628),  # Chapinero
        (4.6682, -74.0530),  # Zona Rosa
        (4.6951, -74.0317),  # Usaquen
        (4.7110, -74.0721),  # Suba / Niza
        (4.6280, -74.1310),  # Kennedy
        (4.5980, -74.1100),  # Puente Aranda
        (4.7570, -74.0450),  # Cedritos
        (4.6700, -74.1050),  # Salitre
        (4.5700, -74.1450),  # Bosa
        (4.6350, -74.0750),  # Teusaquillo
        (4.7400, -74.0900),  # Suba centro
    ]
)
CATEGORIES = ("coffee", "grocery", "pharmacy", "fashion", "electronics", "restaurant", "fuel", "cinema")
ALLY_WORDS = ("Andes", "Sabana", "Monserrate", "Candelaria", "Dorado", "Bolivar", "Caribe", "Macondo", "Cafe", "Nevado")
FIRST_NAMES = np.array(
    ["Ana", "Luis", "Maria", "Carlos", "Sofia", "Andres", "Valentina", "Juan", "Camila", "Diego", "Laura", "Felipe"]
)
LAST_NAMES = np.array(
    ["Garcia", "Rodriguez", "Martinez", "Lopez", "Gomez", "Hernandez", "Diaz", "Moreno", "Rojas", "Vargas"]
)
CHANNEL_SHARES = {"push": 0.45, "sms": 0.25, "email": 0.2, "voice": 0.1}


@dataclass
class City:
    customers: pd.DataFrame  # the reference snapshot (contract columns)
    homes: np.ndarray  # (n, 2) lat, lon: where each customer lives (not part of the contract)
    works: np.ndarray
    offers: pd.DataFrame
    allies: pd.DataFrame
    stores: pd.DataFrame
    campaigns: pd.DataFrame


def _points_near_hubs(rng: np.random.Generator, n: int, spread_m: float) -> np.ndarray:
    hub = HUBS[rng.integers(0, len(HUBS), n)]
    pts = hub + rng.normal(0, spread_m / METRES_PER_DEGREE, (n, 2))
    pts[:, 0] = pts[:, 0].clip(BBOX[0], BBOX[1])
    pts[:, 1] = pts[:, 1].clip(BBOX[2], BBOX[3])
    return pts


def _uniform_points(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.column_stack([rng.uniform(BBOX[0], BBOX[1], n), rng.uniform(BBOX[2], BBOX[3], n)])


def customers_table(rng: np.random.Generator, n: int, start: datetime) -> pd.DataFrame:
    ids = np.arange(1, n + 1)
    first = FIRST_NAMES[rng.integers(0, len(FIRST_NAMES), n)]
    last = LAST_NAMES[rng.integers(0, len(LAST_NAMES), n)]
    email = pd.Series(np.char.lower(first.astype(str)) + "." + ids.astype(str) + "@example.com", dtype=object)
    email[rng.random(n) < 0.08] = None  # no e-mail on file
    phone = pd.Series("+57 3" + rng.integers(100_000_000, 999_999_999, n).astype(str), dtype=object)
    phone[rng.random(n) < 0.10] = None
    channels = np.array(list(CHANNEL_SHARES))
    since = rng.integers(30, 900, n)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "first_name": first,
            "last_name": last,
            "email": email,
            "phone": phone,
            "gender": np.where(rng.random(n) < 0.5, "Female", "Male"),
            "income": np.round(rng.lognormal(11.3, 0.7, n)).astype(np.int64),
            "fico": rng.normal(690, 70, n).round().clip(300, 850).astype(np.int64),
            "location_opt_in": rng.random(n) < 0.75,
            "marketing_opt_in": rng.random(n) < 0.85,
            "preferred_channel": channels[rng.choice(len(channels), n, p=list(CHANNEL_SHARES.values()))],
            "updated_at": pd.to_datetime(start, utc=True) - pd.to_timedelta(since, unit="D"),
        }
    )


def customer_changes(
    rng: np.random.Generator, customers: pd.DataFrame, start: datetime, days: int, share: float
) -> pd.DataFrame:
    """New versions during the period: consent given or withdrawn, a new channel, a new income."""
    n = len(customers)
    changed = customers[rng.random(n) < share].copy()
    k = len(changed)
    changed["updated_at"] = pd.to_datetime(start, utc=True) + pd.to_timedelta(
        rng.integers(0, days * 86_400, k), unit="s"
    )
    flip = rng.random(k)
    changed.loc[flip < 0.4, "location_opt_in"] = ~changed.loc[flip < 0.4, "location_opt_in"].astype(bool)
    changed.loc[(flip >= 0.4) & (flip < 0.6), "marketing_opt_in"] = ~changed.loc[
        (flip >= 0.4) & (flip < 0.6), "marketing_opt_in"
    ].astype(bool)
    channels = np.array(list(CHANNEL_SHARES))
    m = (flip >= 0.6) & (flip < 0.8)
    changed.loc[m, "preferred_channel"] = channels[rng.integers(0, len(channels), int(m.sum()))]
    m = flip >= 0.8
    changed.loc[m, "income"] = (changed.loc[m, "income"] * rng.uniform(0.9, 1.3, int(m.sum()))).round().astype(int)
    return changed.sort_values("updated_at").reset_index(drop=True)


def _square_wkt(lat: float, lon: float, half_m: float, angle: float) -> str:
    dlat = half_m / METRES_PER_DEGREE
    dlon = dlat / np.cos(np.radians(lat))
    corners = [(-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)]
    c, s = np.cos(angle), np.sin(angle)
    pts = [(lon + (x * c - y * s) * dlon, lat + (x * s + y * c) * dlat) for x, y in corners]
    return "POLYGON((" + ", ".join(f"{x:.6f} {y:.6f}" for x, y in pts) + "))"


def build_city(
    rng: np.random.Generator, *, customers: int, allies: int, stores: int, start: datetime, days: int
) -> City:
    cust = customers_table(rng, customers, start)
    homes = _uniform_points(rng, customers)
    works = _points_near_hubs(rng, customers, 2500)
    ally_ids = np.arange(1, allies + 1)
    words = np.array(ALLY_WORDS)
    cats = np.array(CATEGORIES)[np.arange(allies) % len(CATEGORIES)]
    ally_df = pd.DataFrame(
        {
            "ally_id": ally_ids,
            "ally_name": [f"{words[i % len(words)]} {c.title()} {i // len(words) + 1}" for i, c in enumerate(cats)],
            "category": cats,
        }
    )
    pos = _points_near_hubs(rng, stores, 1800)
    store_ally = rng.integers(1, allies + 1, stores)
    radius = rng.choice([50.0, 75.0, 100.0, 150.0, 200.0], stores)
    polygon = rng.random(stores) < 0.1  # malls and big-box stores: a polygon fence
    wkt = np.full(stores, None, dtype=object)
    for i in np.flatnonzero(polygon):  # a few hundred strings at most
        wkt[i] = _square_wkt(pos[i, 0], pos[i, 1], radius[i], rng.uniform(0, np.pi / 2))
    store_df = pd.DataFrame(
        {
            "store_id": np.arange(1, stores + 1),
            "ally_id": store_ally,
            "store_name": [f"{ally_df.ally_name[a - 1]} #{i + 1}" for i, a in enumerate(store_ally)],
            "lat": pos[:, 0].round(6),
            "lon": pos[:, 1].round(6),
            "radius_m": radius,
            "geometry_wkt": wkt,
        }
    )
    # One or two campaigns per ally; most run the whole period, some start late or end early.
    n_camp = allies + allies // 2
    camp_ally = np.concatenate([ally_ids, rng.choice(ally_ids, n_camp - allies, replace=False)])
    period = days * 86_400
    begins = np.where(rng.random(n_camp) < 0.7, -86_400, rng.integers(0, max(period // 2, 1), n_camp))
    ends = np.where(
        rng.random(n_camp) < 0.8, period + 86_400, begins + rng.integers(period // 3 + 3600, period + 1, n_camp)
    )
    t0 = pd.Timestamp(start, tz="UTC") if start.tzinfo is None else pd.Timestamp(start)
    camp_df = pd.DataFrame(
        {
            "campaign_id": np.arange(1, n_camp + 1),
            "ally_id": camp_ally,
            "offer_text": [f"{p}% off with your card" for p in rng.choice([5, 10, 15, 20, 25, 30], n_camp)],
            "starts_at": t0 + pd.to_timedelta(begins, unit="s"),
            "ends_at": t0 + pd.to_timedelta(ends, unit="s"),
            "priority": rng.integers(1, 10, n_camp),
            "holdout_pct": rng.choice([10.0, 15.0, 20.0], n_camp),
        }
    )
    offers = pd.DataFrame(OFFERS, columns=["offer_id", "offer_name", "offer_url"])
    return City(cust, homes, works, offers, ally_df, store_df, camp_df)
