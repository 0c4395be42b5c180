"""Klaviyo, driven by Klaviyo's own OpenAPI files (../shared/contracts/klaviyo, revision 2026-07-15).

Every request is matched to an operation of those files and checked there: the security header
(`Authorization: Klaviyo-API-Key ...`), required header parameters (`revision`), path and query
parameters, the request media type and the body against the operation's schema. Responses use
the documented status codes and shapes (and are validated too: a server bug is a violation).
Rate limits come from each operation's `x-klaviyo-ratelimit` (burst and steady, enforced as
sliding windows); an excess gets 429 with Retry-After. Documented size limits: 10,000 profiles
and 5 MB per import job, 100 KB per profile, 1,000 profiles per list relationship call.
GET /api/profiles (profile ids for removal; suppressed profiles for the unsubscribe sync) is not
among the vendored files; it is served with the same header checks and the parameters its reference
documents (https://developers.klaviyo.com/en/v2026-07-15/reference/get_profiles): filter any()/
equals() on external_id, or greater-or-equal/greater-than on
subscriptions.email.marketing.suppression.timestamp (which needs additional-fields[profile]=
subscriptions to return the suppressions); fields[profile] and sort from the documented enums;
page[size] 1..100; page[cursor] from links.next. Sparse fieldsets are honoured, so an address is
only returned when asked for.
POST /api/data-privacy-deletion-jobs (request_profile_deletion, data_privacy.json) takes exactly
one identifier (email, phone_number or id), as its description demands; the real job is
asynchronous, here every matching profile is gone when the 202 is sent.
POST /api/events (create_event, create_event.json) records the event for its metric and profile
(matched by external_id, else email): a repeated `unique_id` for the same profile and metric is
recorded once, as the operation documents; the event's size limits (5 MB, 400 properties, strings
up to 100 KB, metric name under 128 characters, time after 1990 and within a year) are checked.
Events start the flows listening to their metric: `flow_starts` counts them (backfill events do not).
"""

from __future__ import annotations

import json
import math
import re
import secrets
import threading
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from lakecdp.clock import Clock
from lakecdp.sandbox.base import ContractServer, Request, Response, SlidingWindow, rate_limited
from lakecdp.sandbox.openapi import CONTRACTS_DIR, Operation, load_operations

MEDIA = "application/vnd.api+json"
REVISION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z0-9]+)?$")
MAX_PROFILES, MAX_JOB_BYTES, MAX_PROFILE_BYTES, MAX_RELATIONSHIPS = 10_000, 5_000_000, 100_000, 1000
SUPPRESSION_TIMESTAMP = "subscriptions.email.marketing.suppression.timestamp"
SUPPRESSION_FILTER = re.compile(rf"(greater-or-equal|greater-than)\({re.escape(SUPPRESSION_TIMESTAMP)},([0-9T:.+\-Z]+)\)")
# get_profiles' documented enums (a subset of fields[profile]: the ones a sync could name).
PROFILE_FIELDS = {"email", "external_id", "phone_number", "first_name", "last_name", "created", "updated", "properties", "subscriptions"}
PROFILE_FIELDS |= {"subscriptions.email", "subscriptions.email.marketing", "subscriptions.email.marketing.suppression"}
PROFILE_FIELDS |= {"subscriptions.email.marketing.list_suppressions", "subscriptions.email.marketing.consent"}
PROFILE_SORTS = {f"{sign}{key}" for sign in ("", "-") for key in ("created", "email", "id", "updated", SUPPRESSION_TIMESTAMP)}
PROFILE_QUERY = {"filter", "fields[profile]", "page[size]", "page[cursor]", "sort", "additional-fields[profile]"}
MAX_EVENT_BYTES, MAX_EVENT_PROPERTIES, MAX_EVENT_STRING, MAX_METRIC_NAME = 5_000_000, 400, 100_000, 128


def error(status: int, code: str, detail: str, pointer: str | None = None) -> Response:
    item: dict[str, Any] = {"id": secrets.token_hex(8), "code": code, "title": code.replace("_", " ").capitalize(), "detail": detail}
    if pointer:
        item["source"] = {"pointer": pointer}
    return Response(status, {"errors": [item]}, content_type=MEDIA)


