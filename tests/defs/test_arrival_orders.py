"""The same pings in random file splits and random arrival orders (late files included), through the
landing plan, ingestion, geofence hits and decisions as the sensor's runs execute them:

- no customer is ever notified (sent or holdout) twice less than the cooldown apart;
- nothing more than ``max_delay_minutes`` older than the watermark its file met is sent;
- no sent notification changes, or disappears, once decided.
"""

import shutil
from datetime import timedelta

import dagster as dg
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbo_platform.defs.geo.assets import load_fences, policy_of, update_hits
from nbo_platform.defs.ingestion.sensors import plan_landing_runs
from nbo_platform.defs.notifications.assets import decide_date, files_sql
from nbo_platform.defs.resources import build_resources
from nbo_platform.domain.feeds import LOCATION_PINGS
from nbo_platform.domain.landing import ingest_pending
from nbo_platform.duck import connect
from nbo_platform.lake import Lake
from nbo_platform.runner import run_pipeline
from nbo_platform.settings import load_settings
from tests.defs.scenario import DAY1, STORE, ping, write_reference

pytestmark = pytest.mark.e2e
COOLDOWN, MAX_DELAY = 60, 30


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Reference data loaded into a lake once (customers 7, 8, 9; one store inside, one 5 km away)."""
    data = tmp_path_factory.mktemp("orders") / "data"
    the_settings = load_settings({"NBO_DATA_DIR": str(data), "NBO_LANDING_SETTLE_SECONDS": "0"})
    write_reference(the_settings, holdout=30.0, customers=(8, 9))
    (the_settings.reference_dir / "policy.yaml").write_text(
        f"cooldown_minutes: {COOLDOWN}\nmax_delay_minutes: {MAX_DELAY}\n"
    )
    run_pipeline(the_settings, instance=dg.DagsterInstance.ephemeral(), echo=lambda _: None)
    return data


# A customer inside the fence (True) or 1 km out, at a minute of five hours around midnight (the
# cooldown and the delay are an hour and half an hour: late files fall inside both, or beyond).
visits = st.lists(
    st.tuples(st.sampled_from([7, 8, 9]), st.integers(0, 300), st.booleans()),
    min_size=1,
    max_size=40,
    unique_by=lambda v: (v[0], v[1]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pings=visits,
    files=st.lists(st.integers(0, 3), min_size=40, max_size=40),
    order=st.permutations(range(4)),
)
def test_any_split_and_arrival_order_keeps_the_cooldown_the_delay_and_every_sent_notification(
    template, tmp_path_factory, pings, files, order
):
    data = tmp_path_factory.mktemp("example") / "data"
    shutil.copytree(template, data)
    the_settings = load_settings({"NBO_DATA_DIR": str(data), "NBO_LANDING_SETTLE_SECONDS": "0"})
    landing, lake, con = build_resources(the_settings)["landing"], Lake(the_settings.lake_uri), connect()
    fences, policy = load_fences(con, lake), policy_of(lake)
    at = DAY1 + timedelta(hours=21)
    sent_so_far: dict[str, tuple] = {}
    for n, f in enumerate(order):
        rows = [ping(at + timedelta(minutes=m), inside, customer=c) for i, (c, m, inside) in enumerate(pings)
                if files[i] == f]  # fmt: skip
        if not rows:
            continue
        folder = the_settings.landing_dir / "location_pings"
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(folder / f"arrival-{n}.csv", index=False)
        for run in plan_landing_runs(lake, landing):  # the sensor's runs, in its order
            if "location_pings" in run.assets:
                ingest_pending(con, lake, landing.landing_dir, LOCATION_PINGS, lock_dir=landing.lock_dir,
                               partitions_start=landing.partitions_start, pii_salt=landing.pii_salt)  # fmt: skip
            if "geofence_hits" in run.assets:
                update_hits(con, lake, run.date, fences, policy.max_accuracy_m)
            if "notifications" in run.assets:
                decide_date(con, lake, run.date, policy)
        decided = files_sql(lake, "notifications", lake.dates("notifications"))
        now = {} if decided is None else {
            r[0]: r for r in con.execute(f"SELECT notification_id, customer_id, event_time, reason, campaign_id, "
                                         f"channel FROM {decided}").fetchall()}  # fmt: skip
        for nid, row in sent_so_far.items():
            assert now.get(nid) == row, "a decided notification changed"
        sent_so_far = {k: r for k, r in now.items() if r[3] in ("sent", "holdout")}

    notified: dict[int, list] = {}
    for _, c, t, *_ in sent_so_far.values():
        notified.setdefault(c, []).append(t)
    for times in notified.values():
        times.sort()
        assert all(b - a >= timedelta(minutes=COOLDOWN) for a, b in zip(times, times[1:], strict=False)), times
    # Nothing sent that was more than the delay older than the watermark its ping's file met.
    if sent_so_far:
        manifest = lake.table_dir("landing_manifest") / "location_pings"
        late = con.execute(
            f"SELECT n.notification_id FROM {decided} n "
            f"JOIN {lake.scan_sql('location_pings')} p "
            "ON p.customer_id = n.customer_id AND p.event_time = n.event_time "
            f"JOIN read_parquet('{manifest}/*.parquet', union_by_name = true) m ON m.file = p.source_file "
            f"WHERE n.reason = 'sent' AND n.event_time < m.watermark - INTERVAL {MAX_DELAY} MINUTE"
        ).fetchall()
        assert late == []
    assert STORE  # the fence the pings are inside of
