"""`lakecdp identity show|unmerge`: inspect and undo identity merges."""

from __future__ import annotations

import argparse

from lakecdp.cli_args import add_lake_argument, customer_key, open_lake_for
from lakecdp.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    identity = commands.add_parser("identity", help="inspect and undo identity merges")
    actions = identity.add_subparsers(dest="identity_command", required=True)
    show = actions.add_parser("show", help="the merge log of a customer or anonymous id")
    show.add_argument("id")
    add_lake_argument(show)
    show.set_defaults(handler=_show)
    unmerge = actions.add_parser("unmerge", help="split an anonymous id back out of a customer and recompute both")
    unmerge.add_argument("anonymous_id")
    unmerge.add_argument("customer_id")
    add_lake_argument(unmerge)
    unmerge.set_defaults(handler=_unmerge)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from pyspark.sql import functions as F

    lake = open_lake_for(args, settings)
    links = lake.read("identity_links")
    args.id = customer_key(args.id, lake)
    rows = links.filter((F.col("anonymous_id") == args.id) | (F.col("customer_id") == args.id)).orderBy("linked_at").collect()
    if not rows:
        print(f"no identity links for {args.id}")
    for r in rows:
        state = "active" if r.is_active else f"unmerged at {r.unmerged_at:%Y-%m-%d %H:%M:%S}"
        print(f"{r.anonymous_id} -> {r.customer_id}  linked {r.linked_at:%Y-%m-%d %H:%M:%S} by message {r.source_message_id}  ({state})")
    return 0


def _unmerge(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import SystemClock
    from lakecdp.flows.micro_batch import unmerge_identity
    from lakecdp.segments import segments_of

    lake = open_lake_for(args, settings)
    args.anonymous_id, args.customer_id = customer_key(args.anonymous_id, lake), customer_key(args.customer_id, lake)
    if not unmerge_identity(lake, args.anonymous_id, args.customer_id, segments_of(settings), SystemClock().now()):
        print(f"no active link {args.anonymous_id} -> {args.customer_id}")
        return 1
    print(f"unmerged {args.anonymous_id} from {args.customer_id}; both profiles and their segments recomputed")
    return 0
