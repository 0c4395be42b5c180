"""Salesforce Marketing Cloud: async upsert of data extension rows, OAuth2 client credentials.

- Token: POST {auth}/v2/token {grant_type: client_credentials, client_id, client_secret[, account_id]}
  -> access_token, expires_in (https://developer.salesforce.com/docs/marketing/marketing-cloud/guide/access-token-s2s.html).
- Upsert: PUT {rest}/data/v1/async/dataextensions/key:{key}/rows {items: [...]} -> 202 {requestId}
  (https://developer.salesforce.com/docs/marketing/marketing-cloud/references/mc_rest_data_extensions/updateDataExtensionIDAsync.html).
- Status / results: GET /data/v1/async/{requestId}/status (requestStatus Pending|Complete|Error, hasErrors)
  and /results (https://developer.salesforce.com/docs/atlas.en-us.mc-apis.meta/mc-apis/getStatusDataExtensionAsync.htm).
  Results do not name the row that failed, so a batch with errors is retried row by row.
- The data extension holds one row per (SubscriberKey, Segment); a remove upserts InSegment=false
  with no contact data, so re-sending any batch is harmless.
- Erasure: POST /contacts/v1/contacts/actions/delete?type=keys {values: [contact key],
  DeleteOperationType: ContactAndAttributes} -> 200 {operationInitiated, operationID, hasErrors}
  (https://developer.salesforce.com/docs/marketing/marketing-cloud/guide/DeleteByContactKeys.html).
  Contact Delete, not a row delete, because it removes the contact from every list, sendable
  data extension and channel of the account; SubscriberKey is the contact key. It runs
  asynchronously: sends are suppressed at once, the data goes after the account's suppression
  period (https://developer.salesforce.com/docs/marketing/marketing-cloud/guide/ContactsDeleteStatus.html
  reports progress). Contact Delete must be enabled in the account.
- Opt-outs: the SOAP API's Retrieve of Subscriber objects with Status Unsubscribed (UnsubscribedDate
  at or after `since`) and Status Held (hard-bounced for good; no date, so always read); matched by
  SubscriberKey, the id the export sent. See lakecdp.export.adapters.sfmc_soap for the contract.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from lakecdp.export.adapters.base import (
    BOUNCED,
    DELETION_REQUESTED,
    UNSUBSCRIBED,
    Adapter,
    BatchLimits,
    OptOut,
    all_failed,
    all_sent,
    http_reason,
)
from lakecdp.export.adapters.sfmc_soap import (
    MORE_DATA,
    SoapFault,
    is_transient,
    parse_retrieve,
    retrieve_envelope,
    status_filter,
    system_time,
)
from lakecdp.export.batches import UPSERT, Batch, BatchResult, Member, MemberOutcome, json_bytes
from lakecdp.export.http import ApiClient, DestinationError, RetriesExhausted
from lakecdp.export.identifiers import scrub_pii

COLUMNS = {"first_name": "FirstName", "last_name": "LastName", "country": "Country", "city": "City"}
TOKEN_MARGIN_S = 60  # renew this long before the token expires


class SfmcAuth:
    """Client-credentials tokens for one installed package: cached, renewed before expiry and after a 401.

    Shared by the data extension exporter and the Journey Builder trigger sender (lakecdp.triggers.esp).
    """

    def __init__(
        self,
        name: str,
        client: ApiClient,
        *,
        auth_url: str,
        client_id: str,
        client_secret: str,
        account_id: str | None,
        monotonic: Callable[[], float],
    ) -> None:
        self.name, self.client, self._auth_url = name, client, auth_url.rstrip("/")
        self._client_id, self._client_secret, self._account_id = client_id, client_secret, account_id
        self._monotonic = monotonic
        self._token: str | None = None
        self.soap_url: str | None = None  # the token response's soap_instance_url
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def access_token(self, *, renew: bool = False) -> str:
        with self._lock:
            if renew or self._token is None or self._monotonic() >= self._expires_at:
                body = {"grant_type": "client_credentials", "client_id": self._client_id, "client_secret": self._client_secret}
                if self._account_id:
                    body["account_id"] = self._account_id
                response = self.client.request(
                    "POST",
                    f"{self._auth_url}/v2/token",
                    endpoint="auth.token",
                    headers={"Content-Type": "application/json"},
                    body=json_bytes(body),
                )
                if response.status_code != 200:
                    reason = http_reason(response)
                    raise DestinationError(f"{self.name}: Marketing Cloud refused the client credentials: {reason}")
                document = response.json()
                self._token = document["access_token"]
                self.soap_url = document.get("soap_instance_url") or self.soap_url
                self._expires_at = self._monotonic() + float(document.get("expires_in", 1080)) - TOKEN_MARGIN_S
            return self._token

    def call(self, method: str, url: str, endpoint: str, body: bytes | None = None) -> Any:
        """A REST call with the bearer token; a 401 renews the token once (it may have been revoked early)."""
        for renew in (False, True):
            token = self.access_token(renew=renew)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            response = self.client.request(method, url, endpoint=endpoint, headers=headers, body=body)
            if response.status_code != 401:
                return response
        raise DestinationError(f"{self.name}: Marketing Cloud rejects a fresh token: {http_reason(response)}")


class SfmcAdapter(Adapter):
    identifier_kind = "customer_id"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client = self.api_client()
        self._rest = self.settings.rest_url.rstrip("/")
        self._auth = SfmcAuth(
            self.name,
            self.client,
            auth_url=self.settings.auth_url,
            client_id=self.secret("client_id_env"),
            client_secret=self.secret("client_secret_env"),
            account_id=self.settings.account_id,
            monotonic=self.runtime.clock.monotonic,
        )

    @classmethod
    def batch_limits(cls, settings: Any, attributes: Sequence[str]) -> BatchLimits:
        def size_of(member: Member) -> int:
            return len(json_bytes(data_extension_row(member, "s" * 64, member.kind, attributes))) + 1

        return BatchLimits(settings.batch_size, settings.max_request_bytes - 100, size_of)

    def _row(self, member: Member, segment: str, kind: str) -> dict[str, Any]:
        return data_extension_row(member, segment, kind, self.attributes)

    def _call(self, method: str, url: str, endpoint: str, body: bytes | None = None) -> Any:
        return self._auth.call(method, url, endpoint, body)

    def send(self, batch: Batch) -> BatchResult:
        items = [self._row(m, batch.segment, batch.kind) for m in batch.members]
        url = f"{self._rest}/data/v1/async/dataextensions/key:{self.settings.data_extension_key}/rows"
        try:
            response = self._call("PUT", url, "de.rows.upsert", json_bytes({"items": items}))
            if response.status_code != 202:
                return all_failed(batch, http_reason(response, _messages(response)), retryable=False)
            request_id = response.json()["requestId"]
            status = self._wait(request_id)
        except RetriesExhausted as exc:
            return all_failed(batch, exc.reason, retryable=True)
        if status is None:
            return all_failed(batch, f"async request not finished within {self.settings.job_timeout}", retryable=True)
        if not status.get("hasErrors") and status.get("requestStatus") == "Complete":
            return all_sent(batch)
        if len(batch.members) > 1:
            reason = "the async request reported row errors without naming the rows"
            return BatchResult(batch, [MemberOutcome.failed(m.customer_id, reason, retry_alone=True) for m in batch.members])
        return all_failed(batch, self._first_error(request_id), retryable=False)

    def forget(self, customer_id: str, email: str | None) -> str:
        url = f"{self._rest}/contacts/v1/contacts/actions/delete?type=keys"
        body = json_bytes({"values": [customer_id], "DeleteOperationType": "ContactAndAttributes"})
        response = self._call("POST", url, "contacts.delete", body)
        if response.status_code != 200:
            raise DestinationError(f"{self.name}: contact delete refused: {http_reason(response, _messages(response))}")
        document = response.json()
        if not document.get("operationInitiated") or document.get("hasErrors"):
            raise DestinationError(f"{self.name}: contact delete not initiated: {http_reason(response, _messages(response))}")
        return DELETION_REQUESTED

    def opt_outs(self, since: datetime | None) -> Iterator[OptOut]:
        for result in self._subscribers(status_filter("Unsubscribed", since)):
            at = system_time(result.get("UnsubscribedDate"))
            yield OptOut("external_id", result["SubscriberKey"], UNSUBSCRIBED, at, "SFMC unsubscribed")
        for result in self._subscribers(status_filter("Held")):
            yield OptOut("external_id", result["SubscriberKey"], BOUNCED, None, "SFMC held")

    def _subscribers(self, filter_xml: str) -> Iterator[dict[str, str]]:
        """Every Subscriber the filter selects, continuation batches followed; only those with a SubscriberKey."""
        continue_id: str | None = None
        while True:
            page = self._retrieve(filter_xml, continue_id)
            if page.status not in ("OK", MORE_DATA):
                raise DestinationError(f"{self.name}: Subscriber retrieve failed: {scrub_pii(page.status)}")
            yield from (r for r in page.results if r.get("SubscriberKey"))
            if page.status != MORE_DATA:
                return
            continue_id = page.request_id

    def _retrieve(self, filter_xml: str, continue_id: str | None) -> Any:
        for renew in (False, True):
            token = self._auth.access_token(renew=renew)
            if not self._auth.soap_url:
                raise DestinationError(f"{self.name}: the token response named no soap_instance_url; the SOAP API is needed for opt-outs")
            headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": "Retrieve"}
            body = retrieve_envelope(token, filter_xml, continue_id)
            url = f"{self._auth.soap_url.rstrip('/')}/Service.asmx"
            try:
                response = self.client.request("POST", url, endpoint="soap.retrieve", headers=headers, body=body, is_retryable=is_transient)
                return parse_retrieve(response.content)
            except RetriesExhausted as exc:
                raise DestinationError(f"{self.name}: Subscriber retrieve failed: {exc.reason}") from None
            except SoapFault as fault:
                if not fault.is_auth:
                    raise DestinationError(f"{self.name}: Subscriber retrieve refused: {scrub_pii(str(fault))}") from None
            except ValueError as exc:
                raise DestinationError(f"{self.name}: unreadable SOAP answer (HTTP {response.status_code}): {exc}") from None
        raise DestinationError(f"{self.name}: Marketing Cloud's SOAP API rejects a fresh token")

    def _wait(self, request_id: str) -> dict[str, Any] | None:
        waited, interval = 0.0, self.settings.poll_interval.total_seconds()
        while waited <= self.settings.job_timeout.total_seconds():
            response = self._call("GET", f"{self._rest}/data/v1/async/{request_id}/status", "de.async.status")
            if response.status_code != 200:
                raise RetriesExhausted(f"reading async status: {http_reason(response)}")
            status = response.json()["status"]
            if status.get("requestStatus") != "Pending":
                return status
            self.runtime.clock.sleep(interval)
            waited += interval
        return None

    def _first_error(self, request_id: str) -> str:
        response = self._call("GET", f"{self._rest}/data/v1/async/{request_id}/results", "de.async.results")
        if response.status_code != 200:
            return f"row rejected; results unavailable ({http_reason(response)})"
        items = [i for i in response.json().get("items") or [] if i.get("status") != "OK"]
        if not items:
            return "row rejected without a message"
        return scrub_pii(f"{items[0].get('errorCode')}: {items[0].get('message')}")


def data_extension_row(member: Member, segment: str, kind: str, attribute_names: Sequence[str]) -> dict[str, Any]:
    """One row keyed by (SubscriberKey, Segment); a remove sets InSegment=false and carries no contact data."""
    row: dict[str, Any] = {"SubscriberKey": member.esp_id, "Segment": segment, "InSegment": kind == UPSERT}
    if kind == UPSERT:
        row["EmailAddress"] = member.email
        row.update({COLUMNS[k]: member.attributes.get(k) for k in attribute_names})
        row.update(member.merge_fields)  # the data extension needs a column per content merge tag
    return row


def _messages(response: Any) -> str:
    try:
        document = response.json()
    except ValueError:
        return response.text
    messages = document.get("resultMessages") or []
    # Data extension routes say `message`; the Contacts routes say `resultMessage`.
    return "; ".join(str(m.get("message") or m.get("resultMessage")) for m in messages) or str(document.get("message", response.text))
