"""The ``nbo`` command."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nbo_platform.settings import load_settings

EXIT_OK, EXIT_WARNINGS, EXIT_ERRORS = 0, 1, 2


def _settings(args: argparse.Namespace):
    if getattr(args, "data_dir", None):
        os.environ["NBO_DATA_DIR"] = str(Path(args.data_dir).resolve())
    return load_settings()


def cmd_run(args: argparse.Namespace) -> int:
    from nbo_platform.runner import dagster_instance, run_pipeline

    settings = _settings(args)
    report = run_pipeline(settings, instance=dagster_instance(settings))
    print(f"nbo run: {len(report.runs)} run(s) in {report.seconds:.1f} s; warehouse: {settings.warehouse_path}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from nbo_platform.recipe import write_recipe
    from nbo_platform.report import print_summary
    from nbo_platform.runner import dagster_instance, run_pipeline

    settings = _settings(args)
    if not (settings.reference_dir / "offers.csv").exists() and not settings.landing_dir.exists():
        start = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=1)
        print(f"nbo demo: writing the Next Best Offer recipe's data into {settings.data_dir}")
        write_recipe(settings.data_dir, start=start)
    else:
        print(f"nbo demo: using the data already in {settings.data_dir}")
    run_pipeline(settings, instance=dagster_instance(settings))
    print_summary(settings)
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
        sub.add_parser("demo", help="write sample data if none is present, run the pipeline, summarize")
    ).set_defaults(func=cmd_demo)
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
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
