"""`lakecdp recs build|evaluate` (registered by lakecdp.content.commands)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from lakecdp.cli_args import add_lake_argument, instant, open_lake_for
from lakecdp.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    recs = commands.add_parser("recs", help="product recommendations: nightly build and offline evaluation")
    actions = recs.add_subparsers(dest="recs_command", required=True)
    build = actions.add_parser("build", help="recompute the recommendations table (Spark batch)")
    _common(build)
    build.set_defaults(handler=_build)
    evaluate = actions.add_parser(
        "evaluate", help="time-split hit rate / precision@k / recall@k of co-occurrence, content-based and their blend vs popularity"
    )
    _common(evaluate)
    evaluate.add_argument("--k", type=int, help="list length (default: content.recommendations.k)")
    evaluate.add_argument("--test-days", type=int, help="test period length (default: content.recommendations.test_days)")
    evaluate.set_defaults(handler=_evaluate)


def _common(parser: argparse.ArgumentParser) -> None:
    add_lake_argument(parser)
    parser.add_argument("--catalog", help="catalog CSV/Parquet (default: content.recommendations.catalog, else from events)")
    parser.add_argument("--as-of", type=instant, help="instant to compute as of (default: the latest event time in bronze)")


def _open(args: argparse.Namespace, settings: Settings):
    from lakecdp.content.settings import parse_content_settings

    recs = parse_content_settings(settings.content).recommendations
    lake = open_lake_for(args, settings)
    return lake, recs


def _as_of(args: argparse.Namespace, lake) -> datetime:
    from datetime import timedelta

    from pyspark.sql import functions as F

    if args.as_of is not None:
        return args.as_of
    latest = lake.read("events").agg(F.max("timestamp")).first()[0]
    if latest is None:
        from lakecdp.lake import LakeError

        raise LakeError("events is empty: nothing to recommend from. Fix: load events first (lakecdp demo / stream run).")
    # Spark hands back naive UTC (the session runs in UTC); one microsecond later includes the last event.
    return latest.replace(tzinfo=UTC) + timedelta(microseconds=1)


def _build(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.recs.jobs import build_and_write

    lake, recs = _open(args, settings)
    as_of = _as_of(args, lake)
    rows = build_and_write(lake, recs, as_of=as_of, catalog_path=args.catalog)
    print(f"recommendations: {rows:,} rows (k={recs.k}) as of {as_of.isoformat()} in {lake.path('recommendations')}")
    return 0


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.recs.jobs import evaluate

    lake, recs = _open(args, settings)
    if args.test_days:
        recs = recs.model_copy(update={"test_days": args.test_days})
    result = evaluate(lake, recs, end=_as_of(args, lake), k=args.k, catalog_path=args.catalog)
    print("\n".join(result.lines()))
    return 0
