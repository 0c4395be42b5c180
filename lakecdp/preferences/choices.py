"""What a preference-centre submission means, in plain Python (no I/O): the form, the choices it
asks for, and the Segment messages that record each change.

Changes become ordinary events so that one path records them: the collector lands them, the stream
writes them to bronze and the consent ledger (with the link id as proof), and exports, triggers and
content decide from those as they do for any opt-out. Email marketing changes are the opt-in/opt-out
events of esp.yaml (what the email-marketing decision reads); the other purposes are `Consent Updated`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from lakecdp.preferences.page import ACCESS, ERASE, SAVE, WITHDRAW_ALL
from lakecdp.preferences.tokens import PreferenceLink
from lakecdp.privacy.purposes import ACCESS_REQUESTED, EMAIL_MARKETING, GRANTED, WITHDRAWN

MAX_FORM_BYTES = 8192
MAX_FORM_FIELDS = 64
Choice = tuple[str, str]  # (purpose, channel)


class FormError(ValueError):
    """A submission that is not the page's form; the message is safe to show."""


@dataclass(frozen=True)
class ConsentEventNames:
    opt_in: str = "Subscribed"
    opt_out: str = "Unsubscribed"
    consent_updated: str = "Consent Updated"


@dataclass(frozen=True)
class Submission:
    action: str
    form_id: str
    ticked: frozenset[Choice]
    confirm_erase: bool


def parse_form(body: bytes, purposes: Sequence[str], channels: Sequence[str]) -> Submission:
    """The page's form from an application/x-www-form-urlencoded body."""
    if len(body) > MAX_FORM_BYTES:
        raise FormError("the form is too large")
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise FormError("the form could not be read") from None
    values: dict[str, list[str]] = {}
    for name, value in fields:
        values.setdefault(name, []).append(value)
    action = (values.get("action") or [SAVE])[-1]
    if action not in (SAVE, WITHDRAW_ALL, ACCESS, ERASE):
        raise FormError("unknown action")
    form_id = (values.get("form_id") or [""])[-1]
    if not form_id.isalnum() or len(form_id) > 64:
        raise FormError("the form is incomplete: reload the page")
    known = {f"{p}:{c}": (p, c) for p in purposes for c in channels}
    unknown = [v for v in values.get("consent", []) if v not in known]
    if unknown:
        raise FormError("the form names a choice this page does not offer: reload the page")
    ticked = frozenset(known[v] for v in values.get("consent", []))
    return Submission(action, form_id, ticked, (values.get("confirm_erase") or [""])[-1] == "yes")


def wanted_choices(submission: Submission, purposes: Sequence[str], channels: Sequence[str]) -> dict[Choice, bool]:
    """Every choice the page offers -> granted?; "withdraw all" un-ticks everything."""
    withdraw_all = submission.action == WITHDRAW_ALL
    return {(p, c): not withdraw_all and (p, c) in submission.ticked for p in purposes for c in channels}


def change_messages(
    link: PreferenceLink,
    form_id: str,
    current: Mapping[Choice, bool],
    wanted: Mapping[Choice, bool],
    names: ConsentEventNames,
    now: datetime,
) -> list[dict[str, Any]]:
    """One track message per choice that changes. Their messageIds derive from the link, the rendered
    form and the change, so submitting the same form twice lands duplicates the stream drops."""
    messages = []
    for (purpose, channel), granted in sorted(wanted.items()):
        if current.get((purpose, channel)) == granted:
            continue
        status = GRANTED if granted else WITHDRAWN
        if purpose == EMAIL_MARKETING:
            event = names.opt_in if granted else names.opt_out
        else:
            event = names.consent_updated
        properties = {"purpose": purpose, "channel": channel, "status": status, "link_id": link.link_id}
        messages.append(_track(link, event, properties, message_id(link.link_id, form_id, purpose, channel, status), now))
    return messages


def access_request_message(link: PreferenceLink, form_id: str, now: datetime) -> tuple[str, dict[str, Any]]:
    """(request id, the track message that queues a data-copy request for the privacy officer)."""
    request_id = message_id(link.link_id, form_id, ACCESS)
    return request_id, _track(link, ACCESS_REQUESTED, {"request_id": request_id, "link_id": link.link_id}, request_id, now)


def erasure_request_id(link: PreferenceLink, form_id: str) -> str:
    return message_id(link.link_id, form_id, ERASE)


def message_id(*parts: str) -> str:
    return "pref-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _track(link: PreferenceLink, event: str, properties: dict[str, Any], message_id_: str, now: datetime) -> dict[str, Any]:
    return {
        "type": "track",
        "event": event,
        "userId": link.customer_id,
        "messageId": message_id_,
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "properties": properties,
    }
