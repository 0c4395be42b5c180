"""`lakecdp profile show CUSTOMER [--history]`."""

from __future__ import annotations

import argparse

from lakecdp.cli_args import add_lake_argument, customer_key, open_lake_for
from lakecdp.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    profile = commands.add_parser("profile", help="one customer's profile, and how it changed")
    actions = profile.add_subparsers(dest="profile_command", required=True)
    show = actions.add_parser(
        "show", help="the current profile (features, scores, CRM attributes); --history: what changed, when, from which batch and events"
    )
    show.add_argument("customer", help="the retailer's customer id (or its pseudonym)")
    show.add_argument("--history", action="store_true", help="also list the changes over the table's recent versions")
    show.add_argument("--versions", type=int, default=20, help="how many recent versions of profile_features --history reads (default 20)")
    add_lake_argument(show)
    show.set_defaults(handler=_show)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from pyspark.sql import functions as F

    from lakecdp.profiles.history import profile_history
    from lakecdp.profiles.view import profile_view

    lake = open_lake_for(args, settings)
    customer = customer_key(args.customer, lake)
    only = F.col("customer_id") == customer
    profiles, scores, customers = (lake.read(name).filter(only) for name in ("profile_features", "profile_scores", "customers"))
    row = profile_view(profiles, scores, customers, settings.customers.rule_columns).first()
    if row is None:
        print(f"no profile for {customer} (no event of theirs reached profile_features yet)")
        return 1
    values = row.asDict(recursive=True)
    print(f"profile of {customer} as of {values.pop('as_of'):%Y-%m-%d %H:%M:%S} UTC")
    values.pop("customer_id")
    crm = values.pop("customer", None) or {}
    for name, value in crm.items():
        if value is not None:
            print(f"  customer.{name:<28} {value}")
    for name, value in values.items():
        if value is not None:
            print(f"  {name:<37} {value}")
    if args.history:
        changes = profile_history(lake, customer, versions=args.versions)
        print(f"history (the last {args.versions} versions of profile_features): {len(changes)} changes")
        for change in reversed(changes):
            commit = change.commit
            batch = f", batch {commit.batch}" if commit.batch else ""
            print(f"  v{commit.version} {commit.committed_at:%Y-%m-%d %H:%M:%S} UTC {commit.operation}{batch}")
            for name, (before, after) in change.changes.items():
                print(f"      {name}: {before} -> {after}")
            if change.events:
                listed = ", ".join(f"{name} at {at:%m-%d %H:%M:%S}" for at, name in change.events)
                more = f" and {change.more_events} earlier" if change.more_events else ""
                print(f"      after events: {listed}{more}")
    return 0
