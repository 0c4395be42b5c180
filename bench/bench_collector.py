"""Sustained events/s through the collector: batch calls from a few client threads on loopback.

Runs `lakecdp collect serve` as its own process on 127.0.0.1 (so the clients do not share
its GIL), sends for a bounded time and count, and prints figures: events/s, requests/s,
latency percentiles, and fsyncs per request (group commit). Every 200 means fsynced.

    .venv/bin/python bench/bench_collector.py [--seconds 10] [--threads 4] [--batch 100]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
KEY = "bench-write-key"


def event_json(n: int) -> str:
    # Formatted, not json.dumps: the clients' CPU should go to sending, not encoding.
    return (
        f'{{"type":"track","event":"Product Viewed","userId":"cust_{n % 5000:06d}",'
        f'"messageId":"{uuid.uuid4()}","timestamp":"2026-11-01T10:00:00.000Z",'
        f'"properties":{{"product_id":"p_{n % 300}","category":"shoes","price":59.5,'
        f'"url":"https://shop.example.com/p/{n % 300}"}},'
        f'"context":{{"device":{{"type":"mobile"}},"library":{{"name":"bench","version":"0"}}}}}}'
    )


def body(batch: int, start: int, endpoint: str) -> bytes:
    if endpoint == "track":
        return event_json(start).encode()
    return ('{"batch":[' + ",".join(event_json(start + i) for i in range(batch)) + "]}").encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(endpoint: str, *, seconds: float, threads: int, batch: int, max_events: int, events_dir: Path) -> dict:
    port = free_port()
    env = {**os.environ, "LAKECDP_WRITE_KEY": KEY}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lakecdp.cli",
            "--conf",
            str(REPO / "conf"),
            "collect",
            "serve",
            "--port",
            str(port),
            "--events-dir",
            str(events_dir),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url)
        per_request = 1 if endpoint == "track" else batch
        latencies: list[float] = []
        sent = [0]
        failures = [0]
        lock = threading.Lock()
        deadline = time.monotonic() + seconds

        def client(worker: int) -> None:
            n = worker * 10_000_000
            with httpx.Client() as session:
                session.auth = (KEY, "")
                while time.monotonic() < deadline:
                    with lock:
                        if sent[0] >= max_events:
                            return
                        sent[0] += per_request
                    data = body(batch, n, endpoint)
                    n += per_request
                    started = time.perf_counter()
                    response = session.post(f"{url}/v1/{endpoint}", content=data, headers={"Content-Type": "application/json"}, timeout=30)
                    elapsed = time.perf_counter() - started
                    with lock:
                        if response.status_code == 200:
                            latencies.append(elapsed)
                        else:
                            failures[0] += 1

        workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
        began = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        wall = time.perf_counter() - began
        health = httpx.get(f"{url}/health", timeout=5).json()
    finally:
        server.terminate()
        server.wait(30)
    ordered = sorted(latencies)
    landed = sum(1 for path in events_dir.glob("part-*.jsonl") for _ in path.open("rb"))
    return {
        "endpoint": f"/v1/{endpoint}",
        "events_per_s": len(latencies) * per_request / wall,
        "requests_per_s": len(latencies) / wall,
        "events": len(latencies) * per_request,
        "landed": landed,
        "failures": failures[0],
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
        "fsyncs_per_request": health["landing"]["fsyncs"] / max(1, health["requests"]),
        "wall_s": wall,
    }


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("collector did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="send for at most this long per endpoint")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100, help="events per /v1/batch call")
    parser.add_argument("--max-events", type=int, default=1_000_000, help="stop after this many events per endpoint")
    args = parser.parse_args()
    print(f"collector on 127.0.0.1, {args.threads} client threads, {os.cpu_count()} cores shared by clients and server")
    print(
        f"{'endpoint':<10} {'events/s':>10} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'fsync/req':>9} {'events':>8} {'landed':>8} {'fail':>5}"
    )
    for endpoint in ("batch", "track"):
        with tempfile.TemporaryDirectory(prefix="lakecdp-bench-") as folder:
            r = run(
                endpoint, seconds=args.seconds, threads=args.threads, batch=args.batch, max_events=args.max_events, events_dir=Path(folder)
            )
        print(
            f"{r['endpoint']:<10} {r['events_per_s']:>10,.0f} {r['requests_per_s']:>8,.0f} {r['p50_ms']:>7.1f} "
            f"{r['p99_ms']:>7.1f} {r['fsyncs_per_request']:>9.2f} {r['events']:>8,} {r['landed']:>8,} {r['failures']:>5}"
        )


if __name__ == "__main__":
    main()
