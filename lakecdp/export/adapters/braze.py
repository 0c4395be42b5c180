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
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from lakecdp.export.adapters.base import DELETION_REQUESTED, NOT_FOUND, Adapter, all_failed, http_reason
from lakecdp.export.batches import UPSERT, Batch, BatchResult, Member, MemberOutcome, json_bytes
from lakecdp.export.http import ApiClient, DestinationError, RetriesExhausted
from lakecdp.export.identifiers import scrub_pii
from lakecdp.export.settings import RateLimitSpec

# Our attribute names -> Braze's standard user attributes.
BRAZE_ATTRIBUTES = {"first_name": "first_name", "last_name": "last_name", "country": "country", "city": "home_city"}
# /users/delete has its own limit, below /users/track's 3,000 per 3 seconds.
DELETION_LIMITS = (RateLimitSpec(requests=20_000, per=timedelta(minutes=1)),)


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

    def close(self) -> None:
        super().close()
        if self._deletions is not None:
            self._deletions.close()


def _message(response: Any) -> str:
    try:
        return str(response.json().get("message"))
    except ValueError:
        return response.text
