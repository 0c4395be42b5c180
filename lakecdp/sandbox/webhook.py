"""A receiver of lakecdp's signed webhook: checks the signature and timestamp, honours Idempotency-Key.

The first response per Idempotency-Key is stored and replayed for any repeat (the body must be
the same), so `deliveries` counts each member once per distinct key however often a batch is
resent; `raw_deliveries` counts every arrival. A rate limit (sliding window) and a latency are
configurable; rejected members are answered in `rejected`. An erasure notice
({destination, event: customer.erased, customer_id, email_sha256}) removes the customer from
every segment and records them in `erased`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from typing import Any

from lakecdp.export.adapters.webhook import ERASED_EVENT
from lakecdp.sandbox.base import ContractServer, Request, Response, SlidingWindow, rate_limited
from lakecdp.webhooks import verify


class WebhookServer(ContractServer):
    name = "webhook"

    def __init__(
        self,
        *,
        secret: str,
        invalid_customers: Iterable[str] = (),
        flaky_customers: Iterable[str] = (),
        rate_limit: tuple[int, float] | None = (20, 1.0),
        tolerance_s: float = 300,
        latency: float = 0.0,
    ) -> None:
        super().__init__(latency=latency)
        self.secret = secret
        self.invalid, self.flaky = set(invalid_customers), set(flaky_customers)
        self.window = SlidingWindow(*rate_limit) if rate_limit else None
        self.tolerance_s = tolerance_s
        self.responses: dict[str, tuple[str, Response]] = {}  # idempotency key -> (body digest, response)
        self.raw_deliveries: Counter = Counter()
        self.members: dict[str, set[str]] = {}  # segment -> customer ids currently in it
        self.replays = 0
        self.erased: set[str] = set()  # customer ids the receiver deleted

    def handle(self, request: Request) -> Response:
        refused = _refused(
            self,
            request,
            verify(self.secret, request.headers, request.body, now=self.clock.now().timestamp(), tolerance_s=self.tolerance_s),
        )
        if refused is not None:
            return refused
        key = request.headers["Idempotency-Key"]
        if self.window is not None and rate_limited([self.window], request.arrived_at) is not None:
            self.violation(f"more than {self.window.limit} requests in {self.window.seconds:g}s")
            return Response(429, {"error": "slow down"}, headers={"Retry-After": "1"})
        digest = hashlib.sha256(request.body).hexdigest()
        with self.lock:
            stored = self.responses.get(key)
            document = request.json()
            is_erasure = document.get("event") == ERASED_EVENT
            for member in [document] if is_erasure else document["members"]:
                self.raw_deliveries[member["customer_id"]] += 1
            if stored is not None:
                if stored[0] != digest:
                    self.violation(f"Idempotency-Key {key} reused for a different body")
                self.replays += 1
                return stored[1]
            response = self._erase(document) if is_erasure else self._apply(document)
            self.responses[key] = (digest, response)
            return response

    def _erase(self, document: dict[str, Any]) -> Response:
        digest = document.get("email_sha256")
        if set(document) != {"destination", "event", "customer_id", "email_sha256"} or not document.get("customer_id"):
            self.violation(f"erasure notice: unexpected keys {sorted(document)}")
            return Response(400, {"error": "malformed erasure notice"})
        if digest is not None and (len(digest) != 64 or "@" in digest):
            self.violation("erasure notice: email_sha256 is not a SHA-256 hex digest")
        for members in self.members.values():
            members.discard(document["customer_id"])
        self.erased.add(document["customer_id"])
        return Response(200, {"erased": True})

    def holds(self, customer_id: str) -> bool:
        with self.lock:
            return any(customer_id in members for members in self.members.values())

    def _apply(self, document: dict[str, Any]) -> Response:
        rejected = []
        members = document["members"]
        segment = self.members.setdefault(document["segment"], set())
        for member in members:
            customer_id = member["customer_id"]
            if "@" in str(member.get("email_sha256", "")) or len(member.get("email_sha256") or "") != 64:
                self.violation("email_sha256 is not a SHA-256 hex digest")
            if customer_id in self.invalid or (customer_id in self.flaky and len(members) > 1):
                self.flaky.discard(customer_id)
                rejected.append({"customer_id": customer_id, "reason": "unknown recipient"})
                continue
            (segment.discard if member["action"] == "remove" else segment.add)(customer_id)
            self.deliveries[customer_id] += 1
        return Response(200, {"accepted": len(members) - len(rejected), "rejected": rejected})


class TriggerReceiver(ContractServer):
    """A retailer's endpoint for trigger sends (lakecdp.triggers.esp.WebhookSender): checks the Standard Webhooks signature
    and the Idempotency-Key, and keeps each trigger once however often it is retried."""

    name = "trigger-webhook"

    def __init__(self, *, secret: str, tolerance_s: float = 300) -> None:
        super().__init__()
        self.secret, self.tolerance_s = secret, tolerance_s
        self.received: dict[str, dict[str, Any]] = {}  # idempotency key -> payload

    def handle(self, request: Request) -> Response:
        refused = _refused(
            self,
            request,
            verify(self.secret, request.headers, request.body, now=self.clock.now().timestamp(), tolerance_s=self.tolerance_s),
        )
        if refused is not None:
            return refused
        key = request.headers["Idempotency-Key"]
        with self.lock:
            if key not in self.received:
                self.received[key] = request.json()
                self.deliveries[key] += 1
        return Response(202, {"accepted": key})


def _refused(server: ContractServer, request: Request, signed: bool) -> Response | None:
    """What a signed webhook receiver answers a request it refuses (recorded as a violation), else None:
    not a POST, a bad or stale signature, no Idempotency-Key."""
    if request.method != "POST":
        server.violation(f"unexpected {request.method} {request.path}")
        return Response(405, {"error": "POST only"})
    if not signed:
        server.violation("bad or stale signature")
        return Response(401, {"error": "invalid signature"})
    if not request.headers.get("Idempotency-Key"):
        server.violation("request without Idempotency-Key")
        return Response(400, {"error": "Idempotency-Key required"})
    return None
