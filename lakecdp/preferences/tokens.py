"""Signed, expiring preference-centre links.

Same shape as the email links (lakecdp.collector.links): base64url(JSON fields) + "." +
base64url(HMAC-SHA256(secret, domain + payload)), but under their own HMAC domain, so an open or
click token never verifies here even when both are signed with the same secret. The signed
fields are the purpose ("preferences"), the customer's pseudonym, a link id (what the consent
ledger's proof names), and the issue and expiry instants (whole seconds, UTC).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lakecdp.collector.links import signed_token, verified_fields
from lakecdp.privacy.pseudonyms import PATTERN as PSEUDONYM

_DOMAIN = b"lakecdp-preference-link.v1."
_ID_DOMAIN = b"lakecdp-preference-link-id.v1."
PURPOSE = "preferences"
# Clocks of the minting host and the server disagree a little; a link "issued" further ahead is refused.
CLOCK_SKEW = timedelta(minutes=5)
LINK_ID_HEX = 16


class PreferenceLinkError(ValueError):
    """A token that does not verify; the message says why (for the log), never echoing the token."""


@dataclass(frozen=True)
class PreferenceLink:
    customer_id: str  # the lake's pseudonym (pc_...), never the retailer's id
    link_id: str
    issued_at: datetime
    expires_at: datetime


def new_link(customer_id: str, *, now: datetime, valid_for: timedelta, link_id: str | None = None) -> PreferenceLink:
    """A link for `customer_id` (a pseudonym) valid from `now` for `valid_for`."""
    if valid_for <= timedelta(0):
        raise PreferenceLinkError("a preference link must be valid for a positive duration")
    issued = _whole_seconds(now)
    return PreferenceLink(customer_id, link_id or secrets.token_hex(LINK_ID_HEX // 2), issued, _whole_seconds(issued + valid_for))


def periodic_link(customer_id: str, *, now: datetime, valid_for: timedelta, secret: bytes) -> PreferenceLink:
    """The same link for every call within one period of half the validity: issued at the period's start,
    with an id derived from the customer and that instant. An ESP list that holds it is refreshed once a
    period (its payload changes then, not on every export) and never holds a link with less than half its life."""
    period = max(int(valid_for.total_seconds()) // 2, 1)
    start = int(now.timestamp()) // period * period
    label = f"{customer_id}|{start}".encode()
    link_id = hmac.new(secret, _ID_DOMAIN + label, hashlib.sha256).hexdigest()[:LINK_ID_HEX]
    return new_link(customer_id, now=datetime.fromtimestamp(start, UTC), valid_for=valid_for, link_id=link_id)


def sign_link(link: PreferenceLink, secret: bytes) -> str:
    """The signed token for `link`."""
    _check(link)
    fields = {
        "p": PURPOSE,
        "c": link.customer_id,
        "i": link.link_id,
        "t": int(link.issued_at.timestamp()),
        "x": int(link.expires_at.timestamp()),
    }
    return signed_token(fields, secret, _DOMAIN)


def verify_link(token: str, secret: bytes, *, now: datetime) -> PreferenceLink:
    """The link a token stands for, if its signature verifies, it is a preferences link and it has not expired."""
    fields = verified_fields(token, secret, _DOMAIN, what="preference token", error=PreferenceLinkError)
    if not isinstance(fields, dict) or fields.get("p") != PURPOSE:
        raise PreferenceLinkError("not a preference-centre token")
    try:
        link = PreferenceLink(fields["c"], fields["i"], _instant(fields["t"]), _instant(fields["x"]))
    except (KeyError, TypeError, ValueError, OverflowError):
        raise PreferenceLinkError("preference token lacks a valid field") from None
    _check(link)
    if now >= link.expires_at:
        raise PreferenceLinkError("preference token has expired")
    if link.issued_at > now + CLOCK_SKEW:
        raise PreferenceLinkError("preference token is issued in the future")
    return link


def preference_url(base_url: str, token: str) -> str:
    """Where the link points: GET it to see the page, POST the page's form to change the choices."""
    return f"{base_url.rstrip('/')}/v1/preferences/{token}"


def _check(link: PreferenceLink) -> None:
    if not isinstance(link.customer_id, str) or not PSEUDONYM.match(link.customer_id):
        raise PreferenceLinkError("a preference link names the customer by their pseudonym (pc_ + 32 hex)")
    if not isinstance(link.link_id, str) or not link.link_id.isalnum() or not 8 <= len(link.link_id) <= 64:
        raise PreferenceLinkError("a link id is 8 to 64 letters or digits")
    if link.expires_at <= link.issued_at:
        raise PreferenceLinkError("a preference link expires after it is issued")


def _instant(seconds: object) -> datetime:
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise TypeError("not whole seconds")
    return datetime.fromtimestamp(seconds, UTC)


def _whole_seconds(at: datetime) -> datetime:
    return datetime.fromtimestamp(int(at.timestamp()), UTC)
