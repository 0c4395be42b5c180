"""`lakecdp enrich import FILE --source NAME`."""

from __future__ import annotations

import argparse
import sys

from lakecdp.cli_args import add_lake_argument, instant, open_lake_for
from lakecdp.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    enrich = commands.add_parser("enrich", help="third-party enrichment with provenance, where consent allows")
    actions = enrich.add_subparsers(dest="enrich_command", required=True)
    imported = actions.add_parser("import", help="a vendor file (CSV, Parquet, JSON or JSON lines) -> customer_enrichment")
    imported.add_argument("file")
    imported.add_argument("--source", required=True, help="a source declared under customers.enrichment.sources (conf/base/customers.yaml)")
    imported.add_argument("--as-of", type=instant, help="import as of this instant (default: now)")
    imported.add_argument("--report", help="reject report CSV (default: <file stem>.rejects.csv next to the file)")
    add_lake_argument(imported)
    imported.set_defaults(handler=_import)


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import FrozenClock, SystemClock
    from lakecdp.enrich.importer import import_enrichment
    from lakecdp.importer.customers import bound_text
    from lakecdp.importer.readers import ImportFileError

    sources = settings.customers.enrichment.sources
    if args.source not in sources:
        known = ", ".join(sources) or "none declared"
        print(
            f"lakecdp: unknown enrichment source {args.source!r} ({known}). Fix: declare it under customers.enrichment.sources in conf/base/customers.yaml.",
            file=sys.stderr,
        )
        return 2
    source = sources[args.source]
    try:
        result = import_enrichment(
            open_lake_for(args, settings),
            args.file,
            args.source,
            source,
            clock=FrozenClock(args.as_of) if args.as_of else SystemClock(),
            report_path=args.report,
        )
    except ImportFileError as exc:
        print(f"lakecdp: {exc}", file=sys.stderr)
        return 2
    print(
        f"enrich {args.source} ({source.legal_basis}): {result.rows:,} rows, {result.valid_rows:,} valid; "
        f"matched {result.matched:,} customers ({result.match_rate:.1%} of valid rows), "
        f"{result.allowed:,} allowed by consent; {result.values_written:,} values written, "
        f"{result.removed:,} removed (consent withdrawn since an earlier import)"
    )
    for name, declared in source.attributes.items():
        counts = result.attributes.get(name, {"filled": 0, "refused": 0})
        bounds = f" {bound_text(declared.min)}..{bound_text(declared.max)}" if declared.min is not None and declared.max is not None else ""
        allowed = f" in {{{', '.join(declared.values)}}}" if declared.values else ""
        print(f"  {name} ({declared.type}{bounds}{allowed}): {counts['filled']:,} present, {counts['refused']:,} refused")
    if result.ignored_columns:
        print(f"ignored columns (not declared for {args.source}): {', '.join(result.ignored_columns)}")
    print(f"reject report: {result.report_path} ({result.report_rows:,} problems)")
    return 0 if result.allowed else 1
