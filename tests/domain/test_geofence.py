"""Geofence hits and entries: the contract's rule, edge cases, and the grid prefilter against brute force."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbo_platform.domain import geofence
from nbo_platform.domain.geofence import (
    METRES_PER_DEGREE,
    Fences,
    geofence_hits,
    haversine_m,
    polygon_problems,
)

T0 = datetime(2025, 6, 2, 23, 50, tzinfo=UTC)
STORE = {"store_id": 1, "ally_id": 10, "lat": 4.65, "lon": -74.05, "radius_m": 100.0, "geometry_wkt": None}


def north_of(lat: float, metres: float) -> float:
    return lat + metres / METRES_PER_DEGREE


def run(con, pings: list[tuple], stores: list[dict] | None = None, prior: str | None = None, max_acc: float = 100):
    """pings: (customer_id, minutes after T0, lat, lon, accuracy_m)."""
    df = pd.DataFrame(
        [(c, T0 + timedelta(minutes=m), la, lo, a) for c, m, la, lo, a in pings],
        columns=["customer_id", "event_time", "lat", "lon", "accuracy_m"],
    )
    con.register("test_pings", df)
    fences = Fences.from_frame(pd.DataFrame(stores or [STORE]))
    result = geofence_hits(con, "SELECT * FROM test_pings", fences, max_accuracy_m=max_acc, prior_state=prior)
    hits = con.execute(
        f"SELECT customer_id, store_id, epoch(hit_at - TIMESTAMPTZ '{T0.isoformat()}') / 60 AS minute, is_entry "
        f"FROM {result.hits} ORDER BY hit_at, customer_id, store_id"
    ).fetchall()
    return [(c, s, round(m, 3), e) for c, s, m, e in hits], result


def test_haversine_matches_a_known_distance():
    # One degree of latitude on the mean-radius sphere.
    assert haversine_m(4.0, -74.0, 5.0, -74.0) == pytest.approx(111_195, abs=1)


def test_inside_boundary_and_outside(con):
    lat = STORE["lat"]
    hits, _ = run(
        con,
        [(1, 0, north_of(lat, 99.9), -74.05, 5), (2, 0, north_of(lat, 100.1), -74.05, 5), (3, 0, lat, -74.05, None)],
    )
    assert [(c, e) for c, _, _, e in hits] == [(1, True), (3, True)]  # missing accuracy counts as precise


def test_staying_inside_does_not_enter_again_leaving_and_returning_does(con):
    lat, lon = STORE["lat"], STORE["lon"]
    out = north_of(lat, 500)
    hits, _ = run(con, [(1, 0, lat, lon, 5), (1, 1, lat, lon, 5), (1, 2, out, lon, 5), (1, 3, lat, lon, 5)])
    assert [(m, e) for _, _, m, e in hits] == [(0, True), (1, False), (3, True)]


def test_imprecise_pings_are_ignored(con):
    lat, lon = STORE["lat"], STORE["lon"]
    # The coarse fix outside does not count as leaving; a coarse fix inside is no hit.
    hits, result = run(
        con, [(1, 0, lat, lon, 5), (1, 1, north_of(lat, 500), lon, 250), (1, 2, lat, lon, 5), (1, 3, lat, lon, 101)]
    )
    assert [(m, e) for _, _, m, e in hits] == [(0, True), (2, False)]
    assert result.pings_imprecise == 2


def test_overlapping_fences_are_entered_together(con):
    other = dict(STORE, store_id=2, ally_id=20, lon=STORE["lon"] + 50 / METRES_PER_DEGREE)
    hits, _ = run(con, [(1, 0, STORE["lat"], STORE["lon"], 5)], stores=[STORE, other])
    assert [(s, e) for _, s, _, e in hits] == [(1, True), (2, True)]


def test_polygon_fence_replaces_the_circle(con):
    # A 1 km square around the store: a point 300 m north is outside the 100 m circle but inside the polygon.
    d = 500 / METRES_PER_DEGREE
    lat, lon = STORE["lat"], STORE["lon"]
    corners = [(lon - d, lat - d), (lon + d, lat - d), (lon + d, lat + d), (lon - d, lat + d), (lon - d, lat - d)]
    square = "POLYGON((" + ", ".join(f"{x} {y}" for x, y in corners) + "))"
    hits, _ = run(
        con,
        [(1, 0, north_of(lat, 300), lon, 5), (2, 0, north_of(lat, 600), lon, 5)],
        stores=[dict(STORE, geometry_wkt=square)],
    )
    assert [(c, e) for c, _, _, e in hits] == [(1, True)]


def test_invalid_polygons_are_reported():
    reasons = polygon_problems(
        pd.Series(
            [None, "POINT (1 2)", "POLYGON ((0 0, 1 1, 1 0, 0 1, 0 0))", "nonsense", "POLYGON ((0 0, 200 0, 0 1, 0 0))"]
        )
    ).tolist()
    assert reasons[0] is None
    assert reasons[1] == "geometry_wkt: not a polygon: Point"
    assert reasons[2].startswith("geometry_wkt: invalid polygon: Self-intersection")
    assert reasons[3].startswith("geometry_wkt: not valid WKT")
    assert "outside" in reasons[4]


def test_state_carries_across_midnight(con):
    lat, lon = STORE["lat"], STORE["lon"]
    # 23:55 inside; the next partition's first ping at 00:05 is still inside: no new entry.
    _, first = run(con, [(1, 5, lat, lon, 5)])
    state = con.execute(f"SELECT * FROM {first.state}").fetch_arrow_table()
    con.register("carried", state)
    hits, _ = run(con, [(1, 15, lat, lon, 5), (2, 15, lat, lon, 5)], prior="SELECT * FROM carried")
    assert [(c, e) for c, _, _, e in hits] == [(1, False), (2, True)]


ping_strategy = st.lists(
    st.tuples(st.integers(1, 3), st.integers(-250, 250), st.sampled_from([5.0, 5.0, 5.0, 300.0, None])),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(pings=ping_strategy, cut=st.integers(0, 40))
def test_splitting_the_pings_anywhere_gives_the_same_hits(pings, cut):
    """Processing in two batches with the carried state equals processing everything at once."""
    from nbo_platform.duck import connect

    rows = [(c, i, north_of(STORE["lat"], m), STORE["lon"], a) for i, (c, m, a) in enumerate(pings)]
    cut = min(cut, len(rows))
    con = connect()
    whole, _ = run(con, rows)
    con2 = connect()
    first, r1 = run(con2, rows[:cut]) if cut else ([], None)
    if r1 is not None:
        con2.register("carried", con2.execute(f"SELECT * FROM {r1.state}").fetch_arrow_table())
    second, _ = (
        run(con2, rows[cut:], prior="SELECT * FROM carried" if r1 is not None else None)
        if cut < len(rows)
        else ([], None)
    )
    assert first + second == whole


def test_grid_prefilter_finds_exactly_what_brute_force_finds(con):
    rng = np.random.default_rng(3)
    n_stores, n_pings = 300, 5000
    stores = pd.DataFrame(
        {
            "store_id": np.arange(n_stores),
            "ally_id": 1,
            "lat": rng.uniform(4.5, 4.8, n_stores),
            "lon": rng.uniform(-74.2, -74.0, n_stores),
            "radius_m": rng.choice([50.0, 200.0, 1500.0], n_stores),  # some fences span several grid cells
            "geometry_wkt": None,
        }
    )
    pings = [
        (int(c), float(i) / 10, la, lo, 5.0)
        for i, (c, la, lo) in enumerate(
            zip(
                rng.integers(1, 50, n_pings),
                rng.uniform(4.4, 4.9, n_pings),  # some outside the grid: no candidates at all
                rng.uniform(-74.3, -73.9, n_pings),
                strict=True,
            )
        )
    ]
    hits, _ = run(con, pings, stores=stores.to_dict("records"))
    got = sorted((c, s, m) for c, s, m, _ in hits)
    p = np.array([(la, lo) for _, _, la, lo, _ in pings])
    d = haversine_m(p[:, None, 0], p[:, None, 1], stores["lat"].to_numpy()[None, :], stores["lon"].to_numpy()[None, :])
    pi, si = np.nonzero(d <= stores["radius_m"].to_numpy()[None, :])
    expected = sorted((pings[i][0], int(s), round(pings[i][1], 3)) for i, s in zip(pi, si, strict=True))
    assert got == expected
    assert len(expected) > 100


def test_buckets_of_customers_give_the_same_hits_and_state(monkeypatch):
    from nbo_platform.duck import connect

    rng = np.random.default_rng(1)
    stores = pd.DataFrame(
        {
            "store_id": np.arange(30),
            "ally_id": 1,
            "lat": rng.uniform(4.6, 4.62, 30),
            "lon": rng.uniform(-74.1, -74.08, 30),
            "radius_m": 300.0,
            "geometry_wkt": None,
        }
    )
    n = 5000
    pings = pd.DataFrame(
        {
            "customer_id": rng.integers(1, 100, n),
            "event_time": pd.Timestamp("2025-06-02", tz="UTC") + pd.to_timedelta(rng.integers(0, 86400, n), unit="s"),
            "lat": rng.uniform(4.6, 4.62, n),
            "lon": rng.uniform(-74.1, -74.08, n),
            "accuracy_m": 5.0,
        }
    ).drop_duplicates(["customer_id", "event_time"])
    noon = pings["event_time"] < pd.Timestamp("2025-06-02 12:00", tz="UTC")
    fences = Fences.from_frame(stores)
    out = []
    # Chunks of whole customers, however small, from segments of any size (a customer's pings over
    # several segments are joined).
    for rows, chunk, segment in ((10**9, 1 << 15, 1 << 20), (700, 50, 7), (10**9, 1, 3), (10**9, 1 << 15, 1)):
        monkeypatch.setattr(geofence, "CHUNK_PINGS", chunk)
        monkeypatch.setattr(geofence, "SEGMENT_ROWS", segment)
        con = connect()
        con.register("morning", pings[noon])
        con.register("afternoon", pings[~noon])
        first = geofence_hits(con, "SELECT * FROM morning", fences, max_accuracy_m=100, bucket_rows=rows)
        morning = con.execute(f"SELECT * FROM {first.hits} ORDER BY ALL").fetchall()
        con.register("carried", con.execute(f"SELECT * FROM {first.state}").fetch_arrow_table())
        geofence_hits(
            con,
            "SELECT * FROM afternoon",
            fences,
            max_accuracy_m=100,
            prior_state="SELECT * FROM carried",
            bucket_rows=rows,
        )
        out.append(
            [morning, *(con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in ("geo_hits", "geo_state"))]
        )
    assert out[0] == out[1] == out[2] == out[3]
    con = connect()
    con.register("p", pings)
    whole = geofence_hits(con, "SELECT * FROM p", fences, max_accuracy_m=100)
    assert sorted(out[0][0] + out[0][1]) == con.execute(f"SELECT * FROM {whole.hits} ORDER BY ALL").fetchall()
    assert out[0][2] == con.execute(f"SELECT * FROM {whole.state} ORDER BY ALL").fetchall()
    assert sum(h[5] for h in out[0][1]) > 100 and sum(not h[5] for h in out[0][1]) > 100


@pytest.mark.parametrize("bucket_rows", [10**9, 2])
def test_a_precise_ping_without_customer_or_time_is_an_error_and_an_imprecise_one_is_ignored(bucket_rows):
    from nbo_platform.duck import connect

    fences = Fences.from_frame(
        pd.DataFrame(
            {"store_id": [1], "ally_id": [1], "lat": [4.6], "lon": [-74.1], "radius_m": [100.0], "geometry_wkt": [None]}
        )
    )
    t = pd.Timestamp("2025-06-02 10:00", tz="UTC")
    good = {"customer_id": 1, "event_time": t, "lat": 4.6, "lon": -74.1, "accuracy_m": 5.0}
    cases = {
        "no customer": {**good, "customer_id": None},
        "no time": {**good, "customer_id": 2, "event_time": None},
        "imprecise, no customer": {**good, "customer_id": None, "accuracy_m": 500.0},
    }
    for name, bad in cases.items():
        con = connect()
        frame = pd.DataFrame([good, {**good, "customer_id": 3}, bad]).astype({"customer_id": "Int64"})
        con.register("p", frame)
        if name.startswith("imprecise"):
            result = geofence_hits(con, "SELECT * FROM p", fences, max_accuracy_m=100, bucket_rows=bucket_rows)
            assert (result.pings_read, result.pings_imprecise) == (3, 1)
            assert con.execute(f"SELECT count(*) FROM {result.hits}").fetchone() == (2,)
        else:
            with pytest.raises(ValueError, match="1 ping.s. without customer_id or event_time"):
                geofence_hits(con, "SELECT * FROM p", fences, max_accuracy_m=100, bucket_rows=bucket_rows)
