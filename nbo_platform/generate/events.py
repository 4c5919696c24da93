"""Generated events of one day for one shard of customers: movement, activity and purchases.

Movement: customers travel home -> work in the morning, some run an errand at a store (and dwell
there), then go home; they travel along the city's street grid (north-south, then east-west) on foot
for short trips or by car for long ones, and the app pings every 30-120 s with GPS accuracy drawn
from a realistic distribution (a few fixes are too coarse to use). Routes pass stores they do not stop at.

Behaviour: each geofence entry is decided with the platform's own rules (``domain.notifications``)
to know whom the bank would notify; a notified customer buys at that ally within the attribution
window with probability ``base_rate + lift``, everyone else entering a store with ``base_rate``.
Background purchases happen at random stores and times. The metrics' uplift should recover ``lift``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from nbo_platform.domain.customers import customer_versions_sql
from nbo_platform.domain.geofence import METRES_PER_DEGREE, Fences, geofence_hits
from nbo_platform.domain.notifications import decide_notifications
from nbo_platform.domain.policy import Policy
from nbo_platform.duck import connect
from nbo_platform.generate.reference import City

ACTIVITY_TYPES = np.array(["branch_visit", "deposit", "web_open", "mobile_open", "new_account", "card_payment"])
ACTIVITY_SHARES = [0.08, 0.27, 0.2, 0.3, 0.03, 0.12]


@dataclass
class Behaviour:
    base_rate: float = 0.04  # chance an entering customer buys within the window anyway
    lift: float = 0.10  # extra chance when the bank sent a notification
    background_tx_per_customer: float = 0.3  # purchases per customer per day unrelated to entries


@dataclass
class ShardState:
    """What carries from one day to the next for a shard: fence state and recent notifications."""

    geofence: pa.Table | None = None
    notified: pa.Table | None = None


def movement(rng: np.random.Generator, city: City, cust_idx: np.ndarray, day: pd.Timestamp) -> pd.DataFrame:
    """Pings of the given customers (indices into the city's customers) for one day."""
    m = len(cust_idx)
    if m == 0:
        return pd.DataFrame(columns=["customer_id", "event_time", "lat", "lon", "accuracy_m"])
    home, work = city.homes[cust_idx], city.works[cust_idx]
    stores = city.stores[["lat", "lon", "radius_m"]].to_numpy()
    errand = rng.random(m) < 0.6
    store_pick = rng.integers(0, len(stores), m)
    store_pos = stores[store_pick, :2]
    # Legs: A home->work, B work->store (errand), C (store or work)->home.
    a_dep = rng.uniform(6.5, 9.0, m) * 3600
    b_dep = rng.uniform(12.0, 18.5, m) * 3600
    dwell = rng.uniform(5, 25, m) * 60
    legs_o = [home, work[errand]]
    legs_d = [work, store_pos[errand]]
    legs_t = [a_dep, b_dep[errand]]
    legs_c = [cust_idx, cust_idx[errand]]
    speed = lambda o, d: _speed(rng, o, d)  # noqa: E731
    sp_a, sp_b = speed(home, work), speed(work[errand], store_pos[errand])
    b_arrive = b_dep[errand] + _length(work[errand], store_pos[errand]) / sp_b
    c_origin = work.copy()
    c_origin[errand] = store_pos[errand]
    c_dep = rng.uniform(17.0, 20.0, m) * 3600
    c_dep[errand] = np.maximum(c_dep[errand], b_arrive + dwell[errand] + rng.uniform(0, 1800, int(errand.sum())))
    legs_o.append(c_origin)
    legs_d.append(home)
    legs_t.append(c_dep)
    legs_c.append(cust_idx)
    sp_c = speed(c_origin, home)
    o, d = np.concatenate(legs_o), np.concatenate(legs_d)
    t0, who = np.concatenate(legs_t), np.concatenate(legs_c)
    sp = np.concatenate([sp_a, sp_b, sp_c])
    moving = _leg_pings(rng, o, d, t0, sp, who)
    # Dwell at the errand store: pings around the store's point.
    s_rad = stores[store_pick[errand], 2]
    n_dw = np.ceil(dwell[errand] / 75).astype(int)
    rep = np.repeat(np.arange(len(n_dw)), n_dw)
    off = _group_cumsum(rng.uniform(30, 120, rep.size), n_dw)
    keep = off <= np.repeat(dwell[errand], n_dw)
    rep, off = rep[keep], off[keep]
    spread = (s_rad[rep] * 0.3) / METRES_PER_DEGREE
    dw_lat = store_pos[errand][rep, 0] + rng.normal(0, 1, rep.size) * spread
    dw_lon = store_pos[errand][rep, 1] + rng.normal(0, 1, rep.size) * spread / np.cos(np.radians(dw_lat))
    dwelling = pd.DataFrame({"ci": cust_idx[errand][rep], "t": b_arrive[rep] + off, "lat": dw_lat, "lon": dw_lon})
    pings = pd.concat([moving, dwelling], ignore_index=True)
    pings = pings[pings["t"] < 86_400].copy()  # what happens after midnight belongs to the next day
    n = len(pings)
    acc = np.exp(rng.normal(np.log(8), 0.6, n))
    coarse = rng.random(n) < 0.04
    acc[coarse] = rng.uniform(150, 600, int(coarse.sum()))
    noise = acc / 2 / METRES_PER_DEGREE
    pings["lat"] = pings["lat"] + rng.normal(0, 1, n) * noise
    pings["lon"] = pings["lon"] + rng.normal(0, 1, n) * noise / np.cos(np.radians(pings["lat"]))
    acc_out = np.round(acc, 1)
    acc_out[rng.random(n) < 0.03] = np.nan  # some devices report no accuracy
    out = pd.DataFrame(
        {
            "customer_id": city.customers["customer_id"].to_numpy()[pings["ci"].to_numpy()],
            "event_time": day + pd.to_timedelta(np.round(pings["t"].to_numpy() * 1000).astype(np.int64), unit="ms"),
            "lat": pings["lat"].round(6).to_numpy(),
            "lon": pings["lon"].round(6).to_numpy(),
            "accuracy_m": acc_out,
        }
    )
    out = out.sort_values(["event_time", "customer_id"], kind="stable")
    return out.drop_duplicates(["customer_id", "event_time"]).reset_index(drop=True)


def _length(o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Length in metres of the grid route: north-south first, then east-west."""
    return np.abs(d[:, 0] - o[:, 0]) * METRES_PER_DEGREE + np.abs(d[:, 1] - o[:, 1]) * METRES_PER_DEGREE * np.cos(
        np.radians(d[:, 0])
    )


def _speed(rng: np.random.Generator, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    walk = _length(o, d) < 1500
    return np.where(walk, rng.uniform(1.1, 1.6, len(o)), rng.uniform(4.0, 10.0, len(o)))  # m/s


def _group_cumsum(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    total = np.cumsum(values)
    starts = np.repeat(np.concatenate([[0.0], total[np.cumsum(sizes)[:-1] - 1]]) if len(sizes) else [], sizes)
    return total - starts


def _leg_pings(rng, o, d, t0, sp, who) -> pd.DataFrame:
    length = _length(o, d)
    duration = length / sp
    n = np.ceil(duration / 75).astype(int) + 1
    rep = np.repeat(np.arange(len(n)), n)
    off = _group_cumsum(rng.uniform(30, 120, rep.size), n) - np.repeat(rng.uniform(0, 30, len(n)), n)
    off = np.maximum(off, 0)
    keep = off <= duration[rep]
    rep, off = rep[keep], off[keep]
    s = off * sp[rep]
    ns = np.abs(d[rep, 0] - o[rep, 0]) * METRES_PER_DEGREE
    first = s < ns
    lat = np.where(first, o[rep, 0] + np.sign(d[rep, 0] - o[rep, 0]) * s / METRES_PER_DEGREE, d[rep, 0])
    ew = np.maximum(s - ns, 0) / (METRES_PER_DEGREE * np.cos(np.radians(d[rep, 0])))
    lon = np.where(first, o[rep, 1], o[rep, 1] + np.sign(d[rep, 1] - o[rep, 1]) * ew)
    return pd.DataFrame({"ci": who[rep], "t": t0[rep] + off, "lat": lat, "lon": lon})


def activity(
    rng: np.random.Generator, city: City, cust_idx: np.ndarray, day: pd.Timestamp, per_customer: float, first_id: int
) -> pd.DataFrame:
    k = rng.poisson(per_customer, len(cust_idx))
    who = np.repeat(cust_idx, k)
    n = who.size
    # Banking happens mostly in the day: a mixture of business hours and the evening.
    hours = np.where(rng.random(n) < 0.7, rng.uniform(8, 18, n), rng.uniform(0, 24, n))
    ip = rng.integers(1, 255, (n, 4)).astype(str)
    return (
        pd.DataFrame(
            {
                "customer_id": city.customers["customer_id"].to_numpy()[who],
                "activity_id": np.arange(first_id, first_id + n),
                "ip_address": np.char.add(
                    np.char.add(
                        np.char.add(np.char.add(np.char.add(np.char.add(ip[:, 0], "."), ip[:, 1]), "."), ip[:, 2]), "."
                    ),
                    ip[:, 3],
                ),
                "activity_type": ACTIVITY_TYPES[rng.choice(len(ACTIVITY_TYPES), n, p=ACTIVITY_SHARES)],
                "propensity_to_buy": rng.random(n).round(2),
                "event_time": day + pd.to_timedelta(np.round(hours * 3_600_000).astype(np.int64), unit="ms"),
            }
        )
        .sort_values(["event_time", "activity_id"], kind="stable")
        .reset_index(drop=True)
    )


def purchases(
    rng: np.random.Generator,
    city: City,
    cust_idx: np.ndarray,
    day: pd.Timestamp,
    pings: pd.DataFrame,
    versions: str,
    policy: Policy,
    behaviour: Behaviour,
    state: ShardState,
    fences: Fences,
    first_id: int,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Purchases of the shard's customers that day, responding to the notifications they would get."""
    con = connect()
    con.register("gen_pings", pings)
    con.register("gen_versions", versions)
    con.register("gen_campaigns", city.campaigns)
    prior = None
    if state.geofence is not None:
        con.register("gen_prior_state", state.geofence)
        prior = "SELECT * FROM gen_prior_state"
    hits = geofence_hits(
        con, "SELECT * FROM gen_pings", fences, max_accuracy_m=policy.max_accuracy_m, prior_state=prior
    )
    prior_notified = None
    if state.notified is not None:
        con.register("gen_prior_notified", state.notified)
        prior_notified = "SELECT * FROM gen_prior_notified"
    decisions = decide_notifications(
        con,
        f"SELECT * FROM {hits.hits} WHERE is_entry",
        "SELECT * FROM gen_versions",
        "SELECT * FROM gen_campaigns",
        policy,
        prior_notified=prior_notified,
        decided_at="TIMESTAMPTZ '1970-01-01 00:00:00+00'",
    )
    # In a fixed order: each decision takes the next random draw below.
    d = con.execute(
        f"SELECT customer_id, store_id, event_time, reason FROM {decisions} "
        "ORDER BY customer_id, event_time, distance_m, store_id"
    ).df()
    state.geofence = con.execute(f"SELECT * FROM {hits.state}").fetch_arrow_table()
    state.notified = con.execute(
        f"SELECT customer_id, event_time FROM {decisions} WHERE reason IN ('sent', 'holdout')"
    ).fetch_arrow_table()
    p = np.where(d["reason"].to_numpy() == "sent", behaviour.base_rate + behaviour.lift, behaviour.base_rate)
    buys = d[rng.random(len(d)) < p]
    window_s = policy.attribution_window_minutes * 60
    responded = pd.DataFrame(
        {
            "customer_id": buys["customer_id"].to_numpy(),
            "store_id": buys["store_id"].to_numpy(),
            "event_time": buys["event_time"]
            + pd.to_timedelta(np.round(rng.uniform(20, window_s - 20, len(buys)) * 1000).astype(np.int64), unit="ms"),
        }
    )
    n_bg = rng.poisson(behaviour.background_tx_per_customer * len(cust_idx))
    background = pd.DataFrame(
        {
            "customer_id": city.customers["customer_id"].to_numpy()[rng.choice(cust_idx, n_bg)] if n_bg else [],
            "store_id": city.stores["store_id"].to_numpy()[rng.integers(0, len(city.stores), n_bg)],
            "event_time": day
            + pd.to_timedelta(np.round(rng.uniform(7, 22, n_bg) * 3_600_000).astype(np.int64), unit="ms"),
        }
    )
    tx = pd.concat([responded, background], ignore_index=True)
    tx["amount"] = np.round(rng.lognormal(np.log(45), 0.8, len(tx)), 2)
    tx = tx.sort_values(["event_time", "customer_id"], kind="stable").reset_index(drop=True)
    # Alphanumeric, as card networks and core-banking systems number purchases (v2 "Identifiers").
    tx.insert(0, "transaction_id", [f"TX-{n:010d}" for n in range(first_id, first_id + len(tx))])
    stats = d["reason"].value_counts().to_dict()
    stats["responded"] = len(responded)
    return tx[["transaction_id", "customer_id", "store_id", "amount", "event_time"]], stats


def versions_table(snapshot: pd.DataFrame, changes: pd.DataFrame, salt: str) -> pd.DataFrame:
    """The customers' version history, as the pipeline will build it from the same files."""
    con = connect()
    con.register("snap", snapshot)
    con.register("chg", changes.assign(source_file=None, source_line=0))
    return con.execute(customer_versions_sql("snap", "chg", salt)).df()
