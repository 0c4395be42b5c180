"""`lakecdp reconcile`: the online state against a batch recompute from bronze."""

from __future__ import annotations

import argparse

from lakecdp.cli_args import add_lake_argument, instant, open_lake_for
from lakecdp.config import Settings

_SHOWN = 50


def register(commands: argparse._SubParsersAction) -> None:
    reconcile = commands.add_parser("reconcile", help="compare the online state with a batch recompute from bronze; --fix repairs it")
    add_lake_argument(reconcile)
    reconcile.add_argument("--as-of", type=instant, help="the instant to compare at (default: now); not before the state's last evaluation")
    reconcile.add_argument("--fix", action="store_true", help="rebuild the state from bronze and flush it to Delta when anything differs")
    reconcile.set_defaults(handler=_reconcile)


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import SystemClock
    from lakecdp.online.flow import OnlineState
    from lakecdp.online.reconcile import reconcile
    from lakecdp.online.store import open_store
    from lakecdp.segments import segments_of

    lake = open_lake_for(args, settings)
    store = open_store(settings.state, lake.root)
    try:
        online = OnlineState(lake, settings, store, segments_of(settings))
        result = reconcile(lake, online, args.as_of or SystemClock().now(), fix=args.fix)
    except ValueError as exc:
        print(f"lakecdp: {exc}")
        return 2
    finally:
        store.close()
    for difference in result.differences[:_SHOWN]:
        print(difference)
    if len(result.differences) > _SHOWN:
        print(f"... and {len(result.differences) - _SHOWN:,} more")
    print(result.summary())
    return 1 if result.differences and not result.fixed else 0
