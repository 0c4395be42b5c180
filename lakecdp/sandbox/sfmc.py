"""Salesforce Marketing Cloud: OAuth2 client credentials + async data extension rows.

Enforced: POST /v2/token with grant_type=client_credentials and the right client id/secret
(JSON body); REST calls with `Authorization: Bearer <a live token>` (tokens expire after
`token_ttl` seconds or when revoked: 401); PUT /data/v1/async/dataextensions/key:{key}/rows with
a non-empty `items` array whose rows carry the data extension's primary key (SubscriberKey,
Segment) and only its columns; GET .../{requestId}/status (Pending first, then Complete with
hasErrors) and /results. Rows with an invalid address are rejected with errorCode/message.
POST /contacts/v1/contacts/actions/delete?type=keys {values: [contact keys], DeleteOperationType:
ContactAndAttributes} -> 200 {operationInitiated, operationID, ...}
(https://developer.salesforce.com/docs/marketing/marketing-cloud/guide/DeleteByContactKeys.html);
the real deletion runs after a suppression period, here the contact's rows (SubscriberKey = contact
key) are gone at once.
POST /interaction/v1/events (Journey Builder entry event,
https://developer.salesforce.com/docs/marketing/marketing-cloud/references/mc_rest_interaction/postEvent.html):
ContactKey and EventDefinitionKey required (the key must be one of `event_definition_keys`, else
400), Data an object of scalar values (they fill the entry source's data extension); answers 201
{eventInstanceId}. Journey Builder has no idempotency key: `entries` keeps every entry and
`deliveries` counts them by Data.TriggerId (else the contact key), so a duplicate shows as 2.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterable
from typing import Any

from lakecdp.sandbox.base import ContractServer, Request, Response

COLUMNS = {"SubscriberKey", "Segment", "InSegment", "EmailAddress", "FirstName", "LastName", "Country", "City"}
PRIMARY_KEY = ("SubscriberKey", "Segment")


class SfmcServer(ContractServer):
    name = "sfmc"

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        data_extension_key: str,
        invalid_emails: Iterable[str] = (),
        token_ttl: float = 1080.0,
        polls_until_complete: int = 1,
        latency: float = 0.0,
        event_definition_keys: Iterable[str] = (),
    ) -> None:
        super().__init__(latency=latency)
        self.event_definition_keys = set(event_definition_keys)
        self.entries: list[dict[str, Any]] = []  # accepted journey entry events
        self.client_id, self.client_secret, self.key = client_id, client_secret, data_extension_key
        self.invalid = {e.lower() for e in invalid_emails}
        self.token_ttl, self.polls_until_complete = token_ttl, polls_until_complete
        self.tokens: dict[str, float] = {}
        self.async_requests: dict[str, dict[str, Any]] = {}
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.tokens_issued = 0
        self.contact_deletes: list[list[str]] = []

    def handle(self, request: Request) -> Response:
        if request.path == "/v2/token":
            return self._token(request)
        token = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        if not (request.headers.get("Authorization") or "").startswith("Bearer "):
            self.violation(f"{request.method} {request.path} without a Bearer token")
            return Response(401, {"message": "Not Authorized", "errorcode": 0})
        with self.lock:
            expires = self.tokens.get(token)
        if expires is None or expires < time.monotonic():
            return Response(401, {"message": "Not Authorized", "errorcode": 0, "documentation": ""})
        if request.method == "PUT" and request.path == f"/data/v1/async/dataextensions/key:{self.key}/rows":
            return self._upsert(request)
        if request.method == "POST" and request.path == "/interaction/v1/events":
            return self._entry_event(request)
        if request.method == "POST" and request.path == "/contacts/v1/contacts/actions/delete":
            return self._delete_contacts(request)
        parts = request.path.split("/")
        if request.method == "GET" and len(parts) == 6 and parts[:4] == ["", "data", "v1", "async"]:
            entry = self.async_requests.get(parts[4])
            if entry is None:
                return Response(404, {"message": "request not found"})
            return self._status(parts[4], entry) if parts[5] == "status" else self._results(entry)
        self.violation(f"unknown route {request.method} {request.path}")
        return Response(404, {"message": "Not found", "errorcode": 10002})

    def _token(self, request: Request) -> Response:
        body = request.json() if request.body else {}
        if request.method != "POST" or not isinstance(body, dict) or body.get("grant_type") != "client_credentials":
            self.violation("token: POST a JSON body with grant_type=client_credentials")
            return Response(400, {"error": "unsupported_grant_type"})
        if body.get("client_id") != self.client_id or body.get("client_secret") != self.client_secret:
            return Response(401, {"error": "invalid_client", "error_description": "Invalid client ID."})
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.monotonic() + self.token_ttl
            self.tokens_issued += 1
        return Response(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": int(self.token_ttl),
                "scope": "data_extensions_write",
                "rest_instance_url": self.url + "/",
            },
        )

    def _upsert(self, request: Request) -> Response:
        body = request.json()
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            self.violation("rows: body must be {items: [...]} with at least one row")
            return Response(400, {"message": "items is required", "errorcode": 10006})
        for index, row in enumerate(items):
            missing = [k for k in PRIMARY_KEY if not row.get(k)]
            unknown = sorted(set(row) - COLUMNS)
            if missing or unknown:
                self.violation(f"rows: items[{index}] lacks primary key {missing} or has unknown columns {unknown}")
                return Response(400, {"message": f"items[{index}] invalid", "errorcode": 10006})
        request_id = secrets.token_hex(16)
        results = []
        with self.lock:
            for row in items:
                email = (row.get("EmailAddress") or "").lower()
                if email and email in self.invalid:
                    results.append({"errorCode": "InvalidEmailAddress", "message": f"Invalid email address: {email}", "status": "Error"})
                    continue
                key = (row["SubscriberKey"], row["Segment"])
                self.rows.setdefault(key, {}).update(row)
                self.deliveries[row["SubscriberKey"]] += 1
                results.append({"status": "OK"})
            self.async_requests[request_id] = {"results": results, "polls": 0}
        return Response(202, {"requestId": request_id, "resultMessages": []})

    def _entry_event(self, request: Request) -> Response:
        body = request.json() if request.body else None
        if not isinstance(body, dict) or not body.get("ContactKey") or not body.get("EventDefinitionKey"):
            self.violation("interaction events: ContactKey and EventDefinitionKey are required")
            return Response(400, {"message": "ContactKey and EventDefinitionKey are required", "errorcode": 10000})
        data = body.get("Data", {})
        unknown = sorted(set(body) - {"ContactKey", "EventDefinitionKey", "Data"})
        if unknown or not isinstance(data, dict) or any(isinstance(v, (dict, list)) for v in data.values()):
            self.violation(f"interaction events: unknown keys {unknown} or Data not a flat object of field values")
            return Response(400, {"message": "Data must map data extension fields to values", "errorcode": 10000})
        if body["EventDefinitionKey"] not in self.event_definition_keys:
            return Response(400, {"message": f"Event definition {body['EventDefinitionKey']} not found", "errorcode": 30000})
        with self.lock:
            self.entries.append(body)
            self.deliveries[str(data.get("TriggerId") or body["ContactKey"])] += 1
        return Response(201, {"eventInstanceId": str(uuid.uuid4())})

    def _delete_contacts(self, request: Request) -> Response:
        body = request.json() if request.body else None
        fields = {k.lower(): v for k, v in body.items()} if isinstance(body, dict) else {}
        values = fields.get("values")
        if not isinstance(values, list):
            values = []  # as invalid as an empty list
        is_valid = (
            request.param("type") == "keys"
            and fields.get("deleteoperationtype") == "ContactAndAttributes"
            and bool(values)
            and all(isinstance(v, str) and v for v in values)
        )
        if not is_valid:
            self.violation("contacts delete: ?type=keys with {values: [contact keys], DeleteOperationType: ContactAndAttributes}")
            return Response(400, {"message": "invalid delete request", "errorcode": 10006})
        with self.lock:
            self.contact_deletes.append(list(values))
            for key in [k for k in self.rows if k[0] in values]:
                del self.rows[key]
            operation = len(self.contact_deletes)
        return Response(
            200,
            {
                "operationInitiated": True,
                "operationID": operation,
                "hasErrors": False,
                "resultMessages": [],
                "requestServiceMessageID": secrets.token_hex(16),
                "serviceMessageID": secrets.token_hex(16),
                "responseDateTime": "2026-11-01T00:00:00",
            },
        )

    def _status(self, request_id: str, entry: dict[str, Any]) -> Response:
        with self.lock:
            entry["polls"] += 1
            done = entry["polls"] >= self.polls_until_complete
        has_errors = any(r["status"] != "OK" for r in entry["results"])
        status = {
            "requestStatus": "Complete" if done else "Pending",
            "hasErrors": done and has_errors,
            "resultStatus": "OK",
            "requestId": request_id,
            "callDateTime": "2026-11-01T00:00:00",
        }
        return Response(200, {"status": status, "requestId": secrets.token_hex(8)})

    def _results(self, entry: dict[str, Any]) -> Response:
        items = [r for r in entry["results"] if r["status"] != "OK"]
        return Response(200, {"page": 1, "pageSize": 50, "count": len(items), "items": items})

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def holds(self, subscriber_key: str) -> bool:
        with self.lock:
            return any(key == subscriber_key for key, _ in self.rows)

    def members(self, segment: str) -> set[str]:
        with self.lock:
            return {k for (k, s), row in self.rows.items() if s == segment and row.get("InSegment")}
