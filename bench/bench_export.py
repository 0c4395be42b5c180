"""Export throughput per destination against its allowed rate, through the real delivery loop.

Each destination's adapter sends generated batches through `lakecdp.export.runner.deliver` (the
loop `export run` uses, with the export_log writes left out) to its contract server on
127.0.0.1, which enforces the documented limit with sliding windows. Printed per destination:
requests/s achieved in steady state (the second half of the run, after any initial burst),
the documented rate, their ratio (target >= 0.90; for Mailchimp, limited by concurrent
connections rather than a rate, the share of the 10 connection slots kept busy), and the
busiest window seen by the server against the documented count (must never exceed it).
Bounded: about 70 s in all.

    .venv/bin/python bench/bench_export.py [--only braze,klaviyo] [--seconds 6]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lakecdp.export.adapters import Runtime, build_adapter
from lakecdp.export.batches import UPSERT, Batch, Member
from lakecdp.export.identifiers import email_sha256, mailchimp_subscriber_hash
from lakecdp.export.runner import deliver
from lakecdp.export.settings import load_esp_settings
from lakecdp.sandbox import BrazeServer, KlaviyoServer, MailchimpServer, SfmcServer, WebhookServer
from lakecdp.sandbox.base import SlidingWindow
from lakecdp.sandbox.scenario import SECRETS, destinations, email_of

NOW = datetime(2026, 11, 1, tzinfo=UTC)
ATTRIBUTES = {"first_name": "Ada", "last_name": "Lovelace", "country": "GB", "city": "London"}


@dataclass
class Case:
    name: str
    server: Callable[[], Any]
    overrides: dict[str, Any]
    documented: list[tuple[int, float]]  # (requests, seconds) the ESP allows; [] = concurrency-bound
    endpoint: Callable[[Any], bool]  # which server requests the limit applies to
    batches: Callable[[float], int]  # how many batches fill the run
    members_per_batch: int
    identifier: Callable[[str], str]
    note: str = ""


def cases(seconds: float) -> list[Case]:
    latency = 0.05
    return [
        Case(
            "mailchimp",
            lambda: MailchimpServer(api_key=SECRETS["LAKECDP_TEST_MAILCHIMP_KEY"], list_id="aud1", latency=latency),
            {"batch_size": 10, "max_in_flight": 10},
            [],
            lambda r: r.method == "POST",
            lambda s: int(10 / latency * s),
            10,
            lambda c: mailchimp_subscriber_hash(email_of(c)),
            note=f"limit: 10 concurrent connections (no request rate); ratio = share of the 10 slots kept busy; "
            f"'allowed' = 10 / {latency * 1000:.0f} ms server time",
        ),
        Case(
            "klaviyo",
            lambda: KlaviyoServer(api_key=SECRETS["LAKECDP_TEST_KLAVIYO_KEY"]),
            {"batch_size": 100},
            [(10, 1.0), (150, 60.0)],
            lambda r: r.method == "POST",
            lambda s: 8 + int(2.5 * s * 2.5),
            100,
            lambda c: c,
            note="bulk_import_profiles: burst 10/s, steady 150/m (x-klaviyo-ratelimit)",
        ),
        Case(
            "braze",
            lambda: BrazeServer(api_key=SECRETS["LAKECDP_TEST_BRAZE_KEY"]),
            {"batch_size": 5, "max_in_flight": 16},
            [(3000, 3.0)],
            lambda r: True,
            lambda s: int(1000 * s),
            5,
            lambda c: c,
            note="/users/track: 3,000 requests per 3 s",
        ),
        Case(
            "braze_scaled",
            lambda: BrazeServer(api_key=SECRETS["LAKECDP_TEST_BRAZE_KEY"], rate_limit=(300, 3.0)),
            {"batch_size": 5, "max_in_flight": 8, "rate_limits": [{"requests": 300, "per": "3s"}]},
            [(300, 3.0)],
            lambda r: True,
            lambda s: int(100 * s * 1.5),
            5,
            lambda c: c,
            note="the same limiter at 300 per 3 s (a rate this machine can serve)",
        ),
        Case(
            "sfmc",
            lambda: SfmcServer(
                client_id=SECRETS["LAKECDP_TEST_SFMC_ID"],
                client_secret=SECRETS["LAKECDP_TEST_SFMC_SECRET"],
                data_extension_key="lakecdp_members",
            ),
            {"batch_size": 50, "max_in_flight": 8},
            [(50, 1.0)],
            lambda r: r.path != "/v2/token",
            lambda s: int(25 * s * 1.3),
            50,
            lambda c: c,
            note="configured 50 req/s (Salesforce documents no fixed rate)",
        ),
        Case(
            "webhook",
            lambda: WebhookServer(secret=SECRETS["LAKECDP_TEST_WEBHOOK_SECRET"], rate_limit=(20, 1.0)),
            {"batch_size": 100, "max_in_flight": 2},
            [(20, 1.0)],
            lambda r: True,
            lambda s: int(20 * s * 1.3),
            100,
            lambda c: email_sha256(email_of(c)),
            note="configured 20 req/s",
        ),
    ]


def make_batches(case: Case, count: int) -> list[Batch]:
    out = []
    for seq in range(count):
        ids = [f"c{seq:05d}{i:03d}" for i in range(case.members_per_batch)]
        members = tuple(Member(c, "create", case.identifier(c), "h", email_of(c), ATTRIBUTES) for c in ids)
        out.append(Batch("bench", case.name, "cart_abandoned_48h", seq, UPSERT, members, planned_at=NOW))
    return out


def busiest_window(times: list[float], limit: int, seconds: float) -> int:
    window = SlidingWindow(10**9, seconds)
    for t in sorted(times):
        window.admit(t)
    return window.peak


def run_case(case: Case, seconds: float) -> dict[str, Any]:
    server = case.server().start()
    try:
        kind = "braze" if case.name.startswith("braze") else case.name
        overrides = {
            **case.overrides,
            "retry": {"base_delay": "50ms", "max_attempts": 6},
            "poll_interval": "10ms",
            "log_flush_batches": 10**6,
        }
        esp = load_esp_settings({"destinations": destinations({kind: server.url}, **{kind: overrides})})
        adapter = build_adapter(kind, esp.destinations[kind], esp.attributes, Runtime(env=SECRETS))
        batches = make_batches(case, case.batches(seconds))
        started = time.monotonic()
        results = deliver(adapter, batches, lambda done: None)
        elapsed = time.monotonic() - started
        arrivals = sorted(r.arrived_at for r in server.requests if case.endpoint(r))
        sent = sum(o.ok for r in results for o in r.outcomes)
        half = arrivals[0] + (arrivals[-1] - arrivals[0]) / 2
        steady = sum(1 for t in arrivals if t > half) / max(arrivals[-1] - half, 1e-9)
        if case.documented:
            allowed = min(n / s for n, s in case.documented)
            windows = [(busiest_window(arrivals, n, s), n, s) for n, s in case.documented]
            ratio = steady / allowed
        else:
            # Concurrency-bound: the share of the 10 allowed connection slots kept busy.
            allowed = 10 / server.latency
            windows = [(server.peak_in_flight, 10, 0.0)]
            ratio = adapter.client.limiter.busy_seconds / (elapsed * 10)
        adapter.close()
        return {
            "destination": case.name,
            "requests": len(arrivals),
            "members_sent": sent,
            "seconds": elapsed,
            "steady_rps": steady,
            "allowed_rps": allowed,
            "ratio": ratio,
            "windows": windows,
            "violations": len(server.violations),
            "note": case.note,
        }
    finally:
        server.stop()


def run_s3(seconds: float) -> dict[str, Any] | None:
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        return None
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        url = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t").create_bucket(
            Bucket="lakecdp-drop"
        )
        esp = load_esp_settings({"destinations": destinations({"s3_drop": url}, s3_drop={"batch_size": 2000, "max_in_flight": 4})})
        adapter = build_adapter("s3_drop", esp.destinations["s3_drop"], esp.attributes, Runtime(env=SECRETS))
        case = Case("s3_drop", lambda: None, {}, [], lambda r: True, lambda s: 0, 2000, lambda c: email_sha256(email_of(c)))
        batches = make_batches(case, max(4, int(3 * seconds)))
        started = time.monotonic()
        results = deliver(adapter, batches, lambda done: None)
        adapter.finish(results)
        elapsed = time.monotonic() - started
        rows = sum(len(r.batch.members) for r in results)
        return {"parts": len(results), "rows": rows, "seconds": elapsed, "rows_per_s": rows / elapsed}
    finally:
        moto.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="target length of each destination's run")
    parser.add_argument("--only", help="comma-separated destinations")
    args = parser.parse_args()
    selected = [c for c in cases(args.seconds) if not args.only or c.name in args.only.split(",")]
    print(
        f"{'destination':<13} {'requests':>8} {'members':>8} {'secs':>6} {'steady req/s':>13} {'allowed':>9} {'ratio':>6}  busiest window / limit"
    )
    for case in selected:
        r = run_case(case, args.seconds)
        windows = ", ".join(f"{peak}/{limit} in {secs:g}s" if secs else f"{peak}/{limit} in flight" for peak, limit, secs in r["windows"])
        flag = "" if r["ratio"] >= 0.9 else "  (below 0.90)"
        print(
            f"{r['destination']:<13} {r['requests']:>8} {r['members_sent']:>8} {r['seconds']:>6.1f} {r['steady_rps']:>13.1f} "
            f"{r['allowed_rps']:>9.1f} {r['ratio']:>6.2f}  {windows}; server violations {r['violations']}{flag}"
        )
        print(f"{'':<13} {r['note']}")
    if not args.only or "s3_drop" in args.only:
        s3 = run_s3(args.seconds)
        if s3:
            print(
                f"{'s3_drop':<13} {s3['parts']:>8} {s3['rows']:>8} {s3['seconds']:>6.1f}  {s3['rows_per_s']:,.0f} rows/s "
                "(moto; S3's 3,500 PUT/s per prefix is not a binding limit here)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
