"""`lakecdp privacy erase|process-erasures|access|consent|admin-token`.

erase, process-erasures, access and consent are admin operations: they need the admin token
(--token or $LAKECDP_ADMIN_TOKEN) whose SHA-256 is privacy.admin_token_sha256 in conf.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from lakecdp.cli_args import add_lake_argument, customer_key, open_lake_for
from lakecdp.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    privacy = commands.add_parser("privacy", help="erasure, access requests, consent history (admin token needed)")
    actions = privacy.add_subparsers(dest="privacy_command", required=True)

    def admin(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--token", help="admin token (default: $LAKECDP_ADMIN_TOKEN)")
        add_lake_argument(parser)

    erase = actions.add_parser("erase", help="queue the erasure of a customer (processed by process-erasures)")
    erase.add_argument("customer")
    admin(erase)
    erase.set_defaults(handler=admin_only(_erase))
    process = actions.add_parser("process-erasures", help="erase every queued customer everywhere and record proofs")
    admin(process)
    process.add_argument("--landing", help="landing root (default: landing.root from conf)")
    process.set_defaults(handler=admin_only(_process))
    access = actions.add_parser("access", help="write everything held about a customer as one JSON bundle")
    access.add_argument("customer")
    access.add_argument("--out", type=Path, help="bundle file (default: print to stdout)")
    admin(access)
    access.set_defaults(handler=admin_only(_access))
    consent = actions.add_parser("consent", help="a customer's consent history and current status per purpose")
    consent.add_argument("customer")
    consent.add_argument("--json", action="store_true")
    admin(consent)
    consent.set_defaults(handler=admin_only(_consent))
    requests = actions.add_parser("access-requests", help="data-copy requests from the preference centre, and whether each was answered")
    admin(requests)
    requests.set_defaults(handler=admin_only(_access_requests))
    token = actions.add_parser("admin-token", help="generate an admin token and the digest to configure")
    token.set_defaults(handler=_admin_token)


def admin_only(handler: Callable[[argparse.Namespace, Settings], int]) -> Callable[[argparse.Namespace, Settings], int]:
    """Check the admin token before anything is read or written."""

    def checked(args: argparse.Namespace, settings: Settings) -> int:
        from lakecdp.privacy.access import AdminTokenError, require_admin

        try:
            require_admin(settings.privacy, args.token)
        except AdminTokenError as exc:
            print(f"lakecdp: {exc}", file=sys.stderr)
            return 2
        return handler(args, settings)

    return checked


def _admin_token(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.privacy.access import TOKEN_ENV, new_admin_token

    token, digest = new_admin_token()
    print(f"admin token (give it to the operators; it is not stored anywhere): {token}")
    print("put this in conf/local/privacy.yaml (or LAKECDP__PRIVACY__ADMIN_TOKEN_SHA256):")
    print(f"privacy:\n  admin_token_sha256: {digest}")
    print(f"operators then pass --token or set {TOKEN_ENV}")
    return 0


def _access(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import SystemClock
    from lakecdp.privacy.access import access_bundle

    lake = open_lake_for(args, settings)
    bundle = access_bundle(lake, customer_key(args.customer, lake), SystemClock().now())
    text = json.dumps(bundle, indent=1, sort_keys=True, default=str)
    if args.out:
        args.out.write_text(text)
        tables = ", ".join(f"{name} ({len(rows)})" for name, rows in sorted(bundle["tables"].items())) or "nothing held"
        print(f"access bundle written to {args.out}: {tables}")
    else:
        print(text)
    return 0


def _access_requests(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.privacy.access import access_requests

    requests = access_requests(open_lake_for(args, settings))
    for request in requests:
        answered = f"answered {request['answered_at']:%Y-%m-%d %H:%M}" if request["answered_at"] else "OPEN: run `lakecdp privacy access`"
        print(f"  {request['requested_at']:%Y-%m-%d %H:%M}  {request['customer_id']}  {request['request_id']}  {answered}")
    waiting = sum(1 for r in requests if r["answered_at"] is None)
    print(f"{len(requests)} data-copy request(s), {waiting} open")
    return 0


def _consent(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import SystemClock
    from lakecdp.privacy.consent import consent_report

    lake = open_lake_for(args, settings)
    args.customer = customer_key(args.customer, lake)
    report = consent_report(lake, settings, args.customer, SystemClock().now())
    if args.json:
        print(json.dumps(report, indent=1, default=str))
        return 0
    print(f"consent of {args.customer}")
    for purpose, status in report["current"].items():
        print(f"  {purpose:<16} {status['status']:<10} {status['why']}")
    print("history (oldest first):")
    for fact in report["history"]:
        print(
            f"  {fact['recorded_at']}  {fact['purpose']:<16} {fact['channel']:<6} {fact['status']:<10} {fact['source']}  ({fact['proof']})"
        )
    if not report["history"]:
        print("  no consent fact recorded")
    return 0


def _erase(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import SystemClock
    from lakecdp.privacy.erasure import request_erasure

    lake = open_lake_for(args, settings)
    request_id = request_erasure(lake, customer_key(args.customer, lake), SystemClock().now())
    print(f"erasure request {request_id} queued; run `lakecdp privacy process-erasures`")
    return 0


def _process(args: argparse.Namespace, settings: Settings) -> int:
    import os

    from lakecdp.clock import SystemClock
    from lakecdp.export.adapters import Runtime
    from lakecdp.export.forget import EspEraser
    from lakecdp.export.settings import load_esp_settings
    from lakecdp.privacy.erasure import process_erasures

    clock = SystemClock()
    esp = load_esp_settings(settings.esp, segment_names=[s["name"] for s in settings.segments if "name" in s])
    # Built before Spark starts: a destination whose secret is missing fails here, before anything is deleted.
    with EspEraser(esp, Runtime(env=os.environ, clock=clock)) as forget:
        lake = open_lake_for(args, settings)
        from lakecdp.online.store import open_store_if_online

        state = open_store_if_online(settings, lake.root)
        proofs = process_erasures(
            lake, args.landing or settings.landing.root, clock.now(), forget=forget, state=state, retention=settings.landing.retention
        )
    for proof in proofs:
        esps = ", ".join(f"{name}: {outcome}" for name, outcome in sorted((proof.esp_outcomes or {}).items())) or "none enabled"
        print(
            f"{proof.request_id}: {sum(proof.rows_deleted.values())} rows in {len(proof.rows_deleted)} tables, "
            f"{proof.landing_lines_deleted} landing lines; ESPs {esps}"
        )
    print(f"{len(proofs)} erasure(s) processed")
    waiting = lake.read("erasure_requests").count()
    if waiting:
        print(f"{waiting} erasure(s) still queued (an ESP deletion failed, see the warnings); rerun process-erasures")
        return 1
    return 0
