"""Braze /users/track (https://www.braze.com/docs/api/endpoints/user_data/post_user_track/).

Enforced: `Authorization: Bearer <REST API key>`; JSON body with attributes/events/purchases
arrays, at most 75 objects in total per request; every attributes object identifies the user
(external_id, user_alias, braze_id or email); email_subscribe in opted_in|subscribed|unsubscribed;
array attributes as lists or {add, remove}. Rate limit: 3,000 requests per 3 seconds (sliding
window here; configurable for benchmarks); excess gets 429 with X-RateLimit-* headers and no
Retry-After, as Braze documents. Non-fatal errors name the object's index.
POST /users/delete (https://www.braze.com/docs/api/endpoints/user_data/post_user_delete/): the same
auth; exactly one of external_ids, user_aliases, braze_ids, email_addresses, phone_numbers, with
1..50 entries; answers {deleted: n, message} and removes the users; its own window, 20,000 a
minute.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from lakecdp.sandbox.base import ContractServer, Request, Response, SlidingWindow, rate_limited

MAX_OBJECTS = 75
MAX_DELETE_IDS = 50
DELETE_IDENTIFIERS = ("external_ids", "user_aliases", "braze_ids", "email_addresses", "phone_numbers")
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
        self.delete_window = SlidingWindow(20_000, 60.0)
        self.users: dict[str, dict[str, Any]] = {}
        self.batch_sizes: list[int] = []

    def handle(self, request: Request) -> Response:
        windows = {"/users/track": self.window, "/users/delete": self.delete_window}
        if request.method != "POST" or request.path not in windows:
            self.violation(f"unknown route {request.method} {request.path}")
            return Response(404, {"message": "Not found"})
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            if not (request.headers.get("Authorization") or "").startswith("Bearer "):
                self.violation("request without a Bearer REST API key")
            return Response(401, {"message": "Invalid API key"})
        window = windows[request.path]
        if rate_limited([window], request.arrived_at) is not None:
            self.violation(f"{request.path}: more than {window.limit} requests in {window.seconds:g}s")
            reset = math.ceil(time.time() + window.retry_after(request.arrived_at))
            return Response(429, {"message": "Too Many Requests"}, headers={
                "X-RateLimit-Limit": str(window.limit), "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})
        if not (request.headers.get("Content-Type") or "").startswith("application/json"):
            self.violation("Content-Type must be application/json")
            return Response(400, {"message": "Content-Type must be application/json"})
        if request.path == "/users/delete":
            return self._delete(request.json())
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

    def _delete(self, body: Any) -> Response:
        given = [k for k in DELETE_IDENTIFIERS if k in body] if isinstance(body, dict) else []
        values = body.get(given[0]) if len(given) == 1 else None
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_DELETE_IDS:
            problem = f"users/delete: exactly one of {DELETE_IDENTIFIERS} with 1..{MAX_DELETE_IDS} entries, got {given}"
            self.violation(problem)
            return Response(400, {"message": problem})
        if given[0] != "external_ids" or not all(isinstance(v, str) and v for v in values):
            # Braze accepts the other identifiers too; lakecdp names its users by external_id only.
            self.violation(f"users/delete: expected external_ids as non-empty strings, got {given[0]}")
            return Response(400, {"message": "external_ids must be non-empty strings"})
        with self.lock:
            deleted = [v for v in values if self.users.pop(v, None) is not None]
        return Response(201, {"deleted": len(deleted), "message": "success"})

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

    def holds(self, external_id: str) -> bool:
        with self.lock:
            return external_id in self.users

    def in_segment(self, attribute: str, segment: str) -> set[str]:
        with self.lock:
            return {key for key, user in self.users.items() if segment in (user.get(attribute) or [])}
