"""The `lakecdp` command: each capability registers its own subcommands."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from lakecdp.config import ConfigError, load_settings
from lakecdp.lake.engine import LakeError
from lakecdp.segments.rules import RuleError
from lakecdp.settings_check import check_sections
from lakecdp.spark.jars import JarResolutionError

# Each module has `register(commands)` adding subparsers whose defaults carry
# `handler(args, settings) -> int`. Modules keep heavy imports (pyspark, sklearn) inside handlers
# so `lakecdp --help` stays fast.
COMMAND_MODULES = (
    "lakecdp.commands",
    "lakecdp.segments.commands",
    "lakecdp.stream.commands",
    "lakecdp.online.commands",
    "lakecdp.triggers.commands",
    "lakecdp.identity.commands",
    "lakecdp.privacy.commands",
    "lakecdp.collector.commands",
    "lakecdp.preferences.commands",
    "lakecdp.importer.commands",
    "lakecdp.enrich.commands",
    "lakecdp.profiles.commands",
    "lakecdp.export.commands",
    "lakecdp.quality.commands",
    "models.commands",
    "lakecdp.content.commands",
    "lakecdp.experiments.commands",
    "lakecdp.observe.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakecdp", description="Lakehouse customer-data pipeline for email personalization.")
    parser.add_argument("--conf", type=Path, help="config folder (default: ./conf or $LAKECDP_CONF_DIR)")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("LAKECDP_LOG_LEVEL", "WARNING"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="lakecdp's own log output on stderr (default: $LAKECDP_LOG_LEVEL or WARNING)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if args.conf:  # the pseudonym key file lives under the chosen conf folder too
            os.environ["LAKECDP_CONF_DIR"] = str(args.conf)
        settings = load_settings(args.conf)
        check_sections(settings)  # every section, before any work: a typo never waits for its first use
        return int(args.handler(args, settings) or 0)
    except (ConfigError, RuleError, LakeError, JarResolutionError) as exc:
        # These already name the file, key, table or jars, and the fix: no traceback needed.
        print(f"lakecdp: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
