"""The ksqlDB recipe's mock data, written in the contract's formats.

The recipe lists its customers twice with different FICO scores (705/750, then 624/683); a
stream-table join sees the table as it was when each event was processed, so the two listings are
two points in time. ``write_recipe`` writes the first listing as the reference snapshot and, when
``second_listing_at`` is given, the second one as change events at that time.
"""

from __future__ import annotations

import csv
import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from nbo_platform.domain.rules import DEFAULT_RULES_PATH

CUSTOMERS_FIRST = [
    (1, "Waylen", "Tubble", "wtubble0@hc360.com", "Male", 403646, 465),
    (2, "Joell", "Wilshin", "jwilshin1@yellowpages.com", "Female", 109825, 705),
    (3, "Ilaire", "Latus", "ilatus2@baidu.com", "Male", 407964, 750),
]
SECOND_LISTING_FICO = {1: 465, 2: 624, 3: 683}

OFFERS = [
    (1, "new_savings", "http://google.com.br/magnis/dis/parturient.json"),
    (2, "new_checking", "https://earthlink.net/in/ante.js"),
    (3, "new_home_loan", "https://webs.com/in/ante.jpg"),
    (4, "new_auto_loan", "http://squidoo.com/venenatis/non/sodales/sed/tincidunt/eu.js"),
    (5, "no_offer", "https://ezinearticles.com/ipsum/primis/in/faucibus/orci/luctus.html"),
]

ACTIVITY = [
    (1, 1, "121.219.110.170", "branch_visit", 0.4),
    (2, 2, "210.232.55.188", "deposit", 0.56),
    (3, 3, "84.197.123.173", "web_open", 0.33),
    (1, 4, "70.149.233.32", "deposit", 0.41),
    (2, 5, "221.234.209.67", "deposit", 0.44),
    (3, 6, "102.187.28.148", "web_open", 0.33),
    (1, 7, "135.37.250.250", "mobile_open", 0.97),
    (2, 8, "122.157.243.25", "deposit", 0.83),
    (3, 9, "114.215.212.181", "deposit", 0.86),
    (1, 10, "248.248.0.78", "new_account", 0.14),
]

# SELECT * FROM next_best_offer_lookup, as the recipe prints it:
# (offer_id, customer_id, activity_id, propensity_to_buy, activity_type, income, fico, offer_name, offer_url)
EXPECTED_LOOKUP = [
    (1, 1, 1, 0.4, "branch_visit", 403646, 465, "new_savings", OFFERS[0][2]),
    (3, 3, 3, 0.33, "web_open", 407964, 750, "new_home_loan", OFFERS[2][2]),
    (5, 1, 7, 0.97, "mobile_open", 403646, 465, "no_offer", OFFERS[4][2]),
    (1, 1, 4, 0.41, "deposit", 403646, 465, "new_savings", OFFERS[0][2]),
    (1, 1, 10, 0.14, "new_account", 403646, 465, "new_savings", OFFERS[0][2]),
    (3, 2, 2, 0.56, "deposit", 109825, 705, "new_home_loan", OFFERS[2][2]),
    (3, 3, 6, 0.33, "web_open", 407964, 750, "new_home_loan", OFFERS[2][2]),
    (3, 2, 5, 0.44, "deposit", 109825, 705, "new_home_loan", OFFERS[2][2]),
    (3, 3, 9, 0.86, "deposit", 407964, 750, "new_home_loan", OFFERS[2][2]),
    (3, 2, 8, 0.83, "deposit", 109825, 705, "new_home_loan", OFFERS[2][2]),
]


def write_recipe(
    data_dir: Path,
    *,
    start: datetime,
    step: timedelta = timedelta(minutes=1),
    second_listing_at: datetime | None = None,
) -> None:
    """Write the recipe's customers, offers, rules and activity (one event per ``step`` from ``start``)."""
    ref = data_dir / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    with open(ref / "customers.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "customer_id",
                "first_name",
                "last_name",
                "email",
                "gender",
                "income",
                "fico",
                "location_opt_in",
                "marketing_opt_in",
                "updated_at",
            ]
        )
        for row in CUSTOMERS_FIRST:
            w.writerow([*row, "true", "true", ""])
    with open(ref / "offers.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["offer_id", "offer_name", "offer_url"])
        w.writerows(OFFERS)
    shutil.copyfile(DEFAULT_RULES_PATH, ref / "nbo_rules.yaml")

    landing = data_dir / "landing" / "customer_activity"
    landing.mkdir(parents=True, exist_ok=True)
    with open(landing / f"activity-{start:%Y%m%dT%H%M%S}.jsonl", "w") as f:
        for i, (cid, aid, ip, kind, p) in enumerate(ACTIVITY):
            rec = {
                "customer_id": cid,
                "activity_id": aid,
                "ip_address": ip,
                "activity_type": kind,
                "propensity_to_buy": p,
                "event_time": (start + i * step).isoformat(),
            }
            f.write(json.dumps(rec) + "\n")

    if second_listing_at is not None:
        changes = data_dir / "landing" / "customers"
        changes.mkdir(parents=True, exist_ok=True)
        with open(changes / f"customers-{second_listing_at:%Y%m%dT%H%M%S}.jsonl", "w") as f:
            for cid, first, last, email, gender, income, _ in CUSTOMERS_FIRST:
                rec = {
                    "customer_id": cid,
                    "first_name": first,
                    "last_name": last,
                    "email": email,
                    "gender": gender,
                    "income": income,
                    "fico": SECOND_LISTING_FICO[cid],
                    "location_opt_in": True,
                    "marketing_opt_in": True,
                    "updated_at": second_listing_at.isoformat(),
                }
                f.write(json.dumps(rec) + "\n")
