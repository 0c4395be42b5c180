"""What redacting contact data costs the bronze projection (lakecdp.events.contacts).

Generates a landing zone, caches its lines, then times `to_bronze` (written to Spark's noop sink)
with redaction and with it switched off. Prints figures and a JSON line last; asserts nothing.

    .venv/bin/python bench/bench_redact.py [--customers 2000] [--days 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import lakecdp.events.normalize as normalize
from lakecdp.config import load_settings
from lakecdp.events.ingest import read_landing_lines
from lakecdp.generate import GeneratorSettings, write_dataset
from lakecdp.privacy.pseudonyms import Pseudonymizer
from lakecdp.spark import session_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    generated = GeneratorSettings(customers=args.customers, days=args.days, seed=3)
    landing = Path(tempfile.mkdtemp(prefix="lakecdp-bench-redact-"))
    write_dataset(generated, landing, events_per_file=100_000)
    spark = session_for(load_settings())
    lines = read_landing_lines(spark, [str(p) for p in sorted((landing / "events").glob("*.jsonl"))]).cache()
    count = lines.count()
    pseudonyms = Pseudonymizer(b"bench pseudonym key of 32+ bytes!!")

    def projection_seconds() -> float:
        checked = normalize.with_rejection_reason(
            normalize.parse_lines(lines, received_at=generated.end), max_future_skew=timedelta(minutes=5), max_age=timedelta(days=400)
        )
        began = time.perf_counter()
        normalize.to_bronze(checked.filter("reason is null"), pseudonyms).write.format("noop").mode("overwrite").save()
        return time.perf_counter() - began

    redacted = statistics.median(projection_seconds() for _ in range(args.runs))
    normalize.with_contact_data_redacted = lambda rows, **_: rows
    plain = statistics.median(projection_seconds() for _ in range(args.runs))
    print(
        f"{count:,} events: bronze projection {redacted:.2f} s with redaction, {plain:.2f} s without "
        f"(+{(redacted - plain) / count * 1e6:.1f} µs per event)"
    )
    print(
        json.dumps(
            {
                "events": count,
                "with_redaction_s": round(redacted, 2),
                "without_s": round(plain, 2),
                "extra_us_per_event": round((redacted - plain) / count * 1e6, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
