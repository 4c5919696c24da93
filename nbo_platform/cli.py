"""The ``nbo`` command."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from nbo_platform.settings import SettingsError, load_settings

EXIT_OK, EXIT_WARNINGS, EXIT_ERRORS = 0, 1, 2


def _settings(args: argparse.Namespace):
    if getattr(args, "data_dir", None):
        os.environ["NBO_DATA_DIR"] = str(Path(args.data_dir).resolve())
    return load_settings()


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)  # checked before the definitions are imported (seconds)
    from nbo_platform.runner import dagster_instance, run_pipeline

    report = run_pipeline(settings, instance=dagster_instance(settings))
    print(f"nbo run: {len(report.runs)} run(s) in {report.seconds:.1f} s; warehouse: {settings.warehouse_path}")
    return EXIT_OK


def cmd_retake(args: argparse.Namespace) -> int:
    """Take landing files in again as they are now (finished or corrected in place), then run."""
    settings = _settings(args)
    from nbo_platform.domain.feeds import LANDING_FEEDS
    from nbo_platform.domain.landing import LandingError, retake
    from nbo_platform.duck import connect
    from nbo_platform.lake import Lake
    from nbo_platform.runner import dagster_instance, run_pipeline

    lake, con = Lake(settings.lake_uri, settings.parquet_version), connect()
    for name in args.files:
        feed_name, _, relpath = name.partition("/")
        if feed_name not in LANDING_FEEDS or not relpath:
            print(
                f"nbo retake: {name}: expected <feed>/<file> with a feed of {', '.join(LANDING_FEEDS)}", file=sys.stderr
            )
            return EXIT_ERRORS
        try:
            r = retake(
                con,
                lake,
                settings.landing_dir,
                LANDING_FEEDS[feed_name],
                relpath,
                lock_dir=settings.state_dir / "locks",
                partitions_start=settings.partitions_start,
                pii_salt=settings.pii_salt,
                dedup_window_days=settings.dedup_window_days,
            )
        except LandingError as e:
            print(f"nbo retake: {e}", file=sys.stderr)
            return EXIT_ERRORS
        print(
            f"nbo retake: {name}: read {r.rows_read}, new {r.rows_new}, already accepted {r.rows_duplicate}, "
            f"quarantined {r.rows_quarantined}, discarded {r.rows_discarded}"
        )
    report = run_pipeline(settings, instance=dagster_instance(settings))
    print(f"nbo retake: {len(report.runs)} run(s) in {report.seconds:.1f} s")
    return EXIT_OK


def cmd_purge_unconsented(args: argparse.Namespace) -> int:
    """One-off, for a lake written before consent at ingestion: remove the pings of customers without
    location consent at the ping's time, rebuild the geofence hits of the dates they touched and after
    (hits hold coordinates), then run. Decisions already made stay: they hold no coordinates."""
    settings = _settings(args)
    import shutil

    from nbo_platform.domain.feeds import LOCATION_PINGS
    from nbo_platform.domain.landing import purge_unconsented
    from nbo_platform.duck import connect
    from nbo_platform.lake import Lake
    from nbo_platform.runner import dagster_instance, run_pipeline

    lake = Lake(settings.lake_uri, settings.parquet_version)
    removed = purge_unconsented(connect(), lake, LOCATION_PINGS, lock_dir=settings.state_dir / "locks")
    if removed:
        first = min(removed)
        for table in ("geofence_hits", "geofence_state"):  # the state carries into the days after
            for d in lake.dates(table):
                if d >= first:
                    shutil.rmtree(lake.partition_dir(table, d))
    for d, n in sorted(removed.items()):
        print(f"nbo purge-unconsented: {d}: {n:,} ping(s) without location consent removed")
    print(f"nbo purge-unconsented: {sum(removed.values()):,} ping(s) removed in all; rebuilding the geofence hits")
    run_pipeline(settings, instance=dagster_instance(settings))
    return EXIT_OK


def _print_generated(report) -> None:
    rows = ", ".join(f"{k} {v:,}" for k, v in report.rows.items())
    bad = ", ".join(f"{k} {v:,}" for k, v in report.malformed.items() if v)
    print(f"  rows: {rows}\n  malformed rows (to be quarantined): {bad or 'none'}")
    print(f"  generated in {report.seconds['total']:.1f} s")


def cmd_generate(args: argparse.Namespace) -> int:
    from nbo_platform.generate import generate, spec_for

    settings = _settings(args)
    spec = spec_for(args.preset, customers=args.customers, days=args.days, allies=args.allies, stores=args.stores)
    if args.lift is not None:
        from dataclasses import replace

        spec = replace(spec, behaviour=replace(spec.behaviour, lift=args.lift))
    print(
        f"nbo generate: preset {args.preset!r} into {settings.data_dir}: {spec.customers:,} customers, "
        f"{spec.stores:,} stores, {spec.days} day(s), seed {args.seed}"
    )
    report = generate(settings.data_dir, spec, seed=args.seed, start=args.start, salt=settings.pii_salt, progress=True)
    _print_generated(report)
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from nbo_platform.lake import Lake
    from nbo_platform.runner import dagster_instance, run_pipeline
    from nbo_platform.simulate import Trip, default_start_time, entries_of, pick_customer, write_trip

    settings = _settings(args)
    lake = Lake(settings.lake_uri, settings.parquet_version)
    at = datetime.fromisoformat(args.at) if args.at else default_start_time(lake)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    trip = Trip(_latlon(args.start), _latlon(args.end), args.speed, at)
    customer = pick_customer(lake)
    write_trip(settings, trip, customer)
    print(
        f"nbo simulate: customer {customer} leaves {trip.start} at {at.isoformat()} for {trip.end} at {args.speed} km/h"
    )
    run_pipeline(settings, instance=dagster_instance(settings), echo=lambda _: None)
    entries = entries_of(lake, customer)
    if not entries:
        print("  no store fence on the way")
    for e in entries:
        what = f"{e['channel']}: {e['offer_text']}" if e["status"] == "sent" else f"no offer ({e['reason']})"
        print(
            f"  {e['event_time']:%H:%M:%S}  {e['store_name']} ({e['ally_name']}), {e['distance_m']:.0f} m  ->  {what}"
        )
    return EXIT_OK


def _latlon(text: str) -> tuple[float, float]:
    try:
        lat, lon = (float(x) for x in text.split(","))
    except ValueError as e:
        raise SystemExit(f"expected LAT,LON, got {text!r}") from e
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise SystemExit(f"{text!r}: latitude must be in [-90, 90] and longitude in [-180, 180]")
    return lat, lon


def cmd_demo(args: argparse.Namespace) -> int:
    from nbo_platform.generate import PRESETS, generate
    from nbo_platform.report import print_summary
    from nbo_platform.runner import dagster_instance, run_pipeline

    settings = _settings(args)
    if not settings.reference_dir.exists() and not settings.landing_dir.exists():
        print(f"nbo demo: generating the 'demo' sample data into {settings.data_dir}")
        _print_generated(generate(settings.data_dir, PRESETS["demo"], salt=settings.pii_salt))
    else:
        print(f"nbo demo: using the data already in {settings.data_dir}")
    run_pipeline(settings, instance=dagster_instance(settings))
    print_summary(settings)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from nbo_platform.campaign_report import report_path, write_report
    from nbo_platform.lake import Lake

    settings = _settings(args)
    if args.date:
        try:
            datetime.strptime(args.date, "%Y-%m-%d")
        except ValueError:
            raise SystemExit(f"--date {args.date!r}: expected YYYY-MM-DD") from None
    out = Path(args.out) if args.out else report_path(settings.data_dir, args.date)
    data = write_report(Lake(settings.lake_uri, settings.parquet_version), out, args.date)
    if data.missing:
        print(f"nbo report: not built yet: {', '.join(data.missing)} (run `nbo run` first)", file=sys.stderr)
    if args.date and data.dates and args.date not in data.dates:
        print(f"nbo report: no metrics for {args.date}; days present: {', '.join(data.dates)}", file=sys.stderr)
    print(f"nbo report: {out} ({len(data.campaigns)} campaigns, days: {', '.join(data.dates) or 'none'})")
    return EXIT_OK


def cmd_rules_lint(args: argparse.Namespace) -> int:
    from nbo_platform.domain.feeds import OFFERS
    from nbo_platform.domain.rules import DEFAULT_RULES_PATH, RulesError, lint, load_rules

    settings = _settings(args)
    path = Path(args.file) if args.file else settings.rules_path
    if not args.file and not path.exists():
        path = DEFAULT_RULES_PATH
    try:
        rules = load_rules(path)
    except RulesError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERRORS
    known = None
    offers_path = Path(args.offers) if args.offers else None
    if offers_path is None:
        from nbo_platform.domain.landing import find_reference_file

        offers_path = find_reference_file(settings.reference_dir, "offers")
    if offers_path is not None:
        from nbo_platform.domain.landing import read_records, validate_sql
        from nbo_platform.duck import connect

        con = connect()
        view = read_records(con, offers_path, OFFERS)
        known = {
            r[0]
            for r in con.execute(
                f"SELECT offer_id FROM ({validate_sql(OFFERS, view, ingested_at=datetime.now(UTC))}) "
                "WHERE _reason IS NULL"
            ).fetchall()
        }
    findings = lint(rules, known)
    for f in findings:
        print(f"{f.severity}: {path}: {f.message}", file=sys.stderr if f.severity == "error" else sys.stdout)
    if any(f.severity == "error" for f in findings):
        return EXIT_ERRORS
    if findings:
        return EXIT_WARNINGS
    print(f"ok: {path}: {len(rules.rules)} rules, every rule can fire")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nbo", description="Next Best Offer and geo-marketing data platform")
    sub = p.add_subparsers(dest="command", required=True)

    def with_data_dir(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--data-dir", help="data root (default: $NBO_DATA_DIR, else data/ in the repository)")
        return sp

    with_data_dir(sub.add_parser("run", help="process every pending landing file through every asset")).set_defaults(
        func=cmd_run
    )
    with_data_dir(
        sub.add_parser(
            "purge-unconsented",
            help="one-off for a lake written before consent at ingestion: remove the pings of customers without "
            "location consent and rebuild the geofence hits",
        )
    ).set_defaults(func=cmd_purge_unconsented)
    retake_p = with_data_dir(
        sub.add_parser(
            "retake",
            help="take ingested landing files in again as they are now (a producer finished or corrected them), "
            "then run: records accepted before stay once",
        )
    )
    retake_p.add_argument("files", nargs="+", metavar="FEED/FILE", help="e.g. location_pings/pings-0042.jsonl")
    retake_p.set_defaults(func=cmd_retake)
    with_data_dir(
        sub.add_parser("demo", help="write sample data if none is present, run the pipeline, summarize")
    ).set_defaults(func=cmd_demo)
    gen = with_data_dir(sub.add_parser("generate", help="write generated reference data and landing files"))
    gen.add_argument("--preset", choices=("small", "demo", "large"), default="demo", help="sizes (default: demo)")
    gen.add_argument("--customers", type=int, help="number of customers (overrides the preset)")
    gen.add_argument("--days", type=int, help="number of days (overrides the preset)")
    gen.add_argument("--allies", type=int, help="number of allies (overrides the preset)")
    gen.add_argument("--stores", type=int, help="number of stores (overrides the preset)")
    gen.add_argument("--seed", type=int, default=7, help="random seed: the same seed writes the same files")
    gen.add_argument("--start", default="2025-06-02", help="first day (UTC date, default 2025-06-02)")
    gen.add_argument("--lift", type=float, help="true effect of a notification on buying within the window")
    gen.set_defaults(func=cmd_generate)
    sim = with_data_dir(
        sub.add_parser("simulate", help="one customer travels from A to B; prints the offers received on the way")
    )
    sim.add_argument("--from", dest="start", required=True, help="LAT,LON where the trip starts")
    sim.add_argument("--to", dest="end", required=True, help="LAT,LON where the trip ends")
    sim.add_argument("--speed", type=float, default=30.0, help="km/h (default 30)")
    sim.add_argument("--at", help="start time, ISO-8601 (default: a minute after the latest ping taken in)")
    sim.set_defaults(func=cmd_simulate)
    rep = with_data_dir(
        sub.add_parser("report", help="write the campaign report: one self-contained HTML file (no network needed)")
    )
    rep.add_argument("--date", help="one UTC day (YYYY-MM-DD; default: every day present)")
    rep.add_argument("--out", help="file to write (default: <data dir>/reports/campaign_report[_DATE].html)")
    rep.set_defaults(func=cmd_report)
    rules = sub.add_parser("rules", help="offer rules").add_subparsers(dest="rules_command", required=True)
    lint_p = with_data_dir(
        rules.add_parser(
            "lint",
            help="check nbo_rules.yaml: syntax, unknown fields, rules that can never fire "
            "(exit 0: clean, 1: warnings, 2: errors)",
        )
    )
    lint_p.add_argument("--file", help="rules file (default: reference/nbo_rules.yaml, else the shipped rules)")
    lint_p.add_argument("--offers", help="offers file to check offer ids against (default: reference/offers.*)")
    lint_p.set_defaults(func=cmd_rules_lint)
    return p


def main(argv: list[str] | None = None) -> int:
    import warnings

    # Dagster flags beta parameters (backfill policies) on every import; they are chosen deliberately.
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", message=".*(beta|preview|experimental).*")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as e:  # a bad environment variable: its name and what is expected, no traceback
        print(f"nbo: {e}", file=sys.stderr)
        return EXIT_ERRORS


if __name__ == "__main__":
    sys.exit(main())