class KlaviyoServer(ContractServer):
    name = "klaviyo"

    def __init__(
        self,
        *,
        api_key: str,
        contracts: Path | None = None,
        invalid_emails: Iterable[str] = (),
        flaky_emails: Iterable[str] = (),
        polls_until_complete: int = 1,
        latency: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
        """Args:
        clock: Klaviyo's "now" for create_event's "at most a year ahead" check (unchecked without one).
        """
        super().__init__(latency=latency)
        # Only a given clock checks event times; without one the base's server clock stays.
        self.checks_event_time = clock is not None
        if clock is not None:
            self.clock = clock
        self.api_key = api_key
        self.operations = load_operations(contracts or CONTRACTS_DIR / "klaviyo")
        self.windows = {op.operation_id: [SlidingWindow(n, s) for n, s in op.rate_limits] for op in self.operations}
        self.windows["get_profiles"] = [SlidingWindow(75, 1.0), SlidingWindow(700, 60.0)]
        self.invalid = {e.lower() for e in invalid_emails}
        self.flaky = {e.lower() for e in flaky_emails}
        self.polls_until_complete = polls_until_complete
        self.profiles: dict[str, dict[str, Any]] = {}  # external_id -> profile (id, email, lists, ...)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.deletion_jobs: list[str] = []  # which identifier each deletion job named
        self.job_sizes: list[int] = []
        self.events: list[dict[str, Any]] = []  # recorded events: metric, profile key, unique_id, properties
        self._event_keys: set[tuple[str, str, str]] = set()
        self.duplicate_events = 0  # events dropped for a repeated unique_id
        self.flow_starts: Counter = Counter()  # metric name -> flows started
        self.rate_limited = 0
        self._ids = threading.Lock()

    # ---- contract checks ------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if request.method == "GET" and request.path == "/api/profiles":
            return self._checked(request, None, {}) or self._get_profiles(request)
        for operation in self.operations:
            params = operation.match(request.method, request.path)
            if params is not None:
                refused = self._checked(request, operation, params)
                if refused is not None:
                    return refused
                response = getattr(self, f"_{operation.operation_id}")(request, params)
                problems = operation.response_errors(response.status, response.body)
                if problems:
                    self.violation(f"server answered {operation.operation_id} off-contract: {problems[:3]}")
                return response
        self.violation(f"no operation in the contract for {request.method} {request.path}")
        return error(404, "not_found", "Not found.")

    def _checked(self, request: Request, operation: Operation | None, params: dict[str, str]) -> Response | None:
        name = operation.operation_id if operation else "get_profiles"
        auth = request.headers.get("Authorization") or ""
        if not auth.startswith("Klaviyo-API-Key "):
            self.violation(f"{name}: Authorization is not 'Klaviyo-API-Key <key>'")
            return error(401, "not_authenticated", "Authentication credentials were not provided.")
        if auth.removeprefix("Klaviyo-API-Key ") != self.api_key:
            return error(401, "not_authenticated", "Incorrect authentication credentials.")
        revision = request.headers.get("revision")
        if not revision or not REVISION.match(revision):
            self.violation(f"{name}: required header 'revision' missing or malformed ({revision!r})")
            return error(400, "invalid", "The revision header is required (YYYY-MM-DD).", None)
        if operation is not None:
            problem = self._parameters(request, operation, params) or self._body(request, operation)
            if problem is not None:
                return problem
        window = rate_limited(self.windows[name], request.arrived_at)
        if window is not None:
            with self.lock:
                self.rate_limited += 1
            self.violation(f"{name}: more than {window.limit} requests in {window.seconds:g}s")
            wait = max(1, math.ceil(window.retry_after(request.arrived_at)))
            response = error(429, "throttled", f"Request was throttled. Expected available in {wait} seconds.")
            response.headers.update(
                {"Retry-After": str(wait), "RateLimit-Limit": str(window.limit), "RateLimit-Remaining": "0", "RateLimit-Reset": str(wait)}
            )
            return response
        return None

    def _parameters(self, request: Request, operation: Operation, params: dict[str, str]) -> Response | None:
        declared = {p.name for p in operation.parameters if p.location == "query"}
        unknown = sorted(set(request.query) - declared)
        if unknown:
            self.violation(f"{operation.operation_id}: query parameters {unknown} are not in the contract")
            return error(400, "invalid", f"Unknown query parameters {unknown}.")
        for p in operation.parameters:
            if p.location == "header":
                value = request.headers.get(p.name)
            elif p.location == "path":
                value = params.get(p.name)
            elif p.location == "query":
                value = request.param(p.name)
            else:
                continue
            if value is None:
                if p.required:
                    self.violation(f"{operation.operation_id}: required {p.location} parameter {p.name!r} missing")
                    return error(400, "invalid", f"{p.name} is required.", None)
                continue
            candidates: list[Any] = [value.split(",")] if p.is_array else [value, *([int(value)] if value.isdigit() else [])]
            problems = [e.message for e in p.validator.iter_errors(candidates[0])]
            if problems and any(not list(p.validator.iter_errors(c)) for c in candidates[1:]):
                problems = []
            if problems:
                self.violation(f"{operation.operation_id}: parameter {p.name}: {problems[0]}")
                return error(400, "invalid", f"{p.name}: {problems[0]}")
        return None

    def _body(self, request: Request, operation: Operation) -> Response | None:
        if operation.body is None:
            return None
        if not request.body:
            if operation.body_required:
                self.violation(f"{operation.operation_id}: request body required")
                return error(400, "invalid", "A request body is required.")
            return None
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type != operation.media_type:
            self.violation(f"{operation.operation_id}: Content-Type {content_type!r}, contract says {operation.media_type}")
            return error(415, "unsupported_media_type", f"Unsupported media type {content_type!r}.")
        try:
            document = json.loads(request.body)
        except ValueError:
            self.violation(f"{operation.operation_id}: body is not JSON")
            return error(400, "parse_error", "Malformed JSON.")
        problems = operation.body_errors(document)
        if problems:
            self.violation(f"{operation.operation_id}: body breaks the schema: {problems[:3]}")
            return error(400, "invalid", problems[0].split(": ", 1)[-1], problems[0].split(": ", 1)[0])
        return None

    # ---- operations -----------------------------------------------------------------------------
    def _bulk_import_profiles(self, request: Request, params: dict[str, str]) -> Response:
        document = json.loads(request.body)
        profiles = document["data"]["attributes"]["profiles"]["data"]
        if len(request.body) > MAX_JOB_BYTES or len(profiles) > MAX_PROFILES:
            self.violation(f"bulk_import_profiles: {len(profiles)} profiles / {len(request.body)} bytes over the documented limit")
            return error(413, "payload_too_large", "At most 10,000 profiles and 5 MB per job.")
        too_big = [i for i, p in enumerate(profiles) if len(json.dumps(p)) > MAX_PROFILE_BYTES]
        if too_big:
            self.violation(f"bulk_import_profiles: profiles {too_big[:5]} over 100 KB")
            return error(413, "payload_too_large", "A profile is over 100 KB.")
        lists = [item["id"] for item in ((document["data"].get("relationships") or {}).get("lists") or {}).get("data", [])]
        job_id = secrets.token_hex(13).upper()
        errors = []
        with self.lock:
            self.job_sizes.append(len(profiles))
            for profile in profiles:
                attributes = profile.get("attributes") or {}
                email = (attributes.get("email") or "").lower()
                if email in self.invalid or (email in self.flaky and len(profiles) > 1):
                    self.flaky.discard(email)
                    errors.append(
                        {
                            "type": "import-error",
                            "id": secrets.token_hex(8),
                            "attributes": {
                                "code": "invalid",
                                "title": "Invalid input.",
                                "detail": f"Invalid email address {email}",
                                "source": {"pointer": "/data/attributes/email"},
                                "original_payload": profile,
                            },
                        }
                    )
                    continue
                self._upsert(attributes, lists)
            self.jobs[job_id] = {"total": len(profiles), "errors": errors, "polls": 0, "lists": lists}
        return Response(202, self._job_document(job_id, "queued"), content_type=MEDIA)

    def _upsert(self, attributes: dict[str, Any], lists: list[str]) -> None:
        # lakecdp names profiles by external_id; one given only by phone number is kept under "".
        key = attributes.get("external_id") or attributes.get("email") or ""
        profile = self.profiles.setdefault(key, {"id": "01" + secrets.token_hex(12).upper(), "lists": set()})
        profile.update({k: v for k, v in attributes.items()})
        profile["lists"] |= set(lists)
        self.deliveries[key] += 1

    def _job_document(self, job_id: str, status: str) -> dict[str, Any]:
        job = self.jobs[job_id]
        failed = len(job["errors"])
        attributes: dict[str, Any] = {
            "status": status,
            "created_at": "2026-11-01T00:00:00+00:00",
            "total_count": job["total"],
            "completed_count": job["total"] - failed if status == "complete" else 0,
            "failed_count": failed if status == "complete" else 0,
        }
        links = {"self": f"https://a.klaviyo.com/api/profile-bulk-import-jobs/{job_id}/"}
        return {"data": {"type": "profile-bulk-import-job", "id": job_id, "attributes": attributes, "links": links}, "links": links}

    def _get_bulk_import_profiles_job(self, request: Request, params: dict[str, str]) -> Response:
        job = self.jobs.get(params["job_id"])
        if job is None:
            return error(404, "not_found", "Job not found.")
        with self.lock:
            job["polls"] += 1
            status = "complete" if job["polls"] >= self.polls_until_complete else "processing"
        return Response(200, self._job_document(params["job_id"], status), content_type=MEDIA)

    def _get_errors_for_bulk_import_profiles_job(self, request: Request, params: dict[str, str]) -> Response:
        job = self.jobs.get(params["id"])
        if job is None:
            return error(404, "not_found", "Job not found.")
        size = int(request.param("page[size]") or 20)
        if size > 100:
            self.violation("import-errors: page[size] above 100")
        start = int(request.param("page[cursor]") or 0)
        page = job["errors"][start : start + size]
        base = f"{self.url}/api/profile-bulk-import-jobs/{params['id']}/import-errors"
        links = {"self": base}
        if start + size < len(job["errors"]):
            links["next"] = f"{base}?page%5Bsize%5D={size}&page%5Bcursor%5D={start + size}"
        return Response(200, {"data": page, "links": links}, content_type=MEDIA)

    def _get_profiles(self, request: Request) -> Response:
        problem = _profiles_query_problem(request)
        if problem:
            self.violation(f"get_profiles: {problem}")
            return error(400, "invalid", problem)
        suppressed = SUPPRESSION_FILTER.fullmatch(request.param("filter") or "")
        if suppressed:
            return self._suppressed_profiles(request, suppressed.group(1), suppressed.group(2))
        match = re.fullmatch(r'any\(external_id,(\[.*\])\)|equals\(external_id,(".*")\)', request.param("filter") or "")
        if not match:
            self.violation(f"get_profiles: filter {request.param('filter')!r} is not one the contract server serves")
            return error(400, "invalid", "Invalid filter.")
        wanted = json.loads(match.group(1)) if match.group(1) else [json.loads(match.group(2))]
        if len(wanted) > 100:
            self.violation("get_profiles: more than 100 per page")
        with self.lock:
            data = [
                {"type": "profile", "id": self.profiles[x]["id"], "attributes": {"external_id": x}} for x in wanted if x in self.profiles
            ]
        return Response(200, {"data": data, "links": {"self": f"{self.url}/api/profiles"}}, content_type=MEDIA)

    def _suppressed_profiles(self, request: Request, operator: str, value: str) -> Response:
        try:
            since = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            self.violation(f"get_profiles: {value!r} is not an ISO 8601 datetime")
            return error(400, "invalid", f"Invalid datetime {value!r}.")
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
        if (request.param("additional-fields[profile]") or "") != "subscriptions":
            self.violation("get_profiles: suppressions are only returned with additional-fields[profile]=subscriptions")
        with self.lock:
            selected = []
            for key, profile in self.profiles.items():
                times = [datetime.fromisoformat(s["timestamp"]) for s in profile.get("suppression") or []]
                if any(t > since or (operator == "greater-or-equal" and t == since) for t in times):
                    selected.append((max(times), key, profile))
        selected.sort(key=lambda item: item[0], reverse=(request.param("sort") or "").startswith("-"))
        size, start = int(request.param("page[size]") or 20), int(request.param("page[cursor]") or 0)
        fields = set((request.param("fields[profile]") or "").split(",")) - {""}
        data = [_profile_resource(key, profile, fields, self.url) for _, key, profile in selected[start : start + size]]
        links = {"self": f"{self.url}/api/profiles"}
        if start + size < len(selected):
            links["next"] = (
                f"{self.url}/api/profiles?{urlencode({**{k: v[0] for k, v in request.query.items()}, 'page[cursor]': start + size})}"
            )
        return Response(200, {"data": data, "links": links}, content_type=MEDIA)

    def _remove_profiles_from_list(self, request: Request, params: dict[str, str]) -> Response:
        ids = {item["id"] for item in json.loads(request.body)["data"]}
        if len(ids) > MAX_RELATIONSHIPS:
            self.violation(f"remove_profiles_from_list: {len(ids)} profiles (max {MAX_RELATIONSHIPS})")
            return error(400, "invalid", "At most 1000 profiles per call.")
        with self.lock:
            for key, profile in self.profiles.items():
                if profile["id"] in ids:
                    profile["lists"].discard(params["id"])
                    self.deliveries[key] += 1
        return Response(204)

    def _add_profiles_to_list(self, request: Request, params: dict[str, str]) -> Response:
        ids = {item["id"] for item in json.loads(request.body)["data"]}
        with self.lock:
            for profile in self.profiles.values():
                if profile["id"] in ids:
                    profile["lists"].add(params["id"])
        return Response(204)

    def _request_profile_deletion(self, request: Request, params: dict[str, str]) -> Response:
        profile = json.loads(request.body)["data"]["attributes"]["profile"]["data"]
        attributes = profile.get("attributes") or {}
        given = [k for k in ("email", "phone_number") if attributes.get(k)] + (["id"] if profile.get("id") else [])
        if len(given) != 1:
            self.violation(f"request_profile_deletion: exactly one identifier required, got {given}")
            return error(400, "invalid", "Provide exactly one of email, phone_number or id.", "/data/attributes/profile/data")
        with self.lock:
            self.deletion_jobs.append(given[0])
            if given[0] == "id":
                doomed = [k for k, p in self.profiles.items() if p["id"] == profile["id"]]
            else:
                doomed = [k for k, p in self.profiles.items() if str(p.get(given[0]) or "").lower() == str(attributes[given[0]]).lower()]
            for key in doomed:
                del self.profiles[key]
        return Response(202)

    def _create_event(self, request: Request, params: dict[str, str]) -> Response:
        attributes = json.loads(request.body)["data"]["attributes"]
        problem = _event_problem(request.body, attributes, self.clock.now() if self.checks_event_time else None)
        if problem is not None:
            self.violation(f"create_event: {problem}")
            return error(400, "invalid", problem, "/data/attributes")
        profile = attributes["profile"]["data"]
        fields = profile.get("attributes") or {}
        key = profile.get("id") or fields.get("external_id") or fields.get("email") or fields.get("phone_number")
        if not key:
            self.violation("create_event: the profile names no identifier (id, email, phone_number, external_id)")
            return error(400, "invalid", "A profile identifier is required.", "/data/attributes/profile/data")
        metric = attributes["metric"]["data"]["attributes"]["name"]
        unique_id = attributes.get("unique_id") or str(attributes.get("time"))  # Klaviyo's default: the time to the second
        with self.lock:
            if (key, metric, unique_id) in self._event_keys:
                self.duplicate_events += 1
                return Response(202)
            self._event_keys.add((key, metric, unique_id))
            # create_event creates or updates the profile it names
            stored = self.profiles.setdefault(key, {"id": "01" + secrets.token_hex(12).upper(), "lists": set()})
            stored.update({k: v for k, v in fields.items() if v is not None})
            self.events.append(
                {
                    "metric": metric,
                    "profile": key,
                    "unique_id": unique_id,
                    "time": attributes.get("time"),
                    "value": attributes.get("value"),
                    "properties": attributes["properties"],
                }
            )
            self.deliveries[unique_id] += 1
            if not attributes.get("backfill"):
                self.flow_starts[metric] += 1
        return Response(202)

    # ---- test helpers ---------------------------------------------------------------------------
    def holds(self, external_id: str, email: str) -> bool:
        """Whether any profile carries the external id or the address."""
        with self.lock:
            return any(k == external_id or str(p.get("email") or "").lower() == email.lower() for k, p in self.profiles.items())

    def suppress(self, external_id: str, email: str, reason: str, at: datetime) -> None:
        """A global email suppression recorded at Klaviyo (an unsubscribe, a hard bounce, ...)."""
        with self.lock:
            profile = self.profiles.setdefault(external_id, {"id": "01" + secrets.token_hex(12).upper(), "lists": set()})
            profile.setdefault("email", email)
            profile["external_id"] = external_id
            profile.setdefault("suppression", []).append({"reason": reason, "timestamp": at.astimezone(UTC).isoformat()})

    def members_of(self, list_id: str) -> set[str]:
        with self.lock:
            return {key for key, p in self.profiles.items() if list_id in p["lists"]}


def _profiles_query_problem(request: Request) -> str:
    """The first breach of get_profiles' documented parameters, or ''."""
    unknown = sorted(set(request.query) - PROFILE_QUERY)
    if unknown:
        return f"query parameters {unknown} are not documented"
    fields = set((request.param("fields[profile]") or "").split(",")) - {""}
    if fields - PROFILE_FIELDS:
        return f"fields[profile] {sorted(fields - PROFILE_FIELDS)} are not in the documented enum"
    if request.param("sort") is not None and request.param("sort") not in PROFILE_SORTS:
        return f"sort {request.param('sort')!r} is not in the documented enum"
    if request.param("additional-fields[profile]") not in (None, "subscriptions", "predictive_analytics"):
        return "additional-fields[profile] must be subscriptions or predictive_analytics"
    size = request.param("page[size]") or "20"
    if not size.isdigit() or not 1 <= int(size) <= 100:
        return "page[size] must be 1..100"
    return ""


def _profile_resource(key: str, profile: dict[str, Any], fields: set[str], base: str) -> dict[str, Any]:
    """A profile as get_profiles returns it, with only the requested (sparse) fields."""
    suppression = [dict(s) for s in profile.get("suppression") or []]
    marketing: dict[str, Any] = {
        "can_receive_email_marketing": not suppression,
        "consent": "UNSUBSCRIBED" if suppression else "SUBSCRIBED",
        "suppression": suppression,
    }
    attributes: dict[str, Any] = {
        "email": profile.get("email"),
        "external_id": profile.get("external_id", key),
        "subscriptions": {"email": {"marketing": marketing}},
    }
    wanted = {f.split(".")[0] for f in fields} if fields else set(attributes)
    if fields and "subscriptions" in wanted and "subscriptions" not in fields:
        named = {f.rsplit(".", 1)[-1] for f in fields if f.startswith("subscriptions.email.marketing.")}
        marketing_keys = named | {"can_receive_email_marketing", "consent"} if named else set(marketing)
        attributes["subscriptions"] = {"email": {"marketing": {k: v for k, v in marketing.items() if k in marketing_keys}}}
    kept = {k: v for k, v in attributes.items() if k in wanted}
    return {"type": "profile", "id": profile["id"], "attributes": kept, "links": {"self": f"{base}/api/profiles/{profile['id']}/"}}


def _event_problem(body: bytes, attributes: dict[str, Any], now: datetime | None) -> str | None:
    """create_event's documented limits beyond the schema (its description and the events API overview)."""
    if len(body) > MAX_EVENT_BYTES:
        return f"event payload of {len(body)} bytes is over 5 MB"
    properties = attributes.get("properties") or {}
    if len(properties) > MAX_EVENT_PROPERTIES:
        return f"{len(properties)} properties (at most {MAX_EVENT_PROPERTIES})"
    if any(len(text) > MAX_EVENT_STRING for text in _strings(properties)):
        return "a property string is over 100 KB"
    if len(attributes["metric"]["data"]["attributes"]["name"]) >= MAX_METRIC_NAME:
        return "metric name must be less than 128 characters"
    at = attributes.get("time")
    if at is not None:
        try:
            when = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            return f"time {at!r} is not an ISO 8601 date-time"
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        if when.year < 1991 or (now is not None and when > now + timedelta(days=365)):
            return f"time {at!r} must be after 1990 and at most a year ahead"
    return None


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
