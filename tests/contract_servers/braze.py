"""Braze /users/track (https://www.braze.com/docs/api/endpoints/user_data/post_user_track/).

Enforced: `Authorization: Bearer <REST API key>`; JSON body with attributes/events/purchases
arrays, at most 75 objects in total per request; every attributes object identifies the user
(external_id, user_alias, braze_id or email); email_subscribe in opted_in|subscribed|unsubscribed;
array attributes as lists or {add, remove}. Rate limit: 3,000 requests per 3 seconds (sliding
window here; configurable for benchmarks); excess gets 429 with X-RateLimit-* headers and no
Retry-After, as Braze documents. Non-fatal errors name the object's index.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from tests.contract_servers.base import ContractServer, Request, Response, SlidingWindow, rate_limited

MAX_OBJECTS = 75
SUBSCRIBE_STATES = {"opted_in", "subscribed", "unsubscribed"}
IDENTIFIERS = ("external_id", "user_alias", "braze_id", "email")


class BrazeServer(ContractServer):
    name = "braze"

    def __init__(self, *, api_key: str, invalid_emails: Iterable[str] = (), flaky_emails: Iterable[str] = (),
                 rate_limit: tuple[int, float] = (3000, 3.0), latency: float = 0.0) -> None:
        super().__init__(latency=latency)
        self.api_key = api_key
        self.invalid = {e.lower() for e in invalid_emails}
        self.flaky = {e.lower() for e in flaky_emails}
        self.window = SlidingWindow(*rate_limit)
        self.users: dict[str, dict[str, Any]] = {}
        self.batch_sizes: list[int] = []

    def handle(self, request: Request) -> Response:
        if request.method != "POST" or request.path != "/users/track":
            self.violation(f"unknown route {request.method} {request.path}")
            return Response(404, {"message": "Not found"})
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            if not (request.headers.get("Authorization") or "").startswith("Bearer "):
                self.violation("request without a Bearer REST API key")
            return Response(401, {"message": "Invalid API key"})
        if rate_limited([self.window], request.arrived_at) is not None:
            self.violation(f"more than {self.window.limit} requests in {self.window.seconds:g}s")
            reset = math.ceil(time.time() + self.window.retry_after(request.arrived_at))
            return Response(429, {"message": "Too Many Requests"}, headers={
                "X-RateLimit-Limit": str(self.window.limit), "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})
        if not (request.headers.get("Content-Type") or "").startswith("application/json"):
            self.violation("Content-Type must be application/json")
            return Response(400, {"message": "Content-Type must be application/json"})
        body = request.json()
        problem = self._check(body)
        if problem:
            self.violation(problem)
            return Response(400, {"message": problem})
        attributes = body.get("attributes") or []
        self.batch_sizes.append(len(attributes))
        errors = []
        with self.lock:
            for index, item in enumerate(attributes):
                email = (item.get("email") or "").lower()
                if email in self.invalid or (email in self.flaky and len(attributes) > 1):
                    self.flaky.discard(email)
                    errors.append({"type": "'email' is not a valid email address", "input_array": "attributes", "index": index})
                    continue
                self._apply(item)
        document: dict[str, Any] = {"message": "success", "attributes_processed": len(attributes) - len(errors)}
        if errors:
            document["errors"] = errors
        return Response(201, document)

    def _check(self, body: Any) -> str:
        if not isinstance(body, dict):
            return "body must be a JSON object"
        arrays = {k: body.get(k) or [] for k in ("attributes", "events", "purchases")}
        if any(not isinstance(v, list) for v in arrays.values()):
            return "attributes, events and purchases must be arrays"
        total = sum(len(v) for v in arrays.values())
        if total == 0 or total > MAX_OBJECTS:
            return f"a request carries 1..{MAX_OBJECTS} objects in total, got {total}"
        for index, item in enumerate(arrays["attributes"]):
            if not any(item.get(k) for k in IDENTIFIERS):
                return f"attributes[{index}]: one of {IDENTIFIERS} is required"
            if "email_subscribe" in item and item["email_subscribe"] not in SUBSCRIBE_STATES:
                return f"attributes[{index}].email_subscribe must be one of {sorted(SUBSCRIBE_STATES)}"
            for key, value in item.items():
                if isinstance(value, dict) and key != "user_alias" and not set(value) <= {"add", "remove", "update", "remove_by", "$add", "$remove"}:
                    return f"attributes[{index}].{key}: object values must be array operations (add/remove)"
        return ""

    def _apply(self, item: dict[str, Any]) -> None:
        key = item.get("external_id") or item.get("email")
        user = self.users.setdefault(key, {})
        for name, value in item.items():
            if isinstance(value, dict) and ("add" in value or "remove" in value):
                current = set(user.get(name) or [])
                current |= set(value.get("add") or [])
                current -= set(value.get("remove") or [])
                user[name] = sorted(current)
            else:
                user[name] = value
        self.deliveries[key] += 1

    def in_segment(self, attribute: str, segment: str) -> set[str]:
        with self.lock:
            return {key for key, user in self.users.items() if segment in (user.get(attribute) or [])}
