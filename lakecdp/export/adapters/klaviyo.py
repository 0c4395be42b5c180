"""Klaviyo (API revision 2026-07-15): bulk profile import jobs that join a list; removes leave the list.

- POST /api/profile-bulk-import-jobs: up to 10,000 profiles and 5 MB a job, 100 KB a profile;
  `relationships.lists` adds them to the list; 202 + job id
  (https://developers.klaviyo.com/en/reference/bulk_import_profiles).
- GET /api/profile-bulk-import-jobs/{id} until `complete`, then its import-errors, whose
  `original_payload` names the profile (https://developers.klaviyo.com/en/reference/get_errors_for_bulk_import_profiles_job).
- DELETE /api/lists/{id}/relationships/profiles: up to 1,000 profile ids a call
  (https://developers.klaviyo.com/en/reference/remove_profiles_from_list); the ids come from
  GET /api/profiles?filter=any(external_id,[...]) (https://developers.klaviyo.com/en/reference/get_profiles).
- Headers: `Authorization: Klaviyo-API-Key <key>`, `revision`, JSON:API media type
  (https://developers.klaviyo.com/en/reference/api_overview).
- Rate limits per endpoint, burst 10/s and steady 150/m for the bulk routes (the OpenAPI
  `x-klaviyo-ratelimit`); 429 carries Retry-After
  (https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling).
- Erasure: POST /api/data-privacy-deletion-jobs with exactly one identifier (email, phone_number
  or profile id); every profile matching it is deleted asynchronously; 202; burst 3/s, steady 60/m
  (https://developers.klaviyo.com/en/reference/request_profile_deletion).
- Opt-outs: GET /api/profiles with filter
  greater-or-equal(subscriptions.email.marketing.suppression.timestamp,<since>),
  additional-fields[profile]=subscriptions, sparse fields external_id and the suppression only (no
  address), sort by that timestamp, page[size] <= 100, then links.next; each global suppression has
  a reason (UNSUBSCRIBE, SPAM_COMPLAINT, HARD_BOUNCE, INVALID_EMAIL, USER_SUPPRESSED) and a timestamp
  (https://developers.klaviyo.com/en/v2026-07-15/reference/get_profiles; burst 75/s, steady 750/m).
  Profiles without an external_id (made by a Klaviyo form, never by lakecdp) cannot be matched
  without their address, so they are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from lakecdp.export.adapters.base import (
    BOUNCED,
    DELETION_REQUESTED,
    NOT_FOUND,
    UNSUBSCRIBED,
    Adapter,
    BatchLimits,
    OptOut,
    all_failed,
    http_reason,
)
from lakecdp.export.batches import UPSERT, Batch, BatchResult, Member, MemberOutcome, json_bytes
from lakecdp.export.http import ApiClient, DestinationError, RetriesExhausted
from lakecdp.export.identifiers import scrub_pii
from lakecdp.export.settings import RateLimitSpec

MEDIA_TYPE = "application/vnd.api+json"
ENVELOPE_BYTES = 400  # the job document around the profiles
LOOKUP_PAGE = 100  # get_profiles page[size] maximum
REMOVE_CHUNK = 1000  # remove_profiles_from_list maximum
# request_profile_deletion's own x-klaviyo-ratelimit (burst 3/s, steady 60/m), below the bulk routes' limits.
SUPPRESSION_TIMESTAMP = "subscriptions.email.marketing.suppression.timestamp"
# Klaviyo's global suppression reasons: a withdrawal of consent, or an address that must not be mailed.
SUPPRESSION_KINDS = {
    "UNSUBSCRIBE": UNSUBSCRIBED,
    "SPAM_COMPLAINT": UNSUBSCRIBED,
    "HARD_BOUNCE": BOUNCED,
    "INVALID_EMAIL": BOUNCED,
    "USER_SUPPRESSED": BOUNCED,
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DELETION_LIMITS = (RateLimitSpec(requests=3, per=timedelta(seconds=1)), RateLimitSpec(requests=60, per=timedelta(minutes=1)))


class KlaviyoAdapter(Adapter):
    identifier_kind = "customer_id"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        key = self.secret("api_key_env")
        self._headers = {
            "Authorization": f"Klaviyo-API-Key {key}",
            "revision": self.settings.revision,
            "Accept": MEDIA_TYPE,
            "Content-Type": MEDIA_TYPE,
        }
        self.client = self.api_client(per_endpoint=True)
        self._base = self.settings.base_url.rstrip("/")
        self._deletions: ApiClient | None = None  # built on the first erasure: exports never need it

    @classmethod
    def batch_limits(cls, settings: Any, attributes: Sequence[str]) -> BatchLimits:
        def size_of(member: Member) -> int:
            return len(json_bytes(profile_document(member, attributes))) + 1

        return BatchLimits(settings.batch_size, settings.max_request_bytes - ENVELOPE_BYTES, size_of)

    def send(self, batch: Batch) -> BatchResult:
        return self._import(batch) if batch.kind == UPSERT else self._leave_list(batch)

    def _profile(self, member: Member) -> dict[str, Any]:
        return profile_document(member, self.attributes)

    def _import(self, batch: Batch) -> BatchResult:
        list_id = self.settings.segments[batch.segment].list_id
        document = {
            "data": {
                "type": "profile-bulk-import-job",
                "attributes": {"profiles": {"data": [self._profile(m) for m in batch.members]}},
                "relationships": {"lists": {"data": [{"type": "list", "id": list_id}]}},
            }
        }
        try:
            response = self.client.request(
                "POST",
                f"{self._base}/api/profile-bulk-import-jobs",
                endpoint="bulk_import_profiles",
                headers=self._headers,
                body=json_bytes(document),
            )
            self._raise_if_refused(response)
            if response.status_code != 202:
                return all_failed(batch, http_reason(response, _errors(response)), retryable=False)
            job = self._wait_for_job(response.json()["data"]["id"])
        except RetriesExhausted as exc:
            return all_failed(batch, exc.reason, retryable=True)
        if job is None:
            return all_failed(batch, f"import job did not finish within {self.settings.job_timeout}", retryable=True)
        attributes = job["attributes"]
        if attributes["status"] == "cancelled":
            return all_failed(batch, "Klaviyo cancelled the import job", retryable=True)
        failed_count = int(attributes.get("failed_count") or 0)
        reasons = self._import_errors(job["id"]) if failed_count else {}
        unnamed = failed_count - len(reasons)
        outcomes = []
        for member in batch.members:
            if member.esp_id in reasons:
                outcomes.append(MemberOutcome.failed(member.customer_id, reasons[member.esp_id], retry_alone=True))
            elif unnamed > 0:
                reason = f"the job reported {failed_count} failures, {unnamed} without naming the profile"
                outcomes.append(MemberOutcome.failed(member.customer_id, reason, retryable=True, retry_alone=True))
            else:
                outcomes.append(MemberOutcome.sent(member.customer_id))
        stats = {"total": int(attributes.get("total_count") or 0), "completed": int(attributes.get("completed_count") or 0)}
        return BatchResult(batch, outcomes, stats=stats)

    def _wait_for_job(self, job_id: str) -> dict[str, Any] | None:
        url = f"{self._base}/api/profile-bulk-import-jobs/{job_id}"
        waited, interval = 0.0, self.settings.poll_interval.total_seconds()
        while waited <= self.settings.job_timeout.total_seconds():
            response = self.client.request("GET", url, endpoint="get_bulk_import_profiles_job", headers=self._read_headers)
            self._raise_if_refused(response)
            if response.status_code != 200:
                raise RetriesExhausted(f"reading import job: {http_reason(response, _errors(response))}")
            job = response.json()["data"]
            if job["attributes"]["status"] in ("complete", "cancelled"):
                return job
            self.runtime.clock.sleep(interval)
            waited += interval
        return None

    def _import_errors(self, job_id: str) -> dict[str, str]:
        """external_id -> the ESP's reason, from the job's import errors (all pages)."""
        reasons: dict[str, str] = {}
        url: str | None = f"{self._base}/api/profile-bulk-import-jobs/{job_id}/import-errors"
        params: dict[str, Any] | None = {"page[size]": 100}
        while url:
            response = self.client.request(
                "GET", url, endpoint="get_errors_for_bulk_import_profiles_job", headers=self._read_headers, params=params
            )
            self._raise_if_refused(response)
            if response.status_code != 200:
                break
            document = response.json()
            for error in document.get("data") or []:
                attrs = error.get("attributes") or {}
                payload = attrs.get("original_payload") or {}
                external_id = payload.get("external_id") or (payload.get("attributes") or {}).get("external_id")
                if external_id:
                    reasons[external_id] = scrub_pii(f"{attrs.get('code')}: {attrs.get('title')} - {attrs.get('detail')}")
            url, params = (document.get("links") or {}).get("next"), None
        return reasons

    def _leave_list(self, batch: Batch) -> BatchResult:
        list_id = self.settings.segments[batch.segment].list_id
        try:
            profile_ids = self._profile_ids([m.esp_id for m in batch.members])
            ids = sorted(profile_ids.values())
            for start in range(0, len(ids), REMOVE_CHUNK):
                document = {"data": [{"type": "profile", "id": pid} for pid in ids[start : start + REMOVE_CHUNK]]}
                response = self.client.request(
                    "DELETE",
                    f"{self._base}/api/lists/{list_id}/relationships/profiles",
                    endpoint="remove_profiles_from_list",
                    headers=self._headers,
                    body=json_bytes(document),
                )
                self._raise_if_refused(response)
                if response.status_code != 204:
                    return all_failed(batch, http_reason(response, _errors(response)), retryable=False)
        except RetriesExhausted as exc:
            return all_failed(batch, exc.reason, retryable=True)
        # A customer without a Klaviyo profile is in no list: nothing to remove.
        return BatchResult(batch, [MemberOutcome.sent(m.customer_id) for m in batch.members])

    def forget(self, customer_id: str, email: str | None) -> str:
        """Deletion jobs for the profile lakecdp created (by external id) and for every profile with the address.

        Both, because the address may have changed since the profile was last exported, and a
        profile made by a Klaviyo form carries the address but not our id.
        """
        profiles = [{"type": "profile", "id": pid, "attributes": {}} for pid in self._profile_ids([customer_id]).values()]
        if email is not None:
            profiles.append({"type": "profile", "attributes": {"email": email}})
        if self._deletions is None:
            self._deletions = self.api_client(rate_limits=DELETION_LIMITS)
        accepted = 0
        for profile in profiles:
            document = {"data": {"type": "data-privacy-deletion-job", "attributes": {"profile": {"data": profile}}}}
            response = self._deletions.request(
                "POST",
                f"{self._base}/api/data-privacy-deletion-jobs",
                endpoint="request_profile_deletion",
                headers=self._headers,
                body=json_bytes(document),
            )
            self._raise_if_refused(response)
            if response.status_code == 202:
                accepted += 1
            elif response.status_code != 404:  # 404: no profile matches this identifier
                raise DestinationError(f"{self.name}: profile deletion refused: {http_reason(response, _errors(response))}")
        return DELETION_REQUESTED if accepted else NOT_FOUND

    def close(self) -> None:
        super().close()
        if self._deletions is not None:
            self._deletions.close()

    def _profile_ids(self, customer_ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(customer_ids), LOOKUP_PAGE):
            chunk = customer_ids[start : start + LOOKUP_PAGE]
            params = {
                "filter": f"any(external_id,{json.dumps(chunk, separators=(',', ':'))})",
                "fields[profile]": "external_id",
                "page[size]": LOOKUP_PAGE,
            }
            response = self.client.request(
                "GET", f"{self._base}/api/profiles", endpoint="get_profiles", headers=self._read_headers, params=params
            )
            self._raise_if_refused(response)
            if response.status_code != 200:
                raise RetriesExhausted(f"looking up profiles: {http_reason(response, _errors(response))}")
            for profile in response.json().get("data") or []:
                found[profile["attributes"]["external_id"]] = profile["id"]
        return found

    def opt_outs(self, since: datetime | None) -> Iterator[OptOut]:
        start = (since or EPOCH).astimezone(UTC)
        url: str | None = f"{self._base}/api/profiles"
        params: dict[str, Any] | None = {
            "filter": f"greater-or-equal({SUPPRESSION_TIMESTAMP},{start.isoformat().replace('+00:00', 'Z')})",
            "additional-fields[profile]": "subscriptions",
            "fields[profile]": "external_id,subscriptions.email.marketing.suppression",
            "sort": SUPPRESSION_TIMESTAMP,
            "page[size]": LOOKUP_PAGE,
        }
        while url:
            try:
                response = self.client.request("GET", url, endpoint="get_profiles", headers=self._read_headers, params=params)
            except RetriesExhausted as exc:
                raise DestinationError(f"{self.name}: reading suppressed profiles failed: {exc.reason}") from None
            self._raise_if_refused(response)
            if response.status_code != 200:
                raise DestinationError(f"{self.name}: reading suppressed profiles: {http_reason(response, _errors(response))}")
            document = response.json()
            for profile in document.get("data") or []:
                yield from _profile_opt_outs(profile.get("attributes") or {}, start)
            url, params = (document.get("links") or {}).get("next"), None

    @property
    def _read_headers(self) -> dict[str, str]:
        return {k: v for k, v in self._headers.items() if k != "Content-Type"}

    def _raise_if_refused(self, response: Any) -> None:
        if response.status_code in (401, 403):
            raise DestinationError(f"{self.name}: Klaviyo refused the API key: {http_reason(response, _errors(response))}")


def profile_document(member: Member, attribute_names: Sequence[str]) -> dict[str, Any]:
    """A ProfileUpsertQueryResourceObject: email + external_id (the retailer's customer id) + attributes."""
    values = {name: member.attributes.get(name) for name in attribute_names}
    attributes: dict[str, Any] = {"email": member.email, "external_id": member.esp_id}
    attributes.update({k: values[k] for k in ("first_name", "last_name") if k in values})
    location = {k: values[k] for k in ("country", "city") if k in values}
    if location:
        attributes["location"] = location
    if member.merge_fields:
        attributes["properties"] = dict(member.merge_fields)  # custom profile properties
    return {"type": "profile", "attributes": attributes}


def _profile_opt_outs(attributes: dict[str, Any], start: datetime) -> Iterator[OptOut]:
    """A profile's global suppressions recorded at or after `start`, named by its external_id."""
    external_id = attributes.get("external_id")
    marketing = ((attributes.get("subscriptions") or {}).get("email") or {}).get("marketing") or {}
    if not external_id:
        return
    for suppression in marketing.get("suppression") or []:
        kind = SUPPRESSION_KINDS.get(suppression.get("reason"))
        at = datetime.fromisoformat(suppression["timestamp"].replace("Z", "+00:00")) if suppression.get("timestamp") else None
        at = at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at
        if kind is not None and (at is None or at >= start):
            yield OptOut("external_id", external_id, kind, at, f"Klaviyo {suppression['reason']}")


def _errors(response: Any) -> str:
    """Klaviyo's JSON:API errors[] as 'code: detail; ...'."""
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return response.text
    return "; ".join(f"{e.get('code')}: {e.get('detail')}" for e in errors) or response.text
