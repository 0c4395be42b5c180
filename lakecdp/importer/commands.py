"""`lakecdp import customers FILE` and `lakecdp import orders FILE`."""
from __future__ import annotations

import argparse
import sys

from lakecdp.cli_args import open_lake_for
from lakecdp.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    importer = commands.add_parser("import", help="import CRM customers or historical orders (CSV or Parquet)")
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
        help="accept orders up to this old, e.g. 3650d (default: events.max_age; older ones are quarantined)",
    )
    orders.set_defaults(handler=_orders)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lake", help="lake root (default: lake.root from conf)")
    parser.add_argument("--report", help="reject report CSV (default: <file stem>.rejects.csv next to the file)")


def _customers(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.importer.customers import import_customers
    from lakecdp.importer.readers import ImportFileError

    try:
        result = import_customers(open_lake_for(args, settings), args.file, report_path=args.report)
    except ImportFileError as exc:
        print(f"lakecdp: {exc}", file=sys.stderr)
        return 2
    print(
        f"customers: {result.rows:,} rows, {result.rejected_rows:,} rejected; "
        f"{result.new:,} new, {result.updated:,} updated, {result.unchanged:,} unchanged"
    )
    _print_tail(result.ignored_columns, result.report_rows, result.report_path)
    return 0


def _orders(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.config import parse_duration
    from lakecdp.importer.orders import import_orders
    from lakecdp.importer.readers import ImportFileError

    events = settings.events
    if args.max_age:
        events = events.model_copy(update={"max_age": parse_duration(args.max_age)})
    try:
        result = import_orders(open_lake_for(args, settings), args.file, events=events, report_path=args.report)
    except ImportFileError as exc:
        print(f"lakecdp: {exc}", file=sys.stderr)
        return 2
    print(
        f"orders: {result.rows:,} rows, {result.rejected_rows:,} rejected by the import, {result.sent:,} validated as events: "
        f"{result.new_events:,} new in bronze, {result.already_imported:,} already there, {result.quarantined:,} quarantined"
    )
    _print_tail(result.ignored_columns, result.report_rows, result.report_path)
    return 0




def _print_tail(ignored: tuple[str, ...], report_rows: int, report_path) -> None:
    if ignored:
        print(f"ignored columns: {', '.join(ignored)}")
    print(f"reject report: {report_path} ({report_rows:,} problems)")
