"""`lakecdp triggers dispatch|status`."""

from __future__ import annotations

import argparse

from lakecdp.cli_args import add_lake_argument, instant, open_lake_for
from lakecdp.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    triggers = commands.add_parser("triggers", help="send due trigger messages, show the outbox")
    actions = triggers.add_subparsers(dest="triggers_command", required=True)
    dispatch = actions.add_parser("dispatch", help="re-check and send every trigger due now")
    add_lake_argument(dispatch)
    dispatch.add_argument("--as-of", type=instant, help="the dispatch instant (default: now)")
    dispatch.set_defaults(handler=_dispatch)
    status = actions.add_parser("status", help="outbox counts by segment and state")
    add_lake_argument(status)
    status.set_defaults(handler=_status)


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import SystemClock
    from lakecdp.flows.timers import send_due_triggers
    from lakecdp.segments import segments_of

    report = send_due_triggers(open_lake_for(args, settings), settings, segments_of(settings), args.as_of or SystemClock().now())
    print("nothing due" if not report.outcomes else "\n".join(f"{n:>6}  {outcome}" for outcome, n in sorted(report.outcomes.items())))
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:

    outbox = open_lake_for(args, settings).read("trigger_outbox")
    print(outbox.groupBy("segment", "state", "reason").count().orderBy("segment", "state").toPandas().to_string(index=False))
    return 0
