"""`lakecdp status [--json]` and `lakecdp report --out report.html`: read the lake through delta-rs, never start Spark."""

from __future__ import annotations

import argparse
from pathlib import Path

from lakecdp.cli_args import add_lake_argument
from lakecdp.config import Settings

STATUS_HELP = (
    "the pipeline on one screen: stream running or not (heartbeat), last micro-batch, lag and p95 batch duration over "
    "the last hour; rows and last write per table (from the Delta log); champion models with AUC and drift; the last "
    "export per destination; the latest quality gate results; pending triggers. Reads the lake with delta-rs (no Spark)."
)
REPORT_HELP = (
    "write one self-contained HTML page (inline SVG plots, no network): stream lag and batch latency, events and "
    "quarantine reasons, segment sizes, churn and overlaps, model ROC, calibration, lift, cluster profiles and drift, "
    "export outcomes and rates, quality gates, experiment lifts with confidence intervals. Counts only, no customer ids."
)


def register(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser("status", help="the pipeline's health on one screen (or --json)", description=STATUS_HELP)
    add_lake_argument(status)
    status.add_argument("--json", action="store_true", help="print one JSON object with the same facts")
    status.set_defaults(handler=_status)

    report = commands.add_parser(
        "report", help="an HTML report of the lake: stream, events, segments, models, exports, gates, experiments", description=REPORT_HELP
    )
    report.add_argument("--out", type=Path, default=Path("report.html"), help="the HTML file to write (default: report.html)")
    add_lake_argument(report)
    report.set_defaults(handler=_report)


def lake_view(settings: Settings, lake_root: str | None):
    from lakecdp.observe.lakeview import LakeView
    from models.settings import parse_model_settings

    return LakeView(
        lake_root or settings.lake.root, settings.lake.storage_options, registry_root=parse_model_settings(settings.models).registry_root
    )


def allowed_rates(settings: Settings) -> dict[str, float | None]:
    """Each ESP destination's strictest documented rate limit in requests per second (None: it documents none)."""
    from lakecdp.export.settings import load_esp_settings

    esp = load_esp_settings(settings.esp)
    return {name: min((limit.per_second for limit in d.rate_limits), default=None) for name, d in esp.destinations.items()}


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import SystemClock
    from lakecdp.observe.status import collect_status, format_status, status_json

    status = collect_status(lake_view(settings, args.lake), SystemClock())
    print(status_json(status) if args.json else format_status(status))
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import SystemClock
    from lakecdp.observe.report import render_report

    page = render_report(lake_view(settings, args.lake), SystemClock(), allowed_rates(settings))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page, encoding="utf-8")
    print(f"wrote {args.out} ({len(page.encode()) / 1024:.0f} KB)")
    return 0
