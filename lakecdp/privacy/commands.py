"""`lakecdp privacy erase|process-erasures|access|consent|admin-token` and `lakecdp access new-token|roles|whoami`.

erase, process-erasures, access and consent need scope privacy:admin (lakecdp/cli_scopes.py),
which the CLI checks before the handler runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lakecdp.cli_args import add_lake_argument, customer_key, open_lake_for
from lakecdp.config import Settings
from lakecdp.privacy.roles import LOCAL_ROLE, LOCAL_SCOPES, ROLES, TOKEN_ENV, current_principal, new_token


def register(commands: argparse._SubParsersAction) -> None:
    privacy = commands.add_parser("privacy", help="erasure, access requests, consent history (scope privacy:admin)")
    actions = privacy.add_subparsers(dest="privacy_command", required=True)
    erase = actions.add_parser("erase", help="queue the erasure of a customer (processed by process-erasures)")
    erase.add_argument("customer")
    add_lake_argument(erase)
    erase.set_defaults(handler=_erase)
    process = actions.add_parser("process-erasures", help="erase every queued customer everywhere and record proofs")
    add_lake_argument(process)
    process.add_argument("--landing", help="landing root (default: landing.root from conf)")
    process.set_defaults(handler=_process)
    access = actions.add_parser("access", help="write everything held about a customer as one JSON bundle")
    access.add_argument("customer")
    access.add_argument("--out", type=Path, help="bundle file (default: print to stdout)")
    add_lake_argument(access)
    access.set_defaults(handler=_access)
    consent = actions.add_parser("consent", help="a customer's consent history and current status per purpose")
    consent.add_argument("customer")
    consent.add_argument("--json", action="store_true")
    add_lake_argument(consent)
    consent.set_defaults(handler=_consent)
    requests = actions.add_parser("access-requests", help="data-copy requests from the preference centre, and whether each was answered")
    add_lake_argument(requests)
    requests.set_defaults(handler=_access_requests)
    token = actions.add_parser("admin-token", help="deprecated: use `lakecdp access new-token --role admin`")
    token.set_defaults(handler=_admin_token)

    access_tokens = commands.add_parser("access", help="roles and scoped tokens: create a token, list roles, check a token")
    tokens = access_tokens.add_subparsers(dest="access_command", required=True)
    new = tokens.add_parser("new-token", help="create a token for a role: prints it once, and the conf line holding its digest")
    new.add_argument("--role", required=True, choices=list(ROLES))
    new.add_argument("--name", required=True, help="who holds it (recorded as the actor in pii_access_log)")
    new.set_defaults(handler=_new_token)
    tokens.add_parser("roles", help="each role and the scopes it holds").set_defaults(handler=_roles)
    tokens.add_parser("whoami", help="the name, role and scopes of --token / $LAKECDP_TOKEN").set_defaults(handler=_whoami)


def _new_token(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from lakecdp.config import ConfigError
    from lakecdp.config.models import AccessToken

    token, digest = new_token()
    try:  # the name's shape fails here, not at the next load
        entry = AccessToken(name=args.name, role=args.role, sha256=digest)
    except ValidationError:
        raise ConfigError(f"--name {args.name!r}: 1-64 letters, digits, '.', '_', '@' or '-', e.g. ann.lee") from None
    print(f"token for {entry.name} ({entry.role}); shown once, not stored anywhere: {token}")
    print("add this entry under access.tokens in conf/local/access.yaml:")
    print(f"  - {{name: {entry.name}, role: {entry.role}, sha256: {entry.sha256}}}")
    print(f"the holder passes --token or sets ${TOKEN_ENV}")
    return 0


def _admin_token(args: argparse.Namespace, settings: Settings) -> int:
    token, digest = new_token()
    print("deprecated: prefer `lakecdp access new-token --role admin --name NAME` (a named token the access log can tell apart)")
    print(f"admin token (give it to the operators; it is not stored anywhere): {token}")
    print("put this in conf/local/privacy.yaml (or LAKECDP__PRIVACY__ADMIN_TOKEN_SHA256):")
    print(f"privacy:\n  admin_token_sha256: {digest}")
    print(f"operators then pass --token or set ${TOKEN_ENV}")
    return 0


def _roles(args: argparse.Namespace, settings: Settings) -> int:
    for role, scopes in ROLES.items():
        print(f"  {role:<16} {', '.join(sorted(scopes))}")
    print(f"  {LOCAL_ROLE:<16} {', '.join(sorted(LOCAL_SCOPES))}  (no token while access.tokens is empty)")
    return 0


def _whoami(args: argparse.Namespace, settings: Settings) -> int:
    principal = current_principal()
    print(f"{principal.name or '(unnamed)'}: role {principal.role}; scopes {', '.join(sorted(principal.scopes)) or 'none'}")
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
