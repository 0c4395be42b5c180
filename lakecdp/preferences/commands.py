"""`lakecdp preferences link`: mint a customer's preference-centre link (support, tests, a mail merge)."""

from __future__ import annotations

import argparse
import os
import sys

from lakecdp.config import ConfigError, Settings


def register(commands: argparse._SubParsersAction) -> None:
    preferences = commands.add_parser("preferences", help="the preference centre (signed links to a customer's privacy choices)")
    actions = preferences.add_subparsers(dest="preferences_command", required=True)
    link = actions.add_parser("link", help="print a signed, expiring preference-centre URL for a customer")
    link.add_argument("customer", help="the retailer's customer id (or the lake's pseudonym)")
    link.add_argument("--valid-for", help="how long the link works, e.g. 7d (default: preferences.valid_for)")
    link.add_argument("--base-url", help="the collector's public address (default: collector.public_url)")
    link.set_defaults(handler=_link)


def _link(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.cli_args import customer_key
    from lakecdp.clock import SystemClock
    from lakecdp.collector.settings import load_collector_settings
    from lakecdp.config.durations import parse_duration
    from lakecdp.preferences.settings import load_preferences_settings, resolve_secret
    from lakecdp.preferences.tokens import PreferenceLinkError, new_link, preference_url, sign_link

    collector = load_collector_settings(settings.collector)
    preferences = load_preferences_settings(settings.preferences)
    secret = resolve_secret(preferences, collector, os.environ)
    if secret is None:
        raise ConfigError(f"${preferences.secret_variable(collector)} is not set. Fix: export it (the secret the collector runs with).")
    try:
        valid_for = parse_duration(args.valid_for) if args.valid_for else preferences.valid_for
        link = new_link(customer_key(args.customer), now=SystemClock().now(), valid_for=valid_for)
        url = preference_url(args.base_url or collector.base_url(), sign_link(link, secret))
    except (PreferenceLinkError, ValueError) as exc:
        print(f"lakecdp: {exc}", file=sys.stderr)
        return 2
    print(url)
    print(f"link {link.link_id}, valid until {link.expires_at:%Y-%m-%d %H:%M} UTC", file=sys.stderr)
    return 0
