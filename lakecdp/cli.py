"""The `lakecdp` command: each capability registers its own subcommands."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from lakecdp.cli_scopes import COMMAND_SCOPES
from lakecdp.config import ConfigError, Settings, load_settings
from lakecdp.lake.engine import LakeError
from lakecdp.privacy.roles import (
    TOKEN_ENV,
    AccessDenied,
    Principal,
    acting_as,
    authorize,
    calling_principal,
    presented_token,
    resolve_principal,
)
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
    for path, leaf in leaf_commands(parser):
        # Declared here once for every command, so each capability's register() need not.
        leaf.add_argument("--token", help=f"access token (default: ${TOKEN_ENV}); see `lakecdp access roles`")
        leaf.set_defaults(command_path=path)
    return parser


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every runnable command as ("privacy erase", its parser), depth first."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups and path:
        yield " ".join(path), parser
    for group in groups:
        for name, child in group.choices.items():
            yield from leaf_commands(child, (*path, name))


def authorized(args: argparse.Namespace, settings: Settings) -> Principal:
    """The caller behind --token / $LAKECDP_TOKEN, checked against the scope the command declares."""
    outer = calling_principal()
    if outer is not None and args.token is None:
        principal = outer  # a command another runs in-process (the demo's steps) runs as that one's caller
    else:
        principal = resolve_principal(settings.access, settings.privacy, presented_token(args.token))
    if principal.legacy and outer is None:
        logging.getLogger(__name__).warning(
            "privacy.admin_token_sha256 and $LAKECDP_ADMIN_TOKEN are deprecated: create a role token with "
            "`lakecdp access new-token --role admin --name NAME` and list it under access.tokens"
        )
    needed = COMMAND_SCOPES.get(args.command_path)
    if needed is None:  # fail closed; tests/unit/test_roles.py keeps this from shipping
        raise AccessDenied(f"`lakecdp {args.command_path}` declares no scope. Fix: add it to lakecdp/cli_scopes.py", 403)
    authorize(principal, needed, f"`lakecdp {args.command_path}`")
    return principal


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if args.conf:  # the pseudonym key file lives under the chosen conf folder too
            os.environ["LAKECDP_CONF_DIR"] = str(args.conf)
        settings = load_settings(args.conf)
        check_sections(settings)  # every section, before any work: a typo never waits for its first use
        with acting_as(authorized(args, settings)):
            return int(args.handler(args, settings) or 0)
    except (ConfigError, RuleError, LakeError, JarResolutionError, AccessDenied) as exc:
        # These already name the file, key, table or jars, and the fix: no traceback needed.
        print(f"lakecdp: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
