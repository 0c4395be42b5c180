"""`lakecdp experiments list|assign|materialize|holdout|plan|report`."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from lakecdp.cli_args import add_lake_argument, customer_key, instant, open_lake_for
from lakecdp.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    experiments = commands.add_parser("experiments", help="A/B experiments: assignment, global holdout, planning, reports")
    actions = experiments.add_subparsers(dest="experiments_command", required=True)

    listing = actions.add_parser("list", help="the experiments in conf/base/experiments.yaml")
    listing.set_defaults(handler=_list)

    assign = actions.add_parser("assign", help="print customers' variants (deterministic; no lake writes)")
    assign.add_argument("experiment")
    assign.add_argument("customers", nargs="+")
    _lake_args(assign)
    assign.set_defaults(handler=_assign)

    materialize = actions.add_parser("materialize", help="persist every customer's variant in experiment_assignments (before a send)")
    materialize.add_argument("experiment")
    _lake_args(materialize)
    materialize.set_defaults(handler=_materialize)

    holdout = actions.add_parser("holdout", help="the stratified global holdout")
    holdout_actions = holdout.add_subparsers(dest="holdout_command", required=True)
    draw = holdout_actions.add_parser("draw", help="draw (or extend) the current epoch's holdout and persist it")
    _lake_args(draw)
    draw.set_defaults(handler=_draw)

    plan = actions.add_parser("plan", help="customers per arm to detect a relative lift")
    plan.add_argument("--baseline", type=float, required=True, help="control rate (e.g. 0.03) or mean revenue per customer")
    plan.add_argument("--mde", type=float, required=True, help="relative lift to detect, e.g. 0.1 for +10%%")
    plan.add_argument("--sd", type=float, help="standard deviation: plan for a mean (revenue) instead of a rate")
    plan.add_argument("--alpha", type=float, default=0.05)
    plan.add_argument("--power", type=float, default=0.8)
    plan.set_defaults(handler=_plan)

    report = actions.add_parser("report", help="open/click/conversion/revenue per variant, tests, lifts, HTML report")
    report.add_argument("experiment")
    report.add_argument("--out", type=Path, help="HTML report (default: experiment-<name>.html)")
    _lake_args(report)
    report.set_defaults(handler=_report)


def _lake_args(parser: argparse.ArgumentParser) -> None:
    add_lake_argument(parser)
    parser.add_argument("--at", type=instant, help="the instant (holdout epoch, assigned_at; default: now)")


def _now(args: argparse.Namespace) -> datetime:
    from lakecdp.clock import SystemClock

    return args.at or SystemClock().now()


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.experiments.settings import parse_experiment_settings

    experiments = parse_experiment_settings(settings.experiments)
    share = experiments.global_holdout
    print(
        f"global holdout: {share.share:.1%}, stratified by {share.stratify_by}, re-drawn every {share.redraw_every.days} days from {share.anchor:%Y-%m-%d}"
    )
    for name, spec in experiments.definitions.items():
        variants = ", ".join(f"{v} {w:g}" for v, w in spec.variants.items())
        print(f"  {name:<28} {variants}; holdout {spec.holdout:.0%}; primary {spec.primary_metric}  {spec.description}")
    return 0


def _assigner(args: argparse.Namespace, settings: Settings):
    from lakecdp.experiments.assign import load_assigner

    return load_assigner(settings, at=_now(args), lake_root=args.lake)


def _assign(args: argparse.Namespace, settings: Settings) -> int:
    assigner = _assigner(args, settings)
    for customer_id in args.customers:
        print(f"{customer_id}\t{assigner.assign(args.experiment, customer_key(customer_id))}")
    return 0


def _materialize(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.experiments.jobs import materialize_assignments

    assigner = _assigner(args, settings)
    counts = materialize_assignments(open_lake_for(args, settings), assigner, args.experiment, at=_now(args))
    print(f"{args.experiment}: " + ", ".join(f"{variant} {n:,}" for variant, n in sorted(counts.items())))
    return 0


def _draw(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.experiments.jobs import draw_global_holdout
    from lakecdp.experiments.settings import parse_experiment_settings

    experiments = parse_experiment_settings(settings.experiments)
    epoch, mode, balance = draw_global_holdout(open_lake_for(args, settings), experiments, at=_now(args))
    print(f"global holdout epoch {epoch} (stratified by {mode}): {balance.line()}")
    return 0


def _plan(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.experiments.stats import sample_size_means, sample_size_proportions

    if args.sd is not None:
        n = sample_size_means(args.baseline, args.sd, args.mde, args.alpha, args.power)
        what = f"mean {args.baseline:g} (sd {args.sd:g})"
    else:
        n = sample_size_proportions(args.baseline, args.mde, args.alpha, args.power)
        what = f"rate {args.baseline:.2%}"
    print(f"{n:,} customers per arm to detect {args.mde:+.0%} on a {what} (alpha {args.alpha}, power {args.power}, two-sided)")
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.experiments.jobs import analyse
    from lakecdp.experiments.report import render_html
    from lakecdp.observe.lakeview import EXPERIMENTS_FOLDER
    from lakecdp.quality.results import ResultStore

    lake = open_lake_for(args, settings)
    report = analyse(lake, _assigner(args, settings), args.experiment)
    out = args.out or Path(f"experiment-{args.experiment}.html")
    out.write_text(render_html(report), encoding="utf-8")
    # Kept beside the lake too, so `lakecdp report` shows the lifts without re-running the analysis.
    kept = ResultStore(f"{lake.root.rstrip('/')}/{EXPERIMENTS_FOLDER}", lake.storage_options).write_text(
        f"{args.experiment}.json", json.dumps(report.to_dict(), indent=2, sort_keys=True)
    )
    print("\n".join(report.lines()))
    print(f"\nwrote {out} and {kept}")
    return 0
