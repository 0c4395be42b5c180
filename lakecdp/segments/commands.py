"""`lakecdp segments validate|preview`."""
from __future__ import annotations

import argparse
from datetime import datetime

from lakecdp.config import Settings


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone, e.g. 2026-11-01T00:00:00+00:00")
    return value


def register(commands: argparse._SubParsersAction) -> None:
    segments = commands.add_parser("segments", help="validate and preview segment rules")
    actions = segments.add_subparsers(dest="segments_command", required=True)
    validate = actions.add_parser("validate", help="check the segments in conf")
    validate.set_defaults(handler=_validate)
    preview = actions.add_parser("preview", help="sizes the rules would have, without saving")
    preview.add_argument("--lake", help="lake root (default: lake.root from conf)")
    preview.add_argument("--as-of", type=_instant, help="evaluation instant (default: demo.end)")
    preview.set_defaults(handler=_preview)


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.segments import parse_segments

    for segment in parse_segments(settings.segments):
        print(f"ok  {segment.name:<28} version {segment.version}  {segment.description}")
    return 0


def _preview(args: argparse.Namespace, settings: Settings) -> int:
    from pyspark.sql import functions as F

    from lakecdp.lake import open_lake
    from lakecdp.segments import evaluate_segments, parse_segments
    from lakecdp.spark import build_session

    segments = parse_segments(settings.segments)
    as_of = args.as_of or settings.demo.end
    lake = open_lake(build_session(settings.spark), settings.lake, root=args.lake)
    evaluated = evaluate_segments(lake.read("events"), lake.read("profile_features"), segments, as_of)
    sizes = {
        row["segment"]: row["members"]
        for row in evaluated.groupBy("segment").agg(F.count(F.when(F.col("is_member"), True)).alias("members")).collect()
    }
    print(f"segment sizes as of {as_of.isoformat()} (not saved):")
    for segment in segments:
        print(f"  {segment.name:<28} {sizes.get(segment.name, 0):>8,}")
    return 0
