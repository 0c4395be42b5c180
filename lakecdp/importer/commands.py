"""`lakecdp import customers|orders|loyalty|support FILE`."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from lakecdp.cli_args import add_lake_argument, instant, open_lake_for
from lakecdp.config import Settings, parse_duration

# --max-age not given: events.max_age from conf applies (None is `--max-age none`: no limit).
FROM_CONF = object()


def register(commands: argparse._SubParsersAction) -> None:
    importer = commands.add_parser("import", help="import CRM customers, historical orders, loyalty or support history (CSV or Parquet)")
    kinds = importer.add_subparsers(dest="import_command", required=True)

    customers = kinds.add_parser("customers", help="CRM customers -> the customers table (upsert on customer_id)")
    customers.add_argument("file", help=".csv with a header row, or .parquet")
    _common(customers)
    customers.set_defaults(handler=_customers)

    orders = kinds.add_parser("orders", help="historical orders -> bronze events as Order Completed (idempotent)")
    orders.add_argument("file", help=".csv with a header row, or .parquet")
    _common(orders)
    orders.add_argument(
        "--max-age",
        type=age_limit,
        default=FROM_CONF,
        help="accept orders up to this old, e.g. 3650d, or 'none' for any age (default: events.max_age; older ones are quarantined)",
    )
    orders.set_defaults(handler=_orders)

    for name, what in (
        ("loyalty", "loyalty transactions (earned, redeemed, tier_changed)"),
        ("support", "support tickets (opened, resolved)"),
    ):
        activity = kinds.add_parser(name, help=f"{what} -> bronze events (idempotent; README 'Signals')")
        activity.add_argument("file", help=".csv with a header row, or .parquet")
        _common(activity)
        activity.add_argument(
            "--max-age",
            type=age_limit,
            default=FROM_CONF,
            help="accept rows up to this old, e.g. 3650d, or 'none' (default: events.max_age)",
        )
        activity.set_defaults(handler=_activity, activity_kind=name)


def age_limit(text: str) -> timedelta | None:
    """--max-age: a duration, or 'none' (any case) for no limit."""
    if text.strip().lower() == "none":
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or 'none' for no limit") from None


def _clock(args: argparse.Namespace):
    from lakecdp.clock import FrozenClock, SystemClock

    return FrozenClock(args.as_of) if args.as_of else SystemClock()


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as-of", type=instant, help="import as of this instant (ages and stamps count from it; default: now)")
    add_lake_argument(parser)
    parser.add_argument("--report", help="reject report CSV (default: <file stem>.rejects.csv next to the file)")


def _customers(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.importer.customers import import_customers
    from lakecdp.importer.readers import ImportFileError

    try:
        result = import_customers(
            open_lake_for(args, settings), args.file, report_path=args.report, clock=_clock(args), attributes=settings.customers.attributes
        )
    except ImportFileError as exc:
        print(f"lakecdp: {exc}", file=sys.stderr)
        return 2
    print(
        f"customers: {result.rows:,} rows, {result.rejected_rows:,} rejected; "
        f"{result.new:,} new, {result.updated:,} updated, {result.unchanged:,} unchanged"
    )
    _print_tail(
        result.ignored_columns,
        result.report_rows,
        result.report_path,
        keep_hint=" (not kept: declare a column under customers.attributes in conf/base/customers.yaml to keep it)",
    )
    if not result.landed:
        print(_nothing_landed(args.file, result.rows, "customers", result.top_reasons, result.report_path), file=sys.stderr)
        return 1
    return 0


def _orders(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.importer.orders import import_orders
    from lakecdp.importer.readers import ImportFileError

    events = settings.events
    if args.max_age is not FROM_CONF:
        events = events.model_copy(update={"max_age": args.max_age})
    try:
        result = import_orders(open_lake_for(args, settings), args.file, events=events, report_path=args.report, clock=_clock(args))
    except ImportFileError as exc:
        print(f"lakecdp: {exc}", file=sys.stderr)
        return 2
    print(
        f"orders: {result.rows:,} rows, {result.rejected_rows:,} rejected by the import, {result.sent:,} validated as events: "
        f"{result.new_events:,} new in bronze, {result.already_imported:,} already there, {result.quarantined:,} quarantined; "
        f"{result.customers_recorded:,} customers' ids recorded"
    )
    _print_tail(result.ignored_columns, result.report_rows, result.report_path)
    if not result.landed:
        message = _nothing_landed(args.file, result.rows, "bronze", result.top_reasons, result.report_path)
        if any(column == "ordered_at" and "older than" in reason for column, reason, _ in result.top_reasons):
            message += " Fix: for older orders give a longer --max-age (e.g. 3650d), or --max-age none for any age."
        print(message, file=sys.stderr)
        return 1
    return 0


def _activity(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.importer.activity import KINDS, import_activity
    from lakecdp.importer.readers import ImportFileError

    kind = KINDS[args.activity_kind]
    events = settings.events if args.max_age is FROM_CONF else settings.events.model_copy(update={"max_age": args.max_age})
    try:
        result = import_activity(open_lake_for(args, settings), args.file, kind, events=events, report_path=args.report, clock=_clock(args))
    except ImportFileError as exc:
        print(f"lakecdp: {exc}", file=sys.stderr)
        return 2
    print(
        f"{kind.name}: {result.rows:,} rows, {result.rejected_rows:,} rejected by the import, {result.sent:,} validated as events: "
        f"{result.new_events:,} new in bronze, {result.already_imported:,} already there, {result.quarantined:,} quarantined"
    )
    _print_tail(result.ignored_columns, result.report_rows, result.report_path)
    if not result.landed:
        print(_nothing_landed(args.file, result.rows, "bronze", result.top_reasons, result.report_path), file=sys.stderr)
        return 1
    return 0


def _nothing_landed(file: str, rows: int, destination: str, reasons: tuple[tuple[str, str, int], ...], report_path) -> str:
    """Why an import exits 1: the file had no rows, or every row was rejected (the most frequent reasons)."""
    if not rows:
        return f"lakecdp: nothing imported: {file} had no rows (a header only). Fix: export the file with its rows."
    listed = "; ".join(f"{column}: {reason} ({_rows(count)})" for column, reason, count in reasons)
    return (
        f"lakecdp: {file}: {_rows(rows)} read, none landed in {destination}. "
        f"Most frequent reasons: {listed}. Every row's reason: {report_path}."
    )


def _rows(count: int) -> str:
    return f"{count:,} row{'' if count == 1 else 's'}"


def _print_tail(ignored: tuple[str, ...], report_rows: int, report_path, *, keep_hint: str = "") -> None:
    if ignored:
        print(f"ignored columns: {', '.join(ignored)}{keep_hint}")
    print(f"reject report: {report_path} ({report_rows:,} problems)")
