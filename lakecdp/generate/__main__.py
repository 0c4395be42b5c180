"""`python -m lakecdp.generate --customers N --days D --seed S --out DIR`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from lakecdp.generate.settings import GeneratorSettings
from lakecdp.generate.writer import write_dataset

DEFAULTS = GeneratorSettings()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lakecdp.generate",
        description="Write a seeded synthetic e-commerce dataset (Segment events + truth + CRM + catalog).",
    )
    parser.add_argument("--customers", type=int, default=DEFAULTS.customers)
    parser.add_argument("--days", type=int, default=DEFAULTS.days)
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    parser.add_argument(
        "--end",
        type=_utc_datetime,
        default=DEFAULTS.end,
        help="dataset 'now', ISO-8601 (UTC if no offset); default %(default)s",
    )
    parser.add_argument("--anonymous-share", type=float, default=DEFAULTS.anonymous_share)
    parser.add_argument("--events-per-file", type=int, default=50_000)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    return parser.parse_args(argv)


def _utc_datetime(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = GeneratorSettings(
            customers=args.customers,
            days=args.days,
            seed=args.seed,
            end=args.end,
            anonymous_share=args.anonymous_share,
        )
    except ValueError as error:
        raise SystemExit(f"lakecdp.generate: {error}") from error
    summary = write_dataset(settings, args.out, events_per_file=args.events_per_file)
    # Counts only: the dataset holds (synthetic) emails and names, which never go to logs.
    counts = ", ".join(f"{name}={count}" for name, count in summary.by_event.items())
    print(
        f"wrote {summary.events} events for {summary.customers} customers "
        f"({settings.days} days to {settings.end.isoformat()}, seed {settings.seed}) "
        f"in {len(summary.files)} files under {args.out}: {counts}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
