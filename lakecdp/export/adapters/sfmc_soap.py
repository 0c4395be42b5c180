"""Marketing Cloud's SOAP Retrieve of Subscriber objects: the envelopes and the reading of the answer.

Marketing Cloud's REST API has no route that lists unsubscribed subscribers; the SOAP API's
Retrieve on the Subscriber object does, with its Status and UnsubscribedDate
(https://developer.salesforce.com/docs/marketing/marketing-cloud/guide/retrieving_subscribers_by_subscriber_key.html).
Status is Active, Bounced, Held, Unsubscribed or Deleted; a Bounced address is still mailed, a Held
one (three or more sequential bounces over more than 14 days) is not
(https://developer.salesforce.com/docs/marketing/marketing-cloud/guide/subscriberstatus.html). The OAuth token goes in a `fueloauth`
header element; the endpoint is the token response's soap_instance_url + Service.asmx
(https://developer.salesforce.com/docs/marketing/marketing-cloud/guide/access-token-s2s.html).
An answer holds at most 2,500 objects; OverallStatus MoreDataAvailable means send a RetrieveRequest
with ContinueRequest = the RequestID for the next batch
(https://developer.salesforce.com/docs/marketing/marketing-cloud/guide/retrieving_the_subscriberstatusevent.html).
Dates carry no zone and are in system time, Central Standard Time (UTC-6) without daylight saving
(https://developer.salesforce.com/docs/marketing/marketing-cloud-ampscript/references/mc-ampscript-date-time/mc-ampscript-reference-date-time-system-date-to-local-date.html).
"""

from __future__ import annotations

# Answers carrying a DTD are refused before parsing (parse_retrieve), hence the nosec.
import xml.etree.ElementTree as ET  # nosec B405
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from html import escape  # text for XML: escapes &, <, > and quotes
from typing import Any

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
PARTNER = "http://exacttarget.com/wsdl/partnerAPI"
SYSTEM_TIME = timezone(timedelta(hours=-6))  # Marketing Cloud system time: CST, no daylight saving
# Never EmailAddress: subscribers are matched by SubscriberKey, the id the export sent.
SUBSCRIBER_PROPERTIES = ("SubscriberKey", "Status", "UnsubscribedDate")
MORE_DATA = "MoreDataAvailable"


class SoapFault(RuntimeError):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code, self.text = code, text

    @property
    def is_auth(self) -> bool:
        # An expired or revoked token answers a Security fault ("Login Failed" / "Token Expired").
        return "Security" in self.code or self.text.strip().lower() in ("login failed", "token expired")


@dataclass(frozen=True)
class RetrievePage:
    status: str  # OK, MoreDataAvailable, or an error text
    request_id: str
    results: list[dict[str, str]]


def status_filter(status: str, unsubscribed_since: datetime | None = None) -> str:
    """A Filter on Status, narrowed to UnsubscribedDate >= the instant when given."""
    simple = _simple_part("Status", "equals", f"<Value>{escape(status)}</Value>")
    if unsubscribed_since is None:
        return f'<Filter xsi:type="SimpleFilterPart">{simple}</Filter>'
    system = unsubscribed_since.astimezone(SYSTEM_TIME).replace(tzinfo=None).isoformat(timespec="seconds")
    since = _simple_part("UnsubscribedDate", "greaterThanOrEqual", f"<DateValue>{system}</DateValue>")
    return (
        '<Filter xsi:type="ComplexFilterPart">'
        f'<LeftOperand xsi:type="SimpleFilterPart">{simple}</LeftOperand>'
        "<LogicalOperator>AND</LogicalOperator>"
        f'<RightOperand xsi:type="SimpleFilterPart">{since}</RightOperand>'
        "</Filter>"
    )


def retrieve_envelope(token: str, filter_xml: str, continue_id: str | None = None) -> bytes:
    """A Retrieve of Subscriber objects (SubscriberKey, Status, UnsubscribedDate), or its continuation."""
    properties = "".join(f"<Properties>{p}</Properties>" for p in SUBSCRIBER_PROPERTIES)
    head = f"<ContinueRequest>{escape(continue_id)}</ContinueRequest>" if continue_id else ""
    body = f"{head}<ObjectType>Subscriber</ObjectType>{properties}{'' if continue_id else filter_xml}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f'<s:Header><fueloauth xmlns="http://exacttarget.com">{escape(token)}</fueloauth></s:Header>'
        f'<s:Body><RetrieveRequestMsg xmlns="{PARTNER}"><RetrieveRequest>{body}</RetrieveRequest></RetrieveRequestMsg></s:Body>'
        "</s:Envelope>"
    ).encode()


def parse_retrieve(document: bytes) -> RetrievePage:
    """OverallStatus, RequestID and each Results element as {property: text}; raises SoapFault for a Fault."""
    # SOAP messages must not contain a DTD (SOAP 1.1 §3), so refusing one costs nothing and rules
    # out entity-expansion attacks on the stdlib parser.
    if b"<!DOCTYPE" in document or b"<!ENTITY" in document:
        raise ValueError("SOAP answer carries a DTD, which SOAP forbids; refused unparsed")
    try:
        root = ET.fromstring(document)  # nosec B314
    except ET.ParseError as exc:
        raise ValueError(f"SOAP answer is not XML: {exc}") from None
    fault = root.find(f".//{{{SOAP_ENV}}}Fault")
    if fault is not None:
        raise SoapFault(fault.findtext("faultcode") or "", fault.findtext("faultstring") or "")
    message = root.find(f".//{{{PARTNER}}}RetrieveResponseMsg")
    if message is None:
        raise ValueError("SOAP answer holds no RetrieveResponseMsg")
    results = [{child.tag.split("}", 1)[-1]: (child.text or "") for child in result} for result in message.findall(f"{{{PARTNER}}}Results")]
    return RetrievePage(message.findtext(f"{{{PARTNER}}}OverallStatus") or "", message.findtext(f"{{{PARTNER}}}RequestID") or "", results)


def is_transient(response: Any) -> bool:
    """SOAP answers a refusal (a bad token, a bad filter) as HTTP 500 with a Fault: not worth retrying."""
    return not (response.status_code == 500 and b"Fault>" in response.content)


def system_time(text: str | None) -> datetime | None:
    """A SOAP date (no zone: system time) as an aware UTC instant; one with a zone keeps it."""
    if not text:
        return None
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (at if at.tzinfo else at.replace(tzinfo=SYSTEM_TIME)).astimezone(UTC)


def _simple_part(prop: str, operator: str, value_xml: str) -> str:
    return f"<Property>{prop}</Property><SimpleOperator>{operator}</SimpleOperator>{value_xml}"
