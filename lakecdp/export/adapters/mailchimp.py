"""Mailchimp Marketing API v3: audience batch upsert with tags; removes untag the member.

- Batch subscribe/update: POST /3.0/lists/{list_id} {members[], update_existing}, up to 500
  members a call; answers 200 with per-member `errors`
  (https://mailchimp.com/developer/marketing/api/lists/batch-subscribe-or-unsubscribe/).
- Member tags: POST /3.0/lists/{list_id}/members/{subscriber_hash}/tags, 204
  (https://mailchimp.com/developer/marketing/api/list-member-tags/add-or-remove-member-tags/).
- Subscriber hash: MD5 of the lowercase address
  (https://mailchimp.com/developer/marketing/docs/methods-parameters/#path-parameters).
- Auth: HTTP Basic, any user name and the API key; the datacenter is in the host
  (https://mailchimp.com/developer/marketing/docs/fundamentals/#connecting-to-the-api).
- Limits: 10 concurrent connections, no published request rate and no rate headers; a 429
  means too many connections (https://mailchimp.com/developer/marketing/docs/fundamentals/#api-limits).
- Erasure: POST /3.0/lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent, 204; it
  deletes the member's personal data and the address can never be re-imported; 404 when the
  address is not in the audience (https://mailchimp.com/developer/marketing/api/list-members/delete-list-member/).
- Opt-outs: GET /3.0/lists/{list_id}/members?status=unsubscribed|cleaned&since_last_changed=...,
  paged by count/offset against total_items; `cleaned` members are hard bounces
  (https://mailchimp.com/developer/marketing/api/list-members/list-members-info/,
  https://mailchimp.com/help/about-your-contacts/#Cleaned).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from lakecdp.export.adapters.base import BOUNCED, DELETED, NOT_FOUND, UNSUBSCRIBED, Adapter, OptOut, all_failed, http_reason
from lakecdp.export.batches import UPSERT, Batch, BatchResult, Member, MemberOutcome, json_bytes
from lakecdp.export.http import DestinationError, RetriesExhausted
from lakecdp.export.identifiers import mailchimp_subscriber_hash, normalize_email, scrub_pii

# `count` maximum for list members (https://mailchimp.com/developer/marketing/docs/methods-parameters/#pagination)
PAGE_SIZE = 1000
MEMBER_FIELDS = "members.id,members.status,members.last_changed,total_items"  # never the address


class MailchimpAdapter(Adapter):
    identifier_kind = "subscriber_hash"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        token = base64.b64encode(f"lakecdp:{self.secret('api_key_env')}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json", "Accept": "application/json"}
        self.client = self.api_client()
        self._list_url = f"{self.settings.base_url.rstrip('/')}/3.0/lists/{self.settings.list_id}"

    def send(self, batch: Batch) -> BatchResult:
        return self._upsert(batch) if batch.kind == UPSERT else self._untag(batch)

    def _upsert(self, batch: Batch) -> BatchResult:
        tag = self.settings.tag(batch.segment)
        members = [
            {"email_address": m.email, "status": "subscribed", "merge_fields": self._merge_fields(m), "tags": [tag]} for m in batch.members
        ]
        body = json_bytes({"members": members, "update_existing": True})
        try:
            response = self.client.request("POST", self._list_url, endpoint="lists.batch", headers=self._headers, body=body)
        except RetriesExhausted as exc:
            return all_failed(batch, exc.reason, retryable=True)
        self._raise_if_refused(response)
        if response.status_code != 200:
            return all_failed(batch, http_reason(response, _problem(response)), retryable=False)
        document = response.json()
        by_email = {m.email: m.customer_id for m in batch.members}
        failed: dict[str, str] = {}
        for error in document.get("errors") or []:
            customer_id = by_email.get(normalize_email(error.get("email_address")))
            if customer_id is not None:
                failed[customer_id] = scrub_pii(f"{error.get('error_code') or 'ERROR'}: {error.get('error')}")
        outcomes = [
            MemberOutcome.failed(m.customer_id, failed[m.customer_id], retry_alone=True)
            if m.customer_id in failed
            else MemberOutcome.sent(m.customer_id)
            for m in batch.members
        ]
        stats = {"created": int(document.get("total_created") or 0), "matched": int(document.get("total_updated") or 0)}
        return BatchResult(batch, outcomes, stats=stats)

    def _untag(self, batch: Batch) -> BatchResult:
        body = json_bytes({"tags": [{"name": self.settings.tag(batch.segment), "status": "inactive"}]})
        outcomes = []
        for member in batch.members:
            url = f"{self._list_url}/members/{member.identifier}/tags"
            try:
                response = self.client.request("POST", url, endpoint="members.tags", headers=self._headers, body=body)
            except RetriesExhausted as exc:
                outcomes.append(MemberOutcome.failed(member.customer_id, exc.reason, retryable=True))
                continue
            self._raise_if_refused(response)
            # 404: the address is not in the audience, so it carries no tag to remove.
            if response.status_code in (200, 204, 404):
                outcomes.append(MemberOutcome.sent(member.customer_id))
            else:
                outcomes.append(MemberOutcome.failed(member.customer_id, http_reason(response, _problem(response))))
        return BatchResult(batch, outcomes)

    def forget(self, customer_id: str, email: str | None) -> str:
        # Mailchimp knows a member only by address: without one, lakecdp never sent them here.
        if email is None:
            return NOT_FOUND
        url = f"{self._list_url}/members/{mailchimp_subscriber_hash(email)}/actions/delete-permanent"
        response = self.client.request("POST", url, endpoint="members.delete_permanent", headers=self._headers)
        self._raise_if_refused(response)
        if response.status_code == 204:
            return DELETED
        if response.status_code == 404:
            return NOT_FOUND
        raise DestinationError(f"{self.name}: permanent delete refused: {http_reason(response, _problem(response))}")

    def opt_outs(self, since: datetime | None) -> Iterator[OptOut]:
        """Unsubscribed members, then cleaned (hard-bounced) ones, named by subscriber hash."""
        for status, kind in (("unsubscribed", UNSUBSCRIBED), ("cleaned", BOUNCED)):
            for member in self._members_with_status(status, since):
                changed = member.get("last_changed")
                changed_at = datetime.fromisoformat(changed) if changed else None
                yield OptOut("subscriber_hash", member["id"], kind, changed_at, f"Mailchimp {status}")

    def _members_with_status(self, status: str, since: datetime | None) -> Iterator[dict[str, Any]]:
        """Audience members with a status: id (subscriber hash), status, last_changed.

        Only those fields are requested, so no address crosses the wire.
        """
        offset = 0
        while True:
            params: dict[str, Any] = {"status": status, "count": PAGE_SIZE, "offset": offset, "fields": MEMBER_FIELDS}
            if since is not None:
                params["since_last_changed"] = since.isoformat()
            try:
                response = self.client.request(
                    "GET", f"{self._list_url}/members", endpoint="lists.members", headers=self._headers, params=params
                )
            except RetriesExhausted as exc:
                raise DestinationError(f"{self.name}: reading {status} members failed: {exc.reason}") from None
            self._raise_if_refused(response)
            if response.status_code != 200:
                raise DestinationError(f"{self.name}: reading {status} members: {http_reason(response, _problem(response))}")
            document = response.json()
            page = document.get("members") or []
            yield from page
            offset += len(page)
            if not page or offset >= int(document.get("total_items") or 0):
                return

    def _merge_fields(self, member: Member) -> dict[str, str]:
        # Content merge tags (content.yaml) must exist in the audience, like FNAME/LNAME.
        attributes = member.attributes
        fields = {
            tag: str(attributes[name])
            for name, tag in self.settings.merge_fields.items()
            if name in self.attributes and attributes.get(name) is not None
        }
        fields.update(member.merge_fields)
        return fields

    def _raise_if_refused(self, response: Any) -> None:
        if response.status_code in (401, 403):
            raise DestinationError(f"{self.name}: Mailchimp refused the API key: {http_reason(response, _problem(response))}")
        if response.status_code == 404 and "/members/" not in str(response.request.url):
            reason = http_reason(response, _problem(response))
            raise DestinationError(f"{self.name}: audience {self.settings.list_id} not found: {reason}")


def _problem(response: Any) -> str:
    """Mailchimp errors are application/problem+json: title and detail."""
    try:
        document = response.json()
    except ValueError:
        return response.text
    return f"{document.get('title', '')}: {document.get('detail', '')}".strip(": ")
