"""Keeping a day's geofence hits current file by file: incremental, late pings, and the same result as one pass."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from nbo_platform.defs.geo.assets import update_hits
from nbo_platform.domain.geofence import METRES_PER_DEGREE, Fences
from nbo_platform.duck import connect

DAY = "2025-06-02"
T0 = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)


def fences() -> Fences:
    return Fences.from_frame(
        pd.DataFrame(
            {
                "store_id": [1, 2],
                "ally_id": [10, 20],
                "lat": [4.65, 4.66],
                "lon": [-74.05, -74.05],
                "radius_m": [150.0, 150.0],
                "geometry_wkt": [None, None],
            }
        )
    )


def random_pings(n: int, seed: int) -> pd.DataFrame:
    """Customers walking around two stores: many entries, exits and re-entries."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": rng.integers(1, 40, n),
            "event_time": [T0 + timedelta(seconds=int(s)) for s in rng.choice(36_000, n, replace=False)],
            "lat": 4.655 + rng.normal(0, 250, n) / METRES_PER_DEGREE,
            "lon": -74.05 + rng.normal(0, 250, n) / METRES_PER_DEGREE,
            "accuracy_m": rng.uniform(3, 30, n),
        }
    )


def drop_fragment(lake, name: str, df: pd.DataFrame) -> None:
    folder = lake.partition_dir("location_pings", DAY)
    folder.mkdir(parents=True, exist_ok=True)
    df.to_parquet(folder / name)


def day_hits(lake) -> list[tuple]:
    files = [str(p) for p in lake.partition_files("geofence_hits", DAY)]
    return connect().execute(f"SELECT * EXCLUDE (date) FROM read_parquet({files}) ORDER BY ALL").fetchall()


def day_state(lake) -> list[tuple]:
    path = lake.partition_dir("geofence_state", DAY) / "state.parquet"
    return connect().execute(f"SELECT * FROM read_parquet('{path}') ORDER BY customer_id").fetchall()


def test_late_pings_recompute_only_their_customers_and_match_one_pass(tmp_path):
    from nbo_platform.lake import Lake

    pings = random_pings(3000, seed=5)
    # Files as a sink writes them: mostly in time order, but the third file carries pings that are older
    # than pings of the same customers already processed.
    ordered = pings.sort_values("event_time").reset_index(drop=True)
    late = ordered.iloc[200:260]
    rest = ordered.drop(late.index)
    parts = [rest.iloc[:1000], rest.iloc[1000:2000], pd.concat([late, rest.iloc[2000:2470]]), rest.iloc[2470:]]

    one_pass = Lake(str(tmp_path / "one"))
    drop_fragment(one_pass, "all.parquet", pings)
    update_hits(connect(), one_pass, DAY, fences(), 100.0)

    stepwise = Lake(str(tmp_path / "steps"))
    modes = []
    for i, part in enumerate(parts):
        drop_fragment(stepwise, f"part-{i}.parquet", part)
        modes.append(update_hits(connect(), stepwise, DAY, fences(), 100.0)["mode"])

    assert modes == ["full", "incremental", "late", "incremental"]
    expected = day_hits(one_pass)
    assert sum(1 for h in expected if h[5]) > 50  # entries, staying inside and re-entries all occur
    assert day_hits(stepwise) == expected
    assert day_state(stepwise) == day_state(one_pass)
