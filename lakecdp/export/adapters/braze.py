"""Braze /users/track: attributes and email subscription state, segments as an array attribute.

- POST /users/track with up to 75 attribute objects; Bearer REST API key; 201 with
  `attributes_processed` and non-fatal `errors` [{type, input_array, index}]
  (https://www.braze.com/docs/api/endpoints/user_data/post_user_track/).
- Array attributes take {"add": [...]} / {"remove": [...]}
  (https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/array_of_strings/).
- `email_subscribe`: "opted_in" records explicit consent
  (https://www.braze.com/docs/api/objects_filters/user_attributes_object/).
- 3,000 requests per 3 seconds; a 429 carries X-RateLimit-Reset (epoch seconds), no Retry-After
  (https://www.braze.com/docs/api/api_limits/).
- Erasure: POST /users/delete {external_ids: [...]} (up to 50, one identifier kind a request);
  answers {deleted: <user ids queued for deletion>}; 20,000 requests a minute, shared with
  /users/alias/new, /users/identify and /users/merge
  (https://www.braze.com/docs/api/endpoints/user_data/post_user_delete/).
- Opt-outs: GET /email/unsubscribes and GET /email/hard_bounces with end_date (required) and
  start_date (YYYY-MM-DD, midnight UTC, start before end), limit <= 500 and offset: page until a
  call returns fewer than `limit`; answers {emails: [{email, unsubscribed_at | hard_bounced_at}]}
  (https://www.braze.com/docs/api/endpoints/email/get_query_unsubscribed_email_addresses/,
  https://www.braze.com/docs/api/endpoints/email/get_list_hard_bounces/). Only addresses come back,
  so each is hashed at once (email_sha256) and dropped; 250,000 requests an hour.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from lakecdp.export.adapters.base import (
    BOUNCED,
    DELETION_REQUESTED,
    NOT_FOUND,
    UNSUBSCRIBED,
    Adapter,
    OptOut,
    all_failed,
    http_reason,
)
from lakecdp.export.batches import UPSERT, Batch, BatchResult, Member, MemberOutcome, json_bytes
from lakecdp.export.http import ApiClient, DestinationError, RetriesExhausted
from lakecdp.export.identifiers import email_sha256, normalize_email, scrub_pii
from lakecdp.export.settings import RateLimitSpec

# Our attribute names -> Braze's standard user attributes.
BRAZE_ATTRIBUTES = {"first_name": "first_name", "last_name": "last_name", "country": "country", "city": "home_city"}
# /users/delete has its own limit, below /users/track's 3,000 per 3 seconds.
DELETION_LIMITS = (RateLimitSpec(requests=20_000, per=timedelta(minutes=1)),)
OPT_OUT_PAGE = 500  # /email/unsubscribes and /email/hard_bounces `limit` maximum
FIRST_DAY = date(2000, 1, 1)  # start_date when every opt-out is wanted (the API needs one)
# route -> (the field holding the time, what it is, the word kept as the reason)
OPT_OUT_ROUTES = {
    "/email/unsubscribes": ("unsubscribed_at", UNSUBSCRIBED, "Braze unsubscribe"),
    "/email/hard_bounces": ("hard_bounced_at", BOUNCED, "Braze hard bounce"),
}


class BrazeAdapter(Adapter):
    identifier_kind = "customer_id"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers = {"Authorization": f"Bearer {self.secret('api_key_env')}", "Content-Type": "application/json"}
        self.client = self.api_client()
        self._url = f"{self.settings.base_url.rstrip('/')}/users/track"
        self._deletions: ApiClient | None = None  # built on the first erasure: exports never need it

    def _attributes(self, member: Member, segment: str, kind: str) -> dict[str, Any]:
        array = self.settings.segments_attribute
        if kind != UPSERT:
            return {"external_id": member.esp_id, array: {"remove": [segment]}}
        values = self.attribute_values(member)
        body: dict[str, Any] = {"external_id": member.esp_id, "email": member.email, "email_subscribe": "opted_in"}
        body.update({BRAZE_ATTRIBUTES[k]: v for k, v in values.items() if v is not None})
        body.update(member.merge_fields)  # custom attributes
        body[array] = {"add": [segment]}
        return body

    def send(self, batch: Batch) -> BatchResult:
        objects = [self._attributes(m, batch.segment, batch.kind) for m in batch.members]
        try:
            body = json_bytes({"attributes": objects})
            response = self.client.request("POST", self._url, endpoint="users.track", headers=self._headers, body=body)
        except RetriesExhausted as exc:
            return all_failed(batch, exc.reason, retryable=True)
        if response.status_code == 401:
            raise DestinationError(f"{self.name}: Braze refused the REST API key: {http_reason(response)}")
        if response.status_code not in (200, 201):
            return all_failed(batch, http_reason(response, _message(response)), retryable=False)
        document = response.json()
        failed: dict[int, str] = {}
        for error in document.get("errors") or []:
            if error.get("input_array", "attributes") == "attributes" and isinstance(error.get("index"), int):
                failed[error["index"]] = scrub_pii(str(error.get("type")))
        outcomes = [
            MemberOutcome.failed(m.customer_id, failed[i], retry_alone=True) if i in failed else MemberOutcome.sent(m.customer_id)
            for i, m in enumerate(batch.members)
        ]
        return BatchResult(batch, outcomes, stats={"processed": int(document.get("attributes_processed") or 0)})

    def forget(self, customer_id: str, email: str | None) -> str:
        # lakecdp names every Braze user by external_id, so that is the identifier to delete.
        if self._deletions is None:
            self._deletions = self.api_client(rate_limits=DELETION_LIMITS)
        url = f"{self.settings.base_url.rstrip('/')}/users/delete"
        body = json_bytes({"external_ids": [customer_id]})
        response = self._deletions.request("POST", url, endpoint="users.delete", headers=self._headers, body=body)
        if response.status_code == 401:
            raise DestinationError(f"{self.name}: Braze refused the REST API key: {http_reason(response)}")
        if not 200 <= response.status_code < 300:
            raise DestinationError(f"{self.name}: user deletion refused: {http_reason(response, _message(response))}")
        return DELETION_REQUESTED if int(response.json().get("deleted") or 0) else NOT_FOUND

    def opt_outs(self, since: datetime | None) -> Iterator[OptOut]:
        # Braze takes whole UTC days: from since's day to tomorrow (end_date is exclusive midnight).
        start = since.astimezone(UTC).date() if since is not None else FIRST_DAY
        end = self.runtime.clock.now().astimezone(UTC).date() + timedelta(days=1)
        for route, (time_field, kind, reason) in OPT_OUT_ROUTES.items():
            for entry in self._email_pages(route, start, end):
                address = normalize_email(entry.get("email"))
                if address is None:
                    continue
                # The doc's hard-bounce example says hard_bounced_at, its field table unsubscribed_at: take either.
                at = entry.get(time_field) or entry.get("unsubscribed_at")
                yield OptOut("email_sha256", email_sha256(address), kind, _braze_time(at, route, self.name), reason)

    def _email_pages(self, route: str, start: date, end: date) -> Iterator[dict[str, Any]]:
        url = f"{self.settings.base_url.rstrip('/')}{route}"
        offset = 0
        while True:
            params: dict[str, Any] = {"start_date": start.isoformat(), "end_date": end.isoformat(), "limit": OPT_OUT_PAGE, "offset": offset}
            if route == "/email/unsubscribes":
                params["sort_direction"] = "asc"  # oldest first: unsubscribes arriving while paging land at the end
            try:
                response = self.client.request("GET", url, endpoint=route, headers=self._headers, params=params)
            except RetriesExhausted as exc:
                raise DestinationError(f"{self.name}: reading {route} failed: {exc.reason}") from None
            if response.status_code == 401:
                raise DestinationError(f"{self.name}: Braze refused the REST API key: {http_reason(response)}")
            if response.status_code != 200:
                raise DestinationError(f"{self.name}: reading {route}: {http_reason(response, _message(response))}")
            page = response.json().get("emails") or []
            yield from page
            if len(page) < OPT_OUT_PAGE:
                return
            offset += len(page)

    def close(self) -> None:
        super().close()
        if self._deletions is not None:
            self._deletions.close()


def _braze_time(text: str | None, route: str, destination: str) -> datetime | None:
    """ISO 8601, or the '2016-08-25 15:24:32 +0000' form of the doc's examples."""
    if not text:
        return None
    for parse in (lambda t: datetime.fromisoformat(t.replace("Z", "+00:00")), lambda t: datetime.strptime(t, "%Y-%m-%d %H:%M:%S %z")):
        try:
            at = parse(text)
        except ValueError:
            continue
        return at if at.tzinfo else at.replace(tzinfo=UTC)
    raise DestinationError(f"{destination}: {route} returned a time Braze does not document: {text!r}")


def _message(response: Any) -> str:
    try:
        return str(response.json().get("message"))
    except ValueError:
        return response.text
