"""The demo's traffic: generated history as a file drop (a retailer's first load), the last day live over HTTP.

The last day of the generated events goes to the real collector on 127.0.0.1, paced over some
seconds while the stream runs: most as Segment HTTP API batches, a share through the official
Segment SDK (segment-analytics-python) pointed at the collector. The collector lands them (fsync,
atomic rename) in the folder the stream reads.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

# Segment's batch endpoint takes at most 500 KB per request; ~1 KB per generated event.
HTTP_BATCH = 200
SDK_METHODS = ("track", "identify", "page")


@dataclass(frozen=True)
class Traffic:
    http_events: int
    sdk_events: int
    rejected: int  # refused by the collector (an error names them; the demo fails)


def split_history(files: list[Path], since: datetime, folder: Path) -> tuple[int, list[dict[str, Any]]]:
    """Events before `since` into `folder`/history-<day>.jsonl (one file per event day, as a daily export
    lands); returns how many, and the rest, oldest first."""
    cutoff = since.strftime("%Y-%m-%dT%H:%M:%S")
    days: dict[str, list[str]] = {}
    recent = []
    for path in files:
        with open(path, encoding="utf-8") as source:
            for line in source:
                event = json.loads(line)
                if event["timestamp"][:19] < cutoff:
                    days.setdefault(event["timestamp"][:10], []).append(line)
                else:
                    recent.append(event)
    folder.mkdir(parents=True, exist_ok=True)
    for day, lines in sorted(days.items()):
        partial = folder / f".history-{day}.jsonl.partial"
        partial.write_text("".join(lines), encoding="utf-8")
        partial.rename(folder / f"history-{day}.jsonl")  # the stream never reads half a file
    recent.sort(key=lambda e: e["timestamp"])
    return sum(len(lines) for lines in days.values()), recent


def through_sdk(event: dict[str, Any], share: float) -> bool:
    """A stable share of the messages the SDK can send (by messageId)."""
    digest = int.from_bytes(hashlib.sha256(event["messageId"].encode()).digest()[:4], "big")
    return event["type"] in SDK_METHODS and digest < share * 2**32


def send(events: list[dict[str, Any]], url: str, write_key: str, *, sdk_share: float = 0.25, seconds: float = 0.0) -> Traffic:
    """POST `events` (oldest first) to the collector at `url`, `sdk_share` of them through the Segment SDK,
    spread evenly over about `seconds` (0: as fast as the collector takes them)."""
    from segment.analytics.client import Client

    errors: list[Exception] = []
    client = Client(
        write_key, host=url, upload_size=100, max_queue_size=len(events) + 1, on_error=lambda error, batch: errors.append(error)
    )
    chunks = [events[start : start + HTTP_BATCH] for start in range(0, len(events), HTTP_BATCH)]
    began, http, sdk, refused = time.monotonic(), 0, 0, 0
    with httpx.Client(auth=(write_key, "")) as session:
        for n, chunk in enumerate(chunks):
            by_http = [e for e in chunk if not through_sdk(e, sdk_share)]
            for event in chunk:
                if through_sdk(event, sdk_share):
                    _enqueue(client, event)
                    sdk += 1
            if by_http:
                refused += _post(session, url, by_http)
                http += len(by_http)
            pause = began + seconds * (n + 1) / len(chunks) - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    client.flush()  # blocks until the SDK's queue is sent
    client.shutdown()
    if errors:
        raise RuntimeError(f"the Segment SDK could not deliver to the collector: {errors[0]}")
    return Traffic(http_events=http, sdk_events=sdk, rejected=refused)


def _post(session: httpx.Client, url: str, batch: list[dict[str, Any]]) -> int:
    """One Segment batch request; returns how many messages the collector refused."""
    response = session.post(f"{url}/v1/batch", json={"batch": batch}, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"the collector answered HTTP {response.status_code} to a batch: {response.text[:300]}")
    return len(response.json().get("refused") or [])


def _enqueue(client, event: dict[str, Any]) -> None:
    """The event as the SDK's own call would send it (its messageId kept, so a resend stays one event)."""
    common = {
        "user_id": event.get("userId"),
        "anonymous_id": event.get("anonymousId"),
        "context": event.get("context"),
        "timestamp": _instant(event["timestamp"]),
        "message_id": event["messageId"],
    }
    if event["type"] == "track":
        client.track(event=event["event"], properties=event.get("properties"), **common)
    elif event["type"] == "identify":
        client.identify(traits=event.get("traits"), **common)
    else:
        client.page(name=event.get("name"), properties=event.get("properties"), **common)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def live_window(end: datetime) -> datetime:
    """Where history ends and live traffic begins: the last day before `end`."""
    return end - timedelta(days=1)
