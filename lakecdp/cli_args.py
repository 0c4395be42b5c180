"""Argument types and helpers shared by every `lakecdp` subcommand."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from lakecdp.config import Settings


def instant(text: str) -> datetime:
    """An ISO-8601 instant with a zone ('2026-11-01T00:00:00Z' or '+00:00'); a bare date means 00:00 UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 date or time, e.g. 2026-11-01T00:00:00Z") from None
    if len(text) == 10:
        return value.replace(tzinfo=UTC)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone, e.g. 2026-11-01T00:00:00Z")
    return value.astimezone(UTC)


def customer_key(value: str, lake=None) -> str:
    """A customer id as the retailer knows it (or a pseudonym) -> the pseudonym the lake is keyed by.

    With `lake`, the key is first checked against the lake's fingerprint: a wrong key fails
    instead of naming a customer nobody has (an erasure would otherwise erase nothing).
    """
    from lakecdp.privacy.pseudonyms import load_pseudonymizer

    pseudonyms = lake.pseudonyms if lake is not None else load_pseudonymizer()
    return pseudonyms.of(value.strip())


def add_lake_argument(parser: argparse.ArgumentParser, *, also: str = "") -> None:
    """`--lake`, the one declaration every subcommand that reads or writes the lake shares."""
    parser.add_argument("--lake", help="lake root (default: lake.root from conf)" + (f"; {also}" if also else ""))


def open_lake_for(args: argparse.Namespace, settings: Settings):
    """The configured lake (root overridden by --lake) on the process's one SparkSession."""
    from lakecdp.lake import lake_for

    return lake_for(settings, root=getattr(args, "lake", None))
