"""A signed webhook for any other receiver.

Body: {destination, segment, run_id, batch_id, kind, members: [{action, customer_id, email_sha256,
[email], attributes}]}; customer_id is the retailer's id (`customers.external_id`), not the pseudonym. Headers: `Idempotency-Key` (the batch id: a receiver stores the first
response per key and replays it, so a resend after a crash changes nothing) and the Standard
Webhooks signature headers (lakecdp.webhooks; `webhook-id` is the idempotency key).
A 2xx may list `rejected: [{customer_id, reason}]`; those members are retried alone once.

Erasure: one signed delivery {destination, event: "customer.erased", customer_id, email_sha256}
(email_sha256 null when the customer has no address; never the address itself), the same
headers, an Idempotency-Key derived from its content; the receiver deletes the customer on its
side and answers 2xx.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from lakecdp.export.adapters.base import NOTIFIED, Adapter, all_failed, http_reason
from lakecdp.export.batches import REMOVE, UPSERT, Batch, BatchResult, MemberOutcome, json_bytes
from lakecdp.export.http import DestinationError, RetriesExhausted
from lakecdp.export.identifiers import email_sha256, scrub_pii
from lakecdp.webhooks import json_post_headers

ERASED_EVENT = "customer.erased"


class WebhookAdapter(Adapter):
    identifier_kind = "email_sha256"
    honours_idempotency_keys = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._secret = self.secret("secret_env")
        self.client = self.api_client()

    def _member(self, member: Any, kind: str) -> dict[str, Any]:
        if kind == REMOVE:
            return {"action": member.action, "customer_id": member.esp_id, "email_sha256": member.identifier}
        body = {"action": member.action, "customer_id": member.esp_id, "email_sha256": email_sha256(member.email)}
        if self.settings.identifier == "email":
            body["email"] = member.email
        body["attributes"] = self.attribute_values(member)
        if member.merge_fields:
            body["merge_fields"] = dict(member.merge_fields)
        return body

    def send(self, batch: Batch) -> BatchResult:
        document = {
            "destination": self.name,
            "segment": batch.segment,
            "run_id": batch.run_id,
            "batch_id": batch.batch_id,
            "kind": batch.kind,
            "members": [self._member(m, batch.kind) for m in batch.members],
        }
        try:
            body = json_bytes(document)
            headers = self._signed_headers(batch.idempotency_key)
            response = self.client.request("POST", self.settings.url, endpoint="webhook", headers=headers, body=body)
        except RetriesExhausted as exc:
            return all_failed(batch, exc.reason, retryable=True)
        if response.status_code in (401, 403):
            raise DestinationError(f"{self.name}: the receiver rejected our signature: {http_reason(response)}")
        if not 200 <= response.status_code < 300:
            return all_failed(batch, http_reason(response), retryable=False)
        rejected = {}
        if response.content:
            for item in (response.json() or {}).get("rejected") or []:
                rejected[str(item.get("customer_id"))] = scrub_pii(str(item.get("reason")))
        outcomes = [
            MemberOutcome.failed(m.customer_id, rejected[m.esp_id], retry_alone=True)
            if m.esp_id in rejected
            else MemberOutcome.sent(m.customer_id)
            for m in batch.members
        ]
        return BatchResult(batch, outcomes)

    def forget(self, customer_id: str, email: str | None) -> str:
        document = {
            "destination": self.name,
            "event": ERASED_EVENT,
            "customer_id": customer_id,
            "email_sha256": email_sha256(email) if email is not None else None,
        }
        body = json_bytes(document)
        # Same content, same key: a retry in a later run is a replay to the receiver, not a second erasure.
        key = "erase-" + hashlib.sha256(body).hexdigest()[:32]
        response = self.client.request("POST", self.settings.url, endpoint="webhook.erase", headers=self._signed_headers(key), body=body)
        if response.status_code in (401, 403):
            raise DestinationError(f"{self.name}: the receiver rejected our signature: {http_reason(response)}")
        if not 200 <= response.status_code < 300:
            raise DestinationError(f"{self.name}: the receiver refused the erasure: {http_reason(response)}")
        return NOTIFIED

    def _signed_headers(self, idempotency_key: str) -> Callable[[bytes], dict[str, str]]:
        return json_post_headers(self._secret, idempotency_key, self.runtime.clock)


__all__ = ["ERASED_EVENT", "UPSERT", "WebhookAdapter"]
