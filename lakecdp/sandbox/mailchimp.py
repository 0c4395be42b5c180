"""Mailchimp Marketing API v3, the parts lakecdp uses, with its documented limits.

Enforced: Basic auth with the API key (any user name); POST /3.0/lists/{id} with at most 500
members, each with email_address and a valid status, update_existing a boolean, tags a list of
names; member tags; GET members with count <= 1000; at most 10 requests at once (more get 429,
Mailchimp's "too many simultaneous connections"). Members whose address is unsubscribed or
cleaned cannot be re-subscribed (the compliance state). Partial failures come back in `errors`.
POST .../members/{hash}/actions/delete-permanent (no body) removes the member for good: 204, 404
when absent, and the address can never be re-imported
(https://mailchimp.com/developer/marketing/api/list-members/delete-list-member/).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from typing import Any

from lakecdp.sandbox.base import ContractServer, Request, Response

STATUSES = {"subscribed", "unsubscribed", "cleaned", "pending", "transactional"}
MEMBER_KEYS = {
    "email_address",
    "email_type",
    "status",
    "merge_fields",
    "interests",
    "language",
    "vip",
    "location",
    "ip_signup",
    "timestamp_signup",
    "ip_opt",
    "timestamp_opt",
    "tags",
}
MAX_BATCH, MAX_CONNECTIONS, MAX_COUNT = 500, 10, 1000


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()  # Mailchimp's member id


def problem(status: int, title: str, detail: str) -> Response:
    return Response(
        status,
        {
            "type": "https://mailchimp.com/developer/marketing/docs/errors/",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": "",
        },
        content_type="application/problem+json",
    )


class MailchimpServer(ContractServer):
    name = "mailchimp"

    def __init__(
        self, *, api_key: str, list_id: str, invalid_emails: Iterable[str] = (), flaky_emails: Iterable[str] = (), latency: float = 0.0
    ) -> None:
        super().__init__(latency=latency)
        self.api_key, self.list_id = api_key, list_id
        self.invalid = {e.lower() for e in invalid_emails}  # always rejected: "looks fake or invalid"
        self.flaky = {e.lower() for e in flaky_emails}  # rejected once inside a multi-member batch
        self.members: dict[str, dict[str, Any]] = {}  # subscriber hash -> member
        self.forgotten: set[str] = set()  # subscriber hashes deleted permanently
        self.batch_sizes: list[int] = []

    def check_concurrency(self, request: Request, concurrent: int) -> Response | None:
        if concurrent > MAX_CONNECTIONS:
            self.violation(f"{concurrent} simultaneous requests (Mailchimp allows {MAX_CONNECTIONS})")
            return problem(429, "Too Many Requests", f"You have exceeded the limit of {MAX_CONNECTIONS} simultaneous connections.")
        return None

    def handle(self, request: Request) -> Response:
        if not self._authorized(request):
            return problem(401, "API Key Invalid", "Your API key may be invalid, or you've attempted to access the wrong datacenter.")
        base = f"/3.0/lists/{self.list_id}"
        if not request.path.startswith("/3.0/lists/"):
            self.violation(f"unknown route {request.method} {request.path}")
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        if not request.path.startswith(base):
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        rest = request.path[len(base) :]
        if request.method == "POST" and rest == "":
            return self._batch(request)
        match = re.fullmatch(r"/members/([0-9a-f]{32})/tags", rest)
        if request.method == "POST" and match:
            return self._tags(request, match.group(1))
        if request.method == "GET" and rest == "/members":
            return self._list_members(request)
        match = re.fullmatch(r"/members/([0-9a-f]{32})/actions/delete-permanent", rest)
        if request.method == "POST" and match:
            return self._delete_permanent(request, match.group(1))
        self.violation(f"unknown route {request.method} {request.path}")
        return problem(405, "Method Not Allowed", "The requested method and resource are not compatible.")

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            self.violation("request without HTTP Basic auth")
            return False
        try:
            _, _, key = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            self.violation("malformed Basic auth header")
            return False
        return key == self.api_key

    def _batch(self, request: Request) -> Response:
        body = request.json()
        errors = self._check_batch(body)
        if errors:
            self.violation(f"batch subscribe: {errors}")
            return problem(400, "Invalid Resource", errors)
        members = body["members"]
        self.batch_sizes.append(len(members))
        created: list[dict[str, Any]] = []
        updated: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for item in members:
            email = item["email_address"].strip().lower()
            key = subscriber_hash(email)
            existing = self.members.get(key)
            if email in self.invalid:
                failed.append(
                    {
                        "email_address": item["email_address"],
                        "error": f"{item['email_address']} looks fake or invalid, please enter a real email address.",
                        "error_code": "ERROR_GENERIC",
                    }
                )
                continue
            if email in self.flaky and len(members) > 1:
                self.flaky.discard(email)
                failed.append({"email_address": item["email_address"], "error": "Please try again later.", "error_code": "ERROR_GENERIC"})
                continue
            if key in self.forgotten:
                failed.append(
                    {
                        "email_address": item["email_address"],
                        "error": f"{item['email_address']} was permanently deleted and cannot be re-imported. The contact must re-subscribe to get back on the list.",
                        "error_code": "ERROR_GENERIC",
                    }
                )
                continue
            if existing and existing["status"] in ("unsubscribed", "cleaned") and item["status"] == "subscribed":
                failed.append(
                    {
                        "email_address": item["email_address"],
                        "error": f"{item['email_address']} is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be subscribed.",
                        "error_code": "ERROR_CONTACT_EXISTS",
                    }
                )
                continue
            if existing and not body.get("update_existing"):
                failed.append(
                    {
                        "email_address": item["email_address"],
                        "error": f"{item['email_address']} is already a list member.",
                        "error_code": "ERROR_CONTACT_EXISTS",
                    }
                )
                continue
            member = existing or {"id": key, "email_address": email, "tags": set(), "last_changed": "2026-11-01T00:00:00+00:00"}
            member.update(status=item["status"], merge_fields=dict(item.get("merge_fields") or {}))
            member["tags"] |= set(item.get("tags") or [])
            self.members[key] = member
            self.deliveries[key] += 1
            (updated if existing else created).append({"id": key, "email_address": email, "status": member["status"]})
        return Response(
            200,
            {
                "new_members": created,
                "updated_members": updated,
                "errors": failed,
                "total_created": len(created),
                "total_updated": len(updated),
                "error_count": len(failed),
                "_links": [],
            },
        )

    def _check_batch(self, body: Any) -> str:
        if not isinstance(body, dict) or not isinstance(body.get("members"), list):
            return "members must be an array"
        if not body["members"] or len(body["members"]) > MAX_BATCH:
            return f"members must hold 1..{MAX_BATCH} items, got {len(body['members'])}"
        if "update_existing" in body and not isinstance(body["update_existing"], bool):
            return "update_existing must be a boolean"
        for index, item in enumerate(body["members"]):
            unknown = set(item) - MEMBER_KEYS
            if unknown or not isinstance(item.get("email_address"), str) or item.get("status") not in STATUSES:
                return f"members[{index}]: needs email_address and a status in {sorted(STATUSES)}; unknown keys {sorted(unknown)}"
            if not isinstance(item.get("tags", []), list) or not all(isinstance(t, str) for t in item.get("tags", [])):
                return f"members[{index}].tags must be a list of tag names"
            if not all(isinstance(v, str) for v in (item.get("merge_fields") or {}).values()):
                return f"members[{index}].merge_fields values must be strings"
        return ""

    def _tags(self, request: Request, key: str) -> Response:
        body = request.json()
        tags = body.get("tags") if isinstance(body, dict) else None
        if not isinstance(tags, list) or not all(
            isinstance(t, dict) and t.get("name") and t.get("status") in ("active", "inactive") for t in tags
        ):
            self.violation("member tags: body must be {tags: [{name, status: active|inactive}]}")
            return problem(400, "Invalid Resource", "tags must be a list of {name, status}")
        member = self.members.get(key)
        if member is None:
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        for tag in tags:
            (member["tags"].add if tag["status"] == "active" else member["tags"].discard)(tag["name"])
        self.deliveries[key] += 1
        return Response(204)

    def _delete_permanent(self, request: Request, key: str) -> Response:
        if request.body:
            self.violation("delete-permanent takes no request body")
            return problem(400, "Invalid Resource", "This action takes no body.")
        with self.lock:
            if self.members.pop(key, None) is None:
                return problem(404, "Resource Not Found", "The requested resource could not be found.")
            self.forgotten.add(key)
        return Response(204)

    def _list_members(self, request: Request) -> Response:
        count, offset = int(request.param("count") or 10), int(request.param("offset") or 0)
        if count > MAX_COUNT:
            self.violation(f"members: count {count} > {MAX_COUNT}")
            return problem(400, "Invalid Resource", f"count must be <= {MAX_COUNT}")
        status = request.param("status")
        selected = [m for m in self.members.values() if status is None or m["status"] == status]
        fields = request.param("fields")
        wanted = {f.split(".", 1)[1] for f in fields.split(",") if f.startswith("members.")} if fields else None
        page = [{k: v for k, v in m.items() if k != "tags" and (wanted is None or k in wanted)} for m in selected[offset : offset + count]]
        return Response(200, {"members": page, "total_items": len(selected)})

    # ---- test helpers ---------------------------------------------------------------------------
    def set_status(self, email: str, status: str, last_changed: str = "2026-10-31T12:00:00+00:00") -> None:
        key = subscriber_hash(email)
        with self.lock:
            member = self.members.setdefault(key, {"id": key, "email_address": email.lower(), "tags": set(), "merge_fields": {}})
            member.update(status=status, last_changed=last_changed)

    def holds(self, email: str) -> bool:
        """Whether any member record (any status) exists for the address."""
        with self.lock:
            return subscriber_hash(email) in self.members

    def tagged(self, tag: str) -> set[str]:
        """Addresses currently carrying `tag`."""
        with self.lock:
            return {m["email_address"] for m in self.members.values() if tag in m["tags"]}
