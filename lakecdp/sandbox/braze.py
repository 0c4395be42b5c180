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
API-triggered delivery, POST /campaigns/trigger/send (campaign_id, trigger_properties) and
/canvas/trigger/send (canvas_id, canvas_entry_properties)
(https://www.braze.com/docs/api/endpoints/messaging/send_messages/post_send_triggered_campaigns/,
.../post_send_triggered_canvases/): the id is required; `broadcast: true` and `recipients` exclude
each other and omitting recipients needs `broadcast: true`; at most 50 recipients, each naming
exactly one of external_user_id, user_alias, braze_id, email (email needs `prioritization`);
`send_to_existing_only: false` needs `attributes` and is refused with a user alias; a campaign takes
trigger_properties, a Canvas canvas_entry_properties (documented limit 50 KB). One window of 250,000
requests an hour is shared by both routes (and /messages/send). Answers 201 {dispatch_id, message}.
Braze has no idempotency key here: `sends` keeps every accepted recipient, and `deliveries` counts
them by the `trigger_id` in their properties (else their user), so a duplicate shows as a count of 2.
A recipient with send_to_existing_only and no Braze user is accepted and skipped, as Braze does.
GET /email/unsubscribes and /email/hard_bounces
(https://www.braze.com/docs/api/endpoints/email/get_query_unsubscribed_email_addresses/,
https://www.braze.com/docs/api/endpoints/email/get_list_hard_bounces/): the same auth; end_date
required with start_date or email, dates YYYY-MM-DD (midnight UTC, start before end), limit 1..500
(default 100), offset >= 0, sort_direction asc|desc (unsubscribes only; default newest first);
unknown parameters are a violation. Answers {emails: [{email, unsubscribed_at | hard_bounced_at}],
message}; each route has its own window of 250,000 requests an hour.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from lakecdp.sandbox.base import ContractServer, Request, Response, SlidingWindow, rate_limited

MAX_OBJECTS = 75
MAX_DELETE_IDS = 50
DELETE_IDENTIFIERS = ("external_ids", "user_aliases", "braze_ids", "email_addresses", "phone_numbers")
SUBSCRIBE_STATES = {"opted_in", "subscribed", "unsubscribed"}
IDENTIFIERS = ("external_id", "user_alias", "braze_id", "email")
MAX_RECIPIENTS = 50
RECIPIENT_IDENTIFIERS = ("external_user_id", "user_alias", "braze_id", "email")
MAX_ENTRY_PROPERTIES_BYTES = 50_000
MAX_EMAIL_LIMIT = 500
# route -> (its time field, its query parameters)
EMAIL_ROUTES = {
    "/email/unsubscribes": ("unsubscribed_at", {"start_date", "end_date", "limit", "offset", "sort_direction", "email"}),
    "/email/hard_bounces": ("hard_bounced_at", {"start_date", "end_date", "limit", "offset", "email"}),
}
TRIGGER_ROUTES = {
    "/campaigns/trigger/send": ("campaign_id", "trigger_properties"),
    "/canvas/trigger/send": ("canvas_id", "canvas_entry_properties"),
}


class BrazeServer(ContractServer):
    name = "braze"

    def __init__(
        self,
        *,
        api_key: str,
        invalid_emails: Iterable[str] = (),
        flaky_emails: Iterable[str] = (),
        rate_limit: tuple[int, float] = (3000, 3.0),
        latency: float = 0.0,
    ) -> None:
        super().__init__(latency=latency)
        self.api_key = api_key
        self.invalid = {e.lower() for e in invalid_emails}
        self.flaky = {e.lower() for e in flaky_emails}
        self.window = SlidingWindow(*rate_limit)
        self.delete_window = SlidingWindow(20_000, 60.0)
        self.messaging_window = SlidingWindow(250_000, 3600.0)
        self.sends: list[dict[str, Any]] = []  # accepted recipients: route, id, external_user_id, properties
        self.users: dict[str, dict[str, Any]] = {}
        self.batch_sizes: list[int] = []
        self.email_windows = {route: SlidingWindow(250_000, 3600.0) for route in EMAIL_ROUTES}
        self.email_states: dict[str, list[tuple[str, datetime]]] = {route: [] for route in EMAIL_ROUTES}

    def handle(self, request: Request) -> Response:
        windows = {
            "/users/track": self.window,
            "/users/delete": self.delete_window,
            **{route: self.messaging_window for route in TRIGGER_ROUTES},
        }
        if request.method == "GET" and request.path in EMAIL_ROUTES:
            windows = self.email_windows
        elif request.method != "POST" or request.path not in windows:
            self.violation(f"unknown route {request.method} {request.path}")
            return Response(404, {"message": "Not found"})
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            if not (request.headers.get("Authorization") or "").startswith("Bearer "):
                self.violation("request without a Bearer REST API key")
            return Response(401, {"message": "Invalid API key"})
        window = windows[request.path]
        if rate_limited([window], request.arrived_at) is not None:
            self.violation(f"{request.path}: more than {window.limit} requests in {window.seconds:g}s")
            reset = math.ceil(self.clock.now().timestamp() + window.retry_after(request.arrived_at))
            return Response(
                429,
                {"message": "Too Many Requests"},
                headers={"X-RateLimit-Limit": str(window.limit), "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
            )
        if request.method == "GET":
            return self._email_list(request)
        if not (request.headers.get("Content-Type") or "").startswith("application/json"):
            self.violation("Content-Type must be application/json")
            return Response(400, {"message": "Content-Type must be application/json"})
        if request.path == "/users/delete":
            return self._delete(request.json())
        if request.path in TRIGGER_ROUTES:
            return self._trigger_send(request.path, request.json())
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

    def _trigger_send(self, route: str, body: Any) -> Response:
        problem = _trigger_problem(route, body)
        if problem:
            self.violation(f"{route}: {problem}")
            return Response(400, {"message": problem})
        id_key, properties_key = TRIGGER_ROUTES[route]
        with self.lock:
            for recipient in body.get("recipients") or []:
                external_id = recipient.get("external_user_id")
                if recipient.get("send_to_existing_only", True) and external_id not in self.users:
                    continue  # Braze skips recipients it does not know
                if "attributes" in recipient and external_id:
                    self.users.setdefault(external_id, {}).update(recipient["attributes"])  # created before the send
                properties = {**(body.get(properties_key) or {}), **(recipient.get(properties_key) or {})}
                self.sends.append({"route": route, id_key: body[id_key], "external_user_id": external_id, "properties": properties})
                self.deliveries[str(properties.get("trigger_id") or external_id)] += 1
        return Response(201, {"dispatch_id": secrets.token_hex(16), "message": "success"})

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
                if (
                    isinstance(value, dict)
                    and key != "user_alias"
                    and not set(value) <= {"add", "remove", "update", "remove_by", "$add", "$remove"}
                ):
                    return f"attributes[{index}].{key}: object values must be array operations (add/remove)"
        return ""

    def _apply(self, item: dict[str, Any]) -> None:
        # lakecdp names users by external_id; a user given only by alias or braze_id is kept under "".
        key = item.get("external_id") or item.get("email") or ""
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

    def _email_list(self, request: Request) -> Response:
        time_field, known = EMAIL_ROUTES[request.path]
        problem = _email_query_problem(request, known)
        if problem:
            self.violation(f"{request.path}: {problem}")
            return Response(400, {"message": problem})
        start, end = _day(request.param("start_date") or ""), _day(request.param("end_date") or "") or date.max
        limit, offset = int(request.param("limit") or 100), int(request.param("offset") or 0)
        email = request.param("email")
        with self.lock:
            entries = list(self.email_states[request.path])
        if email:  # the address wins over the date range, as documented
            selected = [e for e in entries if e[0] == email.lower()]
        else:
            since = datetime.combine(start or date.min, datetime.min.time(), UTC)
            until = datetime.combine(end, datetime.min.time(), UTC)
            selected = [e for e in entries if since <= e[1] < until]
        selected.sort(key=lambda e: e[1], reverse=request.param("sort_direction") != "asc")
        page = [{"email": address, time_field: _braze_format(at, time_field)} for address, at in selected[offset : offset + limit]]
        return Response(200, {"emails": page, "message": "success"})

    def unsubscribe(self, email: str, at: datetime) -> None:
        """An email unsubscribe recorded at Braze (what /email/unsubscribes reports)."""
        with self.lock:
            self.email_states["/email/unsubscribes"].append((email.lower(), at))

    def hard_bounce(self, email: str, at: datetime) -> None:
        with self.lock:
            self.email_states["/email/hard_bounces"].append((email.lower(), at))

    def holds(self, external_id: str) -> bool:
        with self.lock:
            return external_id in self.users

    def in_segment(self, attribute: str, segment: str) -> set[str]:
        with self.lock:
            return {key for key, user in self.users.items() if segment in (user.get(attribute) or [])}


def _trigger_problem(route: str, body: Any) -> str:
    """The first breach of the triggered-send contract in `body`, or ''."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    id_key, properties_key = TRIGGER_ROUTES[route]
    other_key = "canvas_entry_properties" if properties_key == "trigger_properties" else "trigger_properties"
    if not isinstance(body.get(id_key), str) or not body[id_key]:
        return f"{id_key} is required"
    recipients = body.get("recipients")
    broadcast = body.get("broadcast", False)
    if recipients is None and broadcast is not True and "audience" not in body:
        return "broadcast must be true when recipients is omitted"
    if recipients is not None and broadcast is True:
        return "broadcast: true cannot be combined with recipients"
    if recipients is not None and (not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_RECIPIENTS):
        return f"recipients must be an array of 1..{MAX_RECIPIENTS} recipient objects"
    if other_key in body:
        return f"{other_key} belongs to the other route; this one takes {properties_key}"
    if properties_key == "canvas_entry_properties" and len(json.dumps(body.get(properties_key) or {})) > MAX_ENTRY_PROPERTIES_BYTES:
        return f"{properties_key} is over 50 KB"
    for index, recipient in enumerate(recipients or []):
        named = [k for k in RECIPIENT_IDENTIFIERS if recipient.get(k)]
        if len(named) != 1:
            return f"recipients[{index}] must name exactly one of {RECIPIENT_IDENTIFIERS}, got {named}"
        if named == ["email"] and not recipient.get("prioritization"):
            return f"recipients[{index}]: prioritization is required with email"
        existing_only = recipient.get("send_to_existing_only", True)
        if not isinstance(existing_only, bool):
            return f"recipients[{index}].send_to_existing_only must be a boolean"
        if not existing_only and "user_alias" in recipient:
            return f"recipients[{index}]: send_to_existing_only cannot be used with user aliases"
        if not existing_only and not isinstance(recipient.get("attributes"), dict):
            return f"recipients[{index}]: send_to_existing_only false needs an attributes object"
        for key in (properties_key, other_key):
            if key in recipient and not isinstance(recipient[key], dict):
                return f"recipients[{index}].{key} must be an object"
        if other_key in recipient:
            return f"recipients[{index}].{other_key} belongs to the other route; this one takes {properties_key}"
        if (
            properties_key == "canvas_entry_properties"
            and len(json.dumps(recipient.get(properties_key) or {})) > MAX_ENTRY_PROPERTIES_BYTES
        ):
            return f"recipients[{index}].{properties_key} is over 50 KB"
    return ""


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None


def _email_query_problem(request: Request, known: set[str]) -> str:
    """The first breach of the email list query contract, or ''."""
    unknown = sorted(set(request.query) - known)
    if unknown:
        return f"unknown query parameters {unknown}"
    start, end = request.param("start_date"), request.param("end_date")
    if not end or _day(end) is None:
        return "end_date (YYYY-MM-DD) is required"
    if not request.param("email") and (not start or _day(start) is None):
        return "start_date (YYYY-MM-DD) or email is required with end_date"
    start_day, end_day = _day(start or ""), _day(end)
    if start_day is not None and end_day is not None and not start_day < end_day:
        return "start_date must be earlier than end_date"
    limit, offset = request.param("limit") or "100", request.param("offset") or "0"
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_EMAIL_LIMIT:
        return f"limit must be an integer 1..{MAX_EMAIL_LIMIT}"
    if not offset.isdigit():
        return "offset must be a non-negative integer"
    if request.param("sort_direction") not in (None, "asc", "desc"):
        return "sort_direction must be asc or desc"
    return ""


def _braze_format(at: datetime, time_field: str) -> str:
    # The hard-bounce example shows '2016-08-25 15:24:32 +0000'; unsubscribes are ISO 8601.
    utc = at.astimezone(UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S +0000") if time_field == "hard_bounced_at" else utc.isoformat()
