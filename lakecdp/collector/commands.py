"""`lakecdp collect serve|revoke|restore|revoked|link`."""

from __future__ import annotations

import argparse
import logging
import os

from lakecdp.config import ConfigError, Settings


def register(commands: argparse._SubParsersAction) -> None:
    collect = commands.add_parser("collect", help="the event collector (Segment HTTP API, email pixel and click links)")
    actions = collect.add_subparsers(dest="collect_command", required=True)

    serve = actions.add_parser("serve", help="accept events over HTTP into the landing zone")
    serve.add_argument("--host", help="bind address (default: collector.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: collector.port)")
    serve.add_argument("--events-dir", help="landing folder (default: collector.events_dir or <landing.root>/events)")
    serve.set_defaults(handler=_serve)

    for name, helps in (
        ("revoke", "reject a source's write key from now on (the running collector sees it within a second)"),
        ("restore", "accept a revoked source's write key again"),
    ):
        action = actions.add_parser(name, help=helps)
        action.add_argument("source", help="source name from collector.sources")
        if name == "revoke":
            action.add_argument("--reason", default="revoked by an operator", help="kept with the revocation (no secrets)")
        action.set_defaults(handler=_revocation)
    revoked = actions.add_parser("revoked", help="list revoked sources")
    revoked.set_defaults(handler=_list_revoked)

    link = actions.add_parser("link", help="print a signed open-pixel URL and, with --url, a click URL")
    link.add_argument("--customer-id", required=True)
    link.add_argument("--campaign-id", required=True)
    link.add_argument("--email-id", required=True)
    link.add_argument("--url", help="click target (absolute http(s) URL)")
    link.add_argument("--base-url", help="collector address in the links (default: collector.public_url)")
    link.set_defaults(handler=_link)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.collector.server import build_app, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app, collector = build_app(settings, events_dir_override=args.events_dir)
    serve(app, host=args.host or collector.host, port=args.port or collector.port, tls=collector.tls)
    return 0


def _revocations(settings: Settings):
    from lakecdp.collector.revocations import Revocations
    from lakecdp.collector.server import revocations_path
    from lakecdp.collector.settings import load_collector_settings

    collector = load_collector_settings(settings.collector)
    return collector, Revocations(revocations_path(settings, collector))


def _revocation(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import SystemClock

    collector, revocations = _revocations(settings)
    if args.source not in collector.sources:
        raise ConfigError(f"collector.sources has no source '{args.source}'. Fix: use one of {sorted(collector.sources)}.")
    if args.collect_command == "revoke":
        revocations.revoke(args.source, reason=args.reason, at=SystemClock().now())
        print(f"revoked source '{args.source}': its write key gets 401 from now on ({revocations.path})")
    elif revocations.restore(args.source):
        print(f"restored source '{args.source}'")
    else:
        print(f"source '{args.source}' was not revoked")
    return 0


def _list_revoked(args: argparse.Namespace, settings: Settings) -> int:
    _, revocations = _revocations(settings)
    entries = revocations.entries()
    if not entries:
        print("no revoked sources")
    for source, entry in sorted(entries.items()):
        print(f"  {source:<20} revoked {entry['revoked_at']}  {entry.get('reason', '')}")
    return 0


def _link(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.collector.links import LinkError, open_pixel_url, sign_click_url
    from lakecdp.collector.settings import load_collector_settings, resolve_link_secret

    collector = load_collector_settings(settings.collector)
    secret = resolve_link_secret(collector, os.environ)
    if secret is None:
        raise ConfigError(f"${collector.link_secret_env} is not set. Fix: export it (the same secret the collector runs with).")
    base = args.base_url or collector.base_url()
    ids = {"customer_id": args.customer_id, "campaign_id": args.campaign_id, "email_id": args.email_id}
    try:
        print(f"open pixel: {open_pixel_url(base, secret=secret, **ids)}")
        if args.url:
            print(f"click:      {sign_click_url(base, secret=secret, target_url=args.url, **ids)}")
    except LinkError as exc:
        print(f"lakecdp: {exc}")
        return 2
    return 0
