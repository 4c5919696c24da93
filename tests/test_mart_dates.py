"""Which days a marts build covers, and what it leaves in the lake and its record."""

import json
from pathlib import Path

import pytest

from nbo_platform.duck import connect
from nbo_platform.lake import Lake
from nbo_platform.mart_dates import (
    MARTS,
    RECORD,
    build_lock,
    mart_file,
    new_staging,
    plan_mart_dates,
    publish_build,
)

DAYS = ("2025-06-01", "2025-06-02", "2025-06-03")


def write_input(lake: Lake, table: str, date: str, value: int = 1) -> None:
    lake.write(connect(), f"SELECT {value} AS v", lake.partition_dir(table, date) / "data.parquet")


def write_reference(lake: Lake, table: str, value: int = 1) -> None:
    lake.write(connect(), f"SELECT {value} AS v", lake.table_dir(table) / f"{table}.parquet")


def stage(tmp: Path, lake: Lake, dates) -> Path:
    """What the dbt build writes: every mart, every covered date."""
    staged = tmp / "staged"
    for mart in MARTS:
        for date in dates:
            f = staged / mart / mart_file(lake, mart, date).name
            f.parent.mkdir(parents=True, exist_ok=True)
            connect().execute(f"COPY (SELECT DATE '{date}' AS date) TO '{f}' (FORMAT parquet)")
    return staged


def build(tmp: Path, lake: Lake, **kwargs):
    plan = plan_mart_dates(lake, **kwargs)
    publish_build(lake, plan, stage(tmp / plan.summary().replace(" ", ""), lake, plan.dates))
    return plan


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(str(tmp_path / "lake"))
    for d in DAYS:
        write_input(lake, "notifications", d)
    write_input(lake, "next_best_offer", DAYS[0])
    write_reference(lake, "allies")
    return lake


def test_the_first_build_covers_every_day_and_the_next_none(lake, tmp_path):
    first = build(tmp_path, lake)
    assert (first.dates, first.full, first.reason) == (list(DAYS), True, "no record of an earlier build")
    assert all(mart_file(lake, m, d).exists() for m in MARTS for d in DAYS)
    second = plan_mart_dates(lake)
    assert (second.dates, second.full, second.reason) == ([], False, "nothing changed")
    assert second.env_value == "" and second.summary() == "none"


def test_a_rewritten_partition_of_any_input_makes_only_its_day_due(lake, tmp_path):
    build(tmp_path, lake)
    write_input(lake, "notifications", DAYS[1], value=2)
    assert plan_mart_dates(lake).dates == [DAYS[1]]
    write_input(lake, "next_best_offer", DAYS[2])  # a day's first file of another input
    plan = build(tmp_path, lake)
    assert (plan.dates, plan.full, plan.env_value) == ([DAYS[1], DAYS[2]], False, f"{DAYS[1]},{DAYS[2]}")
    assert plan_mart_dates(lake).dates == []


def test_a_day_whose_mart_file_is_missing_is_built_again(lake, tmp_path):
    build(tmp_path, lake)
    mart_file(lake, "offer_mix", DAYS[2]).unlink()
    assert plan_mart_dates(lake).dates == [DAYS[2]]


def test_changed_allies_or_a_full_refresh_covers_every_day(lake, tmp_path):
    build(tmp_path, lake)
    assert plan_mart_dates(lake, full_refresh=True).reason == "full refresh requested"
    # The daily reference refresh writes the same allies again, and other reference tables: nothing due.
    write_reference(lake, "allies")
    write_reference(lake, "campaigns", value=2)
    assert plan_mart_dates(lake).dates == []
    write_reference(lake, "allies", value=2)  # an ally renamed
    plan = plan_mart_dates(lake)
    assert (plan.dates, plan.full, plan.reason) == (list(DAYS), True, "the allies changed")


def test_days_gone_from_the_lake_and_files_of_an_earlier_layout_are_removed(lake, tmp_path):
    legacy = lake.root / "marts" / "offer_mix" / "offer_mix.parquet"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"")
    build(tmp_path, lake)
    assert not legacy.exists()  # the first build is full: only the files it wrote stay

    for table in ("notifications", "next_best_offer"):
        for f in lake.partition_files(table, DAYS[0]):
            f.unlink()
    write_input(lake, "notifications", DAYS[2], value=3)
    plan = build(tmp_path, lake)
    assert (plan.dates, plan.gone) == ([DAYS[2]], [DAYS[0]])
    assert not any(mart_file(lake, m, DAYS[0]).exists() for m in MARTS)
    assert all(mart_file(lake, m, DAYS[1]).exists() for m in MARTS)
    record = json.loads((lake.root / "marts" / RECORD).read_text())
    assert sorted(record["dates"]) == list(DAYS[1:])


def test_an_incomplete_build_places_nothing_and_records_nothing(lake, tmp_path):
    build(tmp_path, lake)
    write_input(lake, "notifications", DAYS[1], value=2)
    plan = plan_mart_dates(lake)
    staged = stage(tmp_path / "partial", lake, plan.dates)
    (staged / "offer_mix" / mart_file(lake, "offer_mix", DAYS[1]).name).unlink()
    before = {f: f.stat().st_mtime_ns for f in (lake.root / "marts").rglob("*") if f.is_file()}
    with pytest.raises(FileNotFoundError, match="offer_mix/offer_mix_2025-06-02.parquet"):
        publish_build(lake, plan, staged)
    assert {f: f.stat().st_mtime_ns for f in (lake.root / "marts").rglob("*") if f.is_file()} == before
    assert plan_mart_dates(lake).dates == [DAYS[1]]  # still due


def test_builds_of_one_lake_take_turns(lake):
    import threading

    order = []
    first_in = threading.Event()

    def first():
        with build_lock(lake):
            order.append("first in")
            first_in.set()
            second_thread.join(timeout=0.3)  # the second is waiting meanwhile
            order.append("first out")

    def second():
        first_in.wait()
        with build_lock(lake):
            order.append("second in")

    second_thread = threading.Thread(target=second)
    first_thread = threading.Thread(target=first)
    second_thread.start()  # waits until the first holds the lock
    first_thread.start()
    first_thread.join()
    second_thread.join()
    assert order == ["first in", "first out", "second in"]


def test_a_new_build_clears_what_a_build_that_died_left_staged(lake):
    died = new_staging(lake)
    (died / "offer_mix" / "offer_mix_2025-06-01.parquet").write_bytes(b"half")
    with build_lock(lake):
        staged = new_staging(lake)
    assert not died.exists() and sorted(p.name for p in staged.iterdir()) == sorted(MARTS)
