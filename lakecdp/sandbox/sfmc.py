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
POST /Service.asmx, the SOAP API (the token answer's soap_instance_url): SOAP 1.1 with
`SOAPAction: Retrieve`, a live token in the `fueloauth` header element (else a Security fault,
"Login Failed", HTTP 500, as Marketing Cloud answers); a RetrieveRequest of ObjectType Subscriber
whose Properties are Subscriber properties
(https://developer.salesforce.com/docs/marketing/marketing-cloud/guide/retrieving_subscribers_by_subscriber_key.html)
and whose Filter is a SimpleFilterPart (Property, SimpleOperator, Value or DateValue) or a
ComplexFilterPart (LeftOperand, LogicalOperator AND|OR, RightOperand); dates without a zone are
system time (UTC-6). At most `soap_page_size` (2,500, as documented) Results per answer; the rest
comes with OverallStatus MoreDataAvailable and a RequestID to send back as ContinueRequest. Only
the requested properties are returned.
"""

from __future__ import annotations

import secrets
import time
import uuid

# Requests carrying a DTD are refused before parsing (_soap), hence the nosec.
import xml.etree.ElementTree as ET  # nosec B405
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from html import escape  # text for XML: escapes &, <, > and quotes
from typing import Any

from lakecdp.sandbox.base import ContractServer, Request, Response

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
PARTNER = "http://exacttarget.com/wsdl/partnerAPI"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
SYSTEM_TIME = timezone(timedelta(hours=-6))
SUBSCRIBER_PROPERTIES = {"ID", "CreatedDate", "Client.ID", "EmailAddress", "SubscriberKey", "UnsubscribedDate", "Status"}
SUBSCRIBER_PROPERTIES |= {"EmailTypePreference", "PartnerKey", "ModifiedDate"}
SUBSCRIBER_STATUSES = {"Active", "Bounced", "Held", "Unsubscribed", "Deleted"}
OPERATORS = {"equals", "notEquals", "greaterThan", "lessThan", "greaterThanOrEqual", "lessThanOrEqual", "IN", "isNull", "isNotNull"}
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
        self.subscribers: dict[str, dict[str, str]] = {}  # SubscriberKey -> All Subscribers record
        self.soap_page_size = 2500
        self._continuations: dict[str, tuple[list[dict[str, str]], list[str]]] = {}

    def handle(self, request: Request) -> Response:
        if request.path == "/v2/token":
            return self._token(request)
        if request.path == "/Service.asmx":
            return self._soap(request)
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
                "soap_instance_url": self.url + "/",
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

    def _soap(self, request: Request) -> Response:
        if request.method != "POST" or not (request.headers.get("Content-Type") or "").startswith("text/xml"):
            self.violation("SOAP: POST a text/xml envelope")
            return _fault("Client", "SOAP 1.1 expects POST with Content-Type text/xml", 415)
        if request.headers.get("SOAPAction", "").strip('"') != "Retrieve":
            self.violation(f"SOAP: SOAPAction {request.headers.get('SOAPAction')!r}, expected Retrieve")
            return _fault("Client", "Unknown SOAPAction")
        if b"<!DOCTYPE" in request.body:
            self.violation("SOAP: a message must not carry a DTD")
            return _fault("Client", "DTD not allowed")
        try:
            root = ET.fromstring(request.body)  # nosec B314
        except ET.ParseError as exc:
            self.violation(f"SOAP: envelope is not XML: {exc}")
            return _fault("Client", "Malformed envelope")
        token = root.findtext(f"{{{SOAP_ENV}}}Header/{{http://exacttarget.com}}fueloauth") or ""
        with self.lock:
            expires = self.tokens.get(token)
        if expires is None or expires < time.monotonic():
            return _fault("q0:Security", "Login Failed")
        retrieve = root.find(f"{{{SOAP_ENV}}}Body/{{{PARTNER}}}RetrieveRequestMsg/{{{PARTNER}}}RetrieveRequest")
        if retrieve is None:
            self.violation("SOAP: Body holds no RetrieveRequestMsg/RetrieveRequest")
            return _fault("Client", "RetrieveRequest required")
        return self._retrieve(retrieve)

    def _retrieve(self, retrieve: ET.Element) -> Response:
        continue_id = retrieve.findtext(f"{{{PARTNER}}}ContinueRequest")
        if continue_id:
            with self.lock:
                pending = self._continuations.pop(continue_id, None)
            if pending is None:
                self.violation(f"SOAP: ContinueRequest {continue_id!r} names no pending retrieve")
                return _retrieve_answer("Error: ContinueRequest not found", "", [], [])
            return self._page(*pending)
        properties = [p.text or "" for p in retrieve.findall(f"{{{PARTNER}}}Properties")]
        problem = ""
        if retrieve.findtext(f"{{{PARTNER}}}ObjectType") != "Subscriber":
            problem = "ObjectType must be Subscriber (the only object served here)"
        elif not properties or set(properties) - SUBSCRIBER_PROPERTIES:
            problem = f"Properties {sorted(set(properties) - SUBSCRIBER_PROPERTIES)} are not Subscriber properties"
        if problem:
            self.violation(f"SOAP Retrieve: {problem}")
            return _retrieve_answer(f"Error: {problem}", "", [], [])
        filter_node = retrieve.find(f"{{{PARTNER}}}Filter")
        try:
            with self.lock:
                selected = [dict(r, SubscriberKey=k) for k, r in self.subscribers.items() if _matches(filter_node, r, k)]
        except ValueError as exc:
            self.violation(f"SOAP Retrieve filter: {exc}")
            return _retrieve_answer(f"Error: {exc}", "", [], [])
        return self._page(selected, properties)

    def _page(self, selected: list[dict[str, str]], properties: list[str]) -> Response:
        page, rest = selected[: self.soap_page_size], selected[self.soap_page_size :]
        request_id = str(uuid.uuid4())
        if rest:
            with self.lock:
                self._continuations[request_id] = (rest, properties)
        return _retrieve_answer("MoreDataAvailable" if rest else "OK", request_id, page, properties)

    def set_subscriber(self, key: str, email: str, status: str, unsubscribed_at: datetime | None = None) -> None:
        """An All Subscribers record; UnsubscribedDate is kept in system time, as Marketing Cloud reports it."""
        if status not in SUBSCRIBER_STATUSES:
            raise ValueError(f"status {status!r} is not one of {sorted(SUBSCRIBER_STATUSES)}")
        record = {"EmailAddress": email, "Status": status}
        if unsubscribed_at is not None:
            record["UnsubscribedDate"] = unsubscribed_at.astimezone(SYSTEM_TIME).replace(tzinfo=None).isoformat(timespec="seconds")
        with self.lock:
            self.subscribers[key] = record

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def holds(self, subscriber_key: str) -> bool:
        with self.lock:
            return any(key == subscriber_key for key, _ in self.rows)

    def members(self, segment: str) -> set[str]:
        with self.lock:
            return {k for (k, s), row in self.rows.items() if s == segment and row.get("InSegment")}


def _fault(code: str, text: str, status: int = 500) -> Response:
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><soap:Fault>'
        f"<faultcode>{escape(code)}</faultcode><faultstring>{escape(text)}</faultstring>"
        "</soap:Fault></soap:Body></soap:Envelope>"
    )
    return Response(status, body.encode(), content_type="text/xml; charset=utf-8")


def _retrieve_answer(status: str, request_id: str, results: list[dict[str, str]], properties: list[str]) -> Response:
    items = "".join(
        '<Results xsi:type="Subscriber">' + "".join(f"<{p}>{escape(r[p])}</{p}>" for p in properties if r.get(p) is not None) + "</Results>"
        for r in results
    )
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Body>'
        f'<RetrieveResponseMsg xmlns="{PARTNER}"><OverallStatus>{escape(status)}</OverallStatus>'
        f"<RequestID>{escape(request_id)}</RequestID>{items}</RetrieveResponseMsg></soap:Body></soap:Envelope>"
    )
    return Response(200, body.encode(), content_type="text/xml; charset=utf-8")


def _matches(node: ET.Element | None, record: dict[str, str], key: str) -> bool:
    """Whether a Subscriber record passes a (Simple|Complex)FilterPart; ValueError for a malformed one."""
    if node is None:
        return True
    kind = node.get(XSI_TYPE)
    if kind == "ComplexFilterPart":
        operator = node.findtext(f"{{{PARTNER}}}LogicalOperator")
        left, right = node.find(f"{{{PARTNER}}}LeftOperand"), node.find(f"{{{PARTNER}}}RightOperand")
        if operator not in ("AND", "OR") or left is None or right is None:
            raise ValueError("ComplexFilterPart needs LeftOperand, LogicalOperator AND|OR and RightOperand")
        results = (_matches(left, record, key), _matches(right, record, key))
        return all(results) if operator == "AND" else any(results)
    if kind != "SimpleFilterPart":
        raise ValueError(f"Filter xsi:type {kind!r} is neither SimpleFilterPart nor ComplexFilterPart")
    prop, operator = node.findtext(f"{{{PARTNER}}}Property") or "", node.findtext(f"{{{PARTNER}}}SimpleOperator") or ""
    if prop not in SUBSCRIBER_PROPERTIES or operator not in OPERATORS:
        raise ValueError(f"SimpleFilterPart on {prop!r} with {operator!r}")
    actual = key if prop == "SubscriberKey" else record.get(prop)
    date_value = node.findtext(f"{{{PARTNER}}}DateValue")
    if date_value is not None:
        wanted, have = _system_instant(date_value), _system_instant(actual) if actual else None
        return have is not None and _compare(operator, have, wanted)
    values = [v.text or "" for v in node.findall(f"{{{PARTNER}}}Value")]
    if prop == "Status" and set(values) - SUBSCRIBER_STATUSES:
        raise ValueError(f"Status values {values} are not SubscriberStatus values")
    if operator == "IN":
        return actual in values
    return actual is not None and bool(values) and _compare(operator, actual, values[0])


def _compare(operator: str, have: Any, wanted: Any) -> bool:
    table = {
        "equals": have == wanted,
        "notEquals": have != wanted,
        "greaterThan": have > wanted,
        "lessThan": have < wanted,
        "greaterThanOrEqual": have >= wanted,
        "lessThanOrEqual": have <= wanted,
    }
    return table.get(operator, False)


def _system_instant(text: str) -> datetime:
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (at if at.tzinfo else at.replace(tzinfo=SYSTEM_TIME)).astimezone(UTC)
