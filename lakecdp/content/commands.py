"""`lakecdp content validate|preview|render`, `lakecdp serve` and `lakecdp recs build|evaluate`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lakecdp.cli_args import add_lake_argument, customer_key, instant
from lakecdp.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    content = commands.add_parser("content", help="personalized email content: validate, preview, render")
    actions = content.add_subparsers(dest="content_command", required=True)
    validate = actions.add_parser("validate", help="check conf/base/content.yaml (blocks, templates, targeting, tokens)")
    validate.set_defaults(handler=_validate)

    preview = actions.add_parser("preview", help="render one customer's email to an HTML file and print the chosen blocks")
    preview.add_argument("customer")
    preview.add_argument("--out", type=Path, help="HTML file to write (default: content-<customer>.html)")
    _common(preview)
    preview.set_defaults(handler=_preview)

    render = actions.add_parser("render", help="render emails for several customers: one HTML file each + merge_fields.jsonl")
    render.add_argument("customers", nargs="*", help="customer ids (default: the first --limit customers with a CRM record)")
    render.add_argument("--out", type=Path, required=True, help="folder for the HTML files and merge_fields.jsonl")
    render.add_argument("--limit", type=int, default=20)
    _common(render)
    render.set_defaults(handler=_render)

    audit = actions.add_parser("audit", help="check every block's HTML and CSS against email-client support data (caniemail)")
    audit.add_argument("files", nargs="*", type=Path, help="rendered HTML files to check instead (e.g. the output of `content render`)")
    audit.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    audit.set_defaults(handler=_audit)

    serve = commands.add_parser("serve", help="content API: GET /v1/content/{customer_id} from an in-memory snapshot")
    add_lake_argument(serve)
    serve.add_argument("--host", help="bind address (default: content.api.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: content.api.port)")
    serve.set_defaults(handler=_serve)

    from lakecdp.recs.commands import register as register_recs

    register_recs(commands)


def _common(parser: argparse.ArgumentParser) -> None:
    add_lake_argument(parser)
    parser.add_argument("--at", type=instant, help="decide as of this instant (validity windows; default: now)")


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.content.engine import ContentEngine
    from lakecdp.content.settings import parse_content_settings

    content = parse_content_settings(settings.content)
    ContentEngine(content)  # compiles and dry-renders every template
    for slot, spec in content.slots.items():
        blocks = sorted((n for n, b in content.blocks.items() if b.slot == slot), key=lambda n: -content.blocks[n].priority)
        print(f"ok  slot {slot:<10} blocks {', '.join(blocks)} (fallback {spec.fallback})")
    print(f"ok  {len(content.tokens)} tokens: {', '.join(f'{n} -> {t.merge_field}' for n, t in content.tokens.items())}")
    return 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.content.audit import audit_documents, by_client, content_documents, describe, describe_clients
    from lakecdp.content.caniemail import load_support_data
    from lakecdp.content.engine import ContentEngine
    from lakecdp.content.settings import parse_content_settings

    content = parse_content_settings(settings.content)
    data = load_support_data(content.audit.cache_dir)
    if args.files:
        documents = {str(path): path.read_text(encoding="utf-8") for path in args.files}
    else:
        documents = content_documents(ContentEngine(content))
    findings = audit_documents(documents, data, content.audit)
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    if args.json:
        print(
            json.dumps(
                {
                    "source": data.source,
                    "clients": content.audit.clients,
                    "emails": list(documents),
                    "errors": errors,
                    "warnings": warnings,
                    "findings": [f.as_json() for f in findings],
                    "by_client": by_client(findings),
                },
                indent=2,
            )
        )
    else:
        print(f"{data.source}; {len(content.audit.clients)} clients: {', '.join(content.audit.clients)}")
        for line in [*describe(findings, data, len(documents)), *describe_clients(findings, data, content.audit.clients)]:
            print(line)
        print(f"{'FAIL' if errors else 'ok'}  {errors} errors, {warnings} warnings in {len(documents)} emails")
    return 1 if errors else 0


def _service(args: argparse.Namespace, settings: Settings):
    from lakecdp.clock import FrozenClock, SystemClock
    from lakecdp.content.service import open_content_service

    clock = FrozenClock(args.at) if getattr(args, "at", None) else SystemClock()
    return open_content_service(settings, lake_root=args.lake, clock=clock)


def _preview(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(args, settings)
    args.customer = customer_key(args.customer)
    decision = service.decide(args.customer)
    out = args.out or Path(f"content-{args.customer}.html")
    out.write_text(service.engine.render(decision), encoding="utf-8")
    state = "personalized" if decision.personalized else f"generic ({decision.reason})"
    print(f"{args.customer}: {state}")
    for slot, block in decision.blocks.items():
        print(f"  slot {slot:<10} -> {block}")
    print("  merge fields: " + json.dumps(service.engine.merge_fields(decision), ensure_ascii=False))
    service.log_reads("content preview", args.customer, 1)
    print(f"wrote {out}")
    return 0


def _render(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(args, settings)
    from lakecdp.content.store import NO_CUSTOMER_RECORD

    known = (c for c, context in service.store.snapshot.contexts.items() if context.block_reason != NO_CUSTOMER_RECORD)
    customers = [customer_key(c) for c in args.customers] or sorted(known)[: args.limit]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "merge_fields.jsonl", "w", encoding="utf-8") as fields_file:
        for customer_id in customers:
            decision = service.decide(customer_id)
            (args.out / f"{_safe_name(customer_id)}.html").write_text(service.engine.render(decision), encoding="utf-8")
            fields = {"customer_id": customer_id, **service.engine.merge_fields(decision)}
            fields_file.write(json.dumps(fields, ensure_ascii=False) + "\n")
    service.log_reads("content render", None, len(customers))
    print(f"rendered {len(customers)} emails into {args.out} (+ merge_fields.jsonl)")
    return 0


def _safe_name(customer_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in customer_id)[:100]


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from functools import partial

    import uvicorn

    from lakecdp.content.api import create_app
    from lakecdp.content.service import open_content_service
    from lakecdp.content.settings import parse_content_settings

    api = parse_content_settings(settings.content).api
    ssl = api.tls.uvicorn_options("content.api")  # a missing certificate fails before the snapshot loads
    service = open_content_service(settings, lake_root=args.lake)
    host, port = args.host or api.host, args.port or api.port
    from lakecdp.privacy.roles import resolve_principal

    app = create_app(service, tls=api.tls, principal_of=partial(resolve_principal, settings.access, settings.privacy))
    print(
        f"content API on {api.tls.scheme()}://{host}:{port}/v1/content/{{customer_id}} ({len(service.store.snapshot.contexts):,} customers)",
        file=sys.stderr,
    )
    # Access log off: request lines carry customer ids, and nothing per request is worth a log line.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False, **ssl)
    return 0
