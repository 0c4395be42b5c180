"""`lakecdp export plan|run|status|sync-unsubscribes`."""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from lakecdp.cli_args import add_lake_argument, instant, open_lake_for
from lakecdp.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="segment exports to ESPs (Mailchimp, Klaviyo, Braze, SFMC, S3, webhook)")
    actions = export.add_subparsers(dest="export_command", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--destination",
            "-d",
            action="append",
            help="destination name from conf/base/esp.yaml (repeatable; default: every enabled one)",
        )
        add_lake_argument(parser)
        parser.add_argument(
            "--membership-version",
            type=int,
            metavar="N",
            help="plan from this version of segment_membership (the one a quality gate validated; default: latest)",
        )

    plan = actions.add_parser("plan", help="dry run: the creates, updates and removes a run would send (sends nothing)")
    common(plan)
    plan.add_argument("--full", action="store_true", help="plan a full refresh instead of the diff")
    plan.add_argument("--json", action="store_true", help="print every change (customer ids, no addresses) as JSON")
    plan.set_defaults(handler=_plan)

    run = actions.add_parser("run", help="export the diff since the last successful export (resumes unfinished batches first)")
    common(run)
    run.add_argument("--full", action="store_true", help="resend every member, not only what changed")
    run.add_argument("--report", type=Path, help="also write the run report as JSON to this file")
    run.set_defaults(handler=_run)

    status = actions.add_parser("status", help="export_log per destination, segment and run: sent, failed, pending")
    common(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    sync = actions.add_parser(
        "sync-unsubscribes",
        help="record unsubscribes (as Unsubscribed events) and bounces (as suppressions) from Mailchimp, Klaviyo, Braze or SFMC",
        description="Reads the marketing-email unsubscribes and hard bounces of Mailchimp, Klaviyo, Braze and SFMC "
        "destinations (default: every enabled one of those types). People are matched by the id the export sent, or by "
        "a hash of the address computed locally; no address is logged.",
    )
    common(sync)
    sync.add_argument(
        "--since",
        type=instant,
        help="only changes since this ISO-8601 date or instant (Braze reads whole UTC days; SFMC held addresses are always read)",
    )
    sync.set_defaults(handler=_sync)


def _context(args: argparse.Namespace, settings: Settings) -> tuple[Any, Any, Any]:
    from lakecdp.clock import SystemClock
    from lakecdp.export.adapters import Runtime
    from lakecdp.export.settings import load_esp_settings

    esp = load_esp_settings(settings.esp, segment_names=[s["name"] for s in settings.segments if "name" in s])
    esp.enabled(args.destination)  # unknown names fail before Spark starts
    lake = open_lake_for(args, settings)
    return esp, lake, Runtime(env=os.environ, clock=SystemClock())


def _plan(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.export.runner import export_runner

    esp, lake, runtime = _context(args, settings)
    runner = export_runner(settings, lake, esp, runtime, membership_version=args.membership_version)
    plans = runner.plan(args.destination, full=args.full)
    if args.json:
        print(json.dumps({"changes": [c for p in plans for c in p.changes()]}, indent=1))
        return 0
    print("export plan (dry run: nothing sent)" + (" - full refresh" if args.full else ""))
    for plan in plans:
        counts = Counter((c["segment"], c["action"], c["resumed"]) for c in plan.changes())
        segments = sorted({s for s, _ in plan.skipped} | {b.segment for b in plan.batches + plan.resumed} | set(plan.held))
        if not segments:
            print(f"  {plan.name:<12} nothing to send")
        for segment in segments:
            new = "/".join(str(counts.get((segment, a, False), 0)) for a in ("create", "update", "remove"))
            resumed = sum(n for (s, _, r), n in counts.items() if s == segment and r)
            batches = sum(1 for b in plan.batches if b.segment == segment)
            skipped = sum(n for (s, _), n in plan.skipped.items() if s == segment)
            print(
                f"  {plan.name:<12} {segment:<26} create/update/remove {new:<14} in {batches} batches; "
                f"resume {resumed}; skipped (consent/data) {skipped}; held {plan.held.get(segment, 0)}"
            )
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.export.runner import export_runner

    esp, lake, runtime = _context(args, settings)
    runner = export_runner(settings, lake, esp, runtime, membership_version=args.membership_version)
    report = runner.run(args.destination, full=args.full)
    print(report.format())
    if args.report:
        args.report.write_text(report.to_json())
    return 0 if report.ok else 1


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from pyspark.sql import functions as F

    from lakecdp.export.log import ExportLog
    from lakecdp.export.report import summarize_log

    esp, lake, runtime = _context(args, settings)
    effective = ExportLog(lake, runtime.clock).effective()
    if args.destination:
        effective = effective.filter(F.col("destination").isin(args.destination))
    rows = summarize_log(effective)
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    if not rows:
        print("no exports recorded yet")
    for r in rows:
        print(
            f"  {r['destination']:<12} {r['segment']:<26} run {r['run_id']}  sent {r['sent']:<6} failed {r['failed']:<5} "
            f"pending {r['pending']} ({r['pending_batches']} batches)"
        )
        for reason, n in sorted(r["failed_by_reason"].items(), key=lambda kv: -kv[1])[:5]:
            print(f"      failed {n:>6}  {reason}")
    return 0


def _sync(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.export.unsubscribes import OPT_OUT_TYPES, sync_unsubscribes

    esp, lake, runtime = _context(args, settings)
    names = args.destination or [n for n, d in esp.destinations.items() if d.type in OPT_OUT_TYPES and d.enabled]
    for name in names:
        result = sync_unsubscribes(lake, esp, name, runtime, events=settings.events, since=args.since)
        print(
            f"  {name}: {result.unsubscribed} unsubscribed and {result.bounced} bounced at the ESP, "
            f"{result.matched} matched to customers; {result.events_added} new Unsubscribed events, "
            f"{result.suppressions_added} new suppressions"
        )
    return 0
