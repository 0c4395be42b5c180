"""`lakecdp quality run SUITE [SUITE ...] | checkpoint NAME | list`: the DAG gates, by hand."""

from __future__ import annotations

import argparse
import json
import sys

from lakecdp.cli_args import add_lake_argument, instant, open_lake_for
from lakecdp.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    quality = commands.add_parser("quality", help="data-quality suites (expectations/*.yaml) on lake tables and export batches")
    actions = quality.add_subparsers(dest="quality_command", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        add_lake_argument(parser)
        parser.add_argument("--as-of", type=instant, help="the instant bounds are relative to (default: now)")
        parser.add_argument("--results", help="where results go (default: <lake root>/_quality)")
        parser.add_argument(
            "--destination", "-d", action="append", help="export_batches: only these destinations (default: every enabled one)"
        )
        parser.add_argument("--rebaseline", action="store_true", help="accept today's row count: skip the comparison with the previous run")
        parser.add_argument("--json", action="store_true", help="print the results as JSON")

    run = actions.add_parser("run", help="run suites; exit 1 when any fails, naming the failed expectations")
    run.add_argument("suites", nargs="+", metavar="SUITE")
    common(run)
    run.set_defaults(handler=_run)

    checkpoint = actions.add_parser("checkpoint", help="run a gate's suites (expectations/checkpoints.yaml)")
    checkpoint.add_argument("name")
    common(checkpoint)
    checkpoint.set_defaults(handler=_checkpoint)

    listing = actions.add_parser("list", help="suites, their sources, and the checkpoints using them")
    listing.set_defaults(handler=_list)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    return _report(args, settings, args.suites)


def _checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.config import ConfigError
    from lakecdp.quality.suites import load_checkpoints

    checkpoints = load_checkpoints()
    if args.name not in checkpoints:
        raise ConfigError(f"expectations/checkpoints.yaml: no checkpoint {args.name!r}. Fix: use one of {sorted(checkpoints)}.")
    return _report(args, settings, checkpoints[args.name].suites)


def _report(args: argparse.Namespace, settings: Settings, suites: list[str]) -> int:
    from lakecdp.clock import SystemClock
    from lakecdp.quality.runner import quality_run, run_suite
    from lakecdp.quality.suites import load_suite

    for name in suites:  # a typo fails before Spark starts
        load_suite(name)
    lake = open_lake_for(args, settings)
    run = quality_run(
        lake,
        settings,
        as_of=args.as_of or SystemClock().now(),
        results_root=args.results,
        destinations=args.destination,
        rebaseline=args.rebaseline,
    )
    results = [run_suite(run, name) for name in suites]
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=1, default=str))
    else:
        for result in results:
            print(f"{result.suite}: {'passed' if result.success else 'FAILED'} ({result.row_count} rows; {result.source})")
            for outcome in result.outcomes:
                print(f"  {'ok  ' if outcome.success else 'FAIL'} {outcome.describe()}")
            print(f"  results: {result.paths.get('html')}")
    failed = [r.suite for r in results if not r.success]
    if failed:
        print(f"lakecdp: quality gate failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.quality.suites import (
        expectations_dir,
        load_checkpoints,
        load_suite,
        suite_names,
    )

    checkpoints = load_checkpoints()
    print(f"suites in {expectations_dir()}:")
    for name in suite_names():
        spec = load_suite(name)
        source = f"table {spec.source.table}" if spec.source.table else f"builder {spec.source.builder}"
        used_by = [c for c, cp in checkpoints.items() if name in cp.suites]
        print(f"  {name:<20} {source:<28} {len(spec.expectations):>2} expectations  gates: {', '.join(used_by) or '-'}")
    return 0
