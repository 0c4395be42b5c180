"""`lakecdp stream run`."""

from __future__ import annotations

import argparse
import logging
import sys

from lakecdp.cli_args import add_lake_argument, instant, open_lake_for
from lakecdp.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    stream = commands.add_parser("stream", help="run the events stream")
    actions = stream.add_subparsers(dest="stream_command", required=True)
    run = actions.add_parser("run", help="landing zone (or Kafka topic) -> bronze -> identities -> profiles -> segments")
    add_lake_argument(run)
    run.add_argument(
        "--source",
        help="folder of *.jsonl files (default: <landing.root>/events); with stream.source kafka, the topic in kafka: is read instead",
    )
    run.add_argument("--checkpoint", help="checkpoint folder (default: <lake>/_checkpoints/events)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--until-idle", "--once", dest="until_idle", action="store_true", help="process what is there, then stop")
    mode.add_argument("--timeout", type=float, help="run continuously for at most this many seconds")
    run.add_argument(
        "--as-of",
        type=instant,
        help="freeze the pipeline clock at this instant (replays and backfills of historical data)",
    )
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import FrozenClock, SystemClock
    from lakecdp.stream.job import BatchFailed, default_checkpoint, run_stream

    if args.source and settings.stream.source == "kafka":
        print(
            f"lakecdp: --source {args.source} names a folder, but stream.source is kafka (topic "
            f"{settings.kafka.topic} at {settings.kafka.bootstrap_servers}). Fix: drop --source, or set "
            "stream.source: files (LAKECDP__STREAM__SOURCE=files).",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    lake = open_lake_for(args, settings)
    spark = lake.spark
    try:
        result = run_stream(
            spark,
            lake,
            settings,
            source=None if settings.stream.source == "kafka" else args.source or f"{settings.landing.root.rstrip('/')}/events",
            checkpoint=args.checkpoint or default_checkpoint(settings, lake.root, "events"),
            mode="until-idle" if args.until_idle else "continuous",
            timeout_seconds=args.timeout,
            clock=FrozenClock(args.as_of) if args.as_of else SystemClock(),
        )
    except BatchFailed as exc:
        print(f"lakecdp: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0
