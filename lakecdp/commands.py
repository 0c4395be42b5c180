"""Core subcommands: demo, generate, sql."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lakecdp.cli_args import add_lake_argument
from lakecdp.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run every part of the product end to end on generated data")
    add_lake_argument(demo)
    demo.add_argument("--landing", help="landing root (default: landing.root from conf, ./landing)")
    demo.add_argument("--customers", type=int, help="customers to generate (default: demo.customers)")
    demo.add_argument("--days", type=int, help="days of history (default: demo.days)")
    demo.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="folder for the report, previews and the demo's conf (default: demo-out)"
    )
    demo.set_defaults(handler=_demo)

    generate = commands.add_parser("generate", help="write a synthetic dataset (events, truth, CRM, catalog)")
    generate.add_argument("--out", type=Path, required=True)
    generate.add_argument("--customers", type=int, default=2000)
    generate.add_argument("--days", type=int, default=30)
    generate.add_argument("--seed", type=int, default=7)
    generate.set_defaults(handler=_generate)

    sql = commands.add_parser("sql", help="query the lake's tables with Spark SQL or DuckDB")
    sql.add_argument("query")
    add_lake_argument(sql)
    sql.add_argument("--engine", choices=["spark", "duckdb"], default="spark")
    sql.add_argument("--limit", type=int, default=50)
    sql.set_defaults(handler=_sql)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.demo import DemoFailed, run_demo

    try:
        run_demo(settings, lake_root=args.lake, landing_root=args.landing, out_dir=args.out, customers=args.customers, days=args.days)
    except DemoFailed as exc:
        print(f"lakecdp demo: {exc}", file=sys.stderr)
        return 1
    return 0


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.generate import GeneratorSettings, write_dataset

    summary = write_dataset(GeneratorSettings(customers=args.customers, days=args.days, seed=args.seed), args.out)
    print(f"{summary.events:,} events for {summary.customers:,} customers in {args.out}")
    return 0


def _sql(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.privacy.access import mentions_contact_pii
    from lakecdp.privacy.roles import Scope, current_principal
    from lakecdp.query import run_query

    print(run_query(settings, args.query, lake_root=args.lake, engine=args.engine, limit=args.limit))
    principal = current_principal()
    if not principal.has(Scope.PII_READ) and mentions_contact_pii(args.query):
        print(f"note: contact columns read null: role {principal.role} lacks scope pii:read", file=sys.stderr)
    return 0
