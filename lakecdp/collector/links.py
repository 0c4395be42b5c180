"""Signed email links: the open pixel and the click redirect.

A token is base64url(JSON fields) + "." + base64url(HMAC-SHA256(secret, domain + payload)).
The purpose ("open"/"click") is inside the signed fields, so a pixel token cannot be replayed
as a redirect, and the click target is signed too: the redirect goes only where the sender
of the email pointed it, never where a URL editor would like (no open redirect).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

# The classic transparent 1x1 GIF89a (43 bytes).
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
_DOMAIN = b"lakecdp-email-link.v1."
MAX_TOKEN_CHARS = 4096
MAX_FIELD_CHARS = 256
Purpose = Literal["open", "click"]


class LinkError(ValueError):
    """A link token that does not verify; the message says why, without echoing the token."""


@dataclass(frozen=True)
class EmailLink:
    purpose: Purpose
    customer_id: str
    campaign_id: str
    email_id: str
    url: str | None = None


def sign_token(link: EmailLink, secret: bytes) -> str:
    """The signed token for `link`."""
    _check_link(link)
    fields = {"p": link.purpose, "c": link.customer_id, "k": link.campaign_id, "e": link.email_id}
    if link.url is not None:
        fields["u"] = link.url
    return signed_token(fields, secret, _DOMAIN)


def verify_token(token: str, secret: bytes, *, purpose: Purpose) -> EmailLink:
    """The link a token stands for, if its signature verifies and it is a `purpose` link."""
    fields = verified_fields(token, secret, _DOMAIN, what="link token", error=LinkError)
    if fields.get("p") != purpose:
        raise LinkError(f"not an email {purpose} link")
    link = EmailLink(purpose=purpose, customer_id=fields["c"], campaign_id=fields["k"], email_id=fields["e"], url=fields.get("u"))
    _check_link(link)
    return link


def sign_click_url(base_url: str, *, secret: bytes, customer_id: str, campaign_id: str, email_id: str, target_url: str) -> str:
    """A click-tracking link: GET it and the collector records `Email Link Clicked`, then redirects to target_url."""
    link = EmailLink("click", customer_id, campaign_id, email_id, target_url)
    return f"{base_url.rstrip('/')}/v1/c/{sign_token(link, secret)}"


def open_pixel_url(base_url: str, *, secret: bytes, customer_id: str, campaign_id: str, email_id: str) -> str:
    """An open-tracking pixel: GET it and the collector records `Email Opened` and returns a 1x1 GIF."""
    link = EmailLink("open", customer_id, campaign_id, email_id)
    return f"{base_url.rstrip('/')}/v1/o/{sign_token(link, secret)}.gif"


def _check_link(link: EmailLink) -> None:
    for name in ("customer_id", "campaign_id", "email_id"):
        value = getattr(link, name)
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_FIELD_CHARS:
            raise LinkError(f"{name} must be a non-empty string of at most {MAX_FIELD_CHARS} characters")
    if link.purpose == "click":
        if not isinstance(link.url, str):
            raise LinkError("a click link needs a target URL")
        parts = urlsplit(link.url)
        # Only absolute web URLs: no javascript:/data: targets, no header injection via CR/LF.
        if parts.scheme not in ("http", "https") or not parts.netloc or any(ch in link.url for ch in "\r\n\t "):
            raise LinkError("a click link's target must be an absolute http(s) URL without spaces")
    elif link.url is not None:
        raise LinkError("an open link has no target URL")


def signed_token(fields: dict[str, Any], secret: bytes, domain: bytes) -> str:
    """base64url(JSON fields) + "." + base64url(HMAC-SHA256(secret, domain + payload)): every signed token's shape."""
    payload = b64url(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{payload}.{b64url(_mac(secret, payload, domain))}"


def verified_fields(token: str, secret: bytes, domain: bytes, *, what: str, error: type[ValueError]) -> Any:
    """The fields of a `signed_token` whose signature verifies under `domain`; else `error` saying why (never the token)."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1 or not token.isascii():
        raise error(f"malformed {what}")
    payload, signature = token.split(".")
    try:
        given = unb64url(signature)
    except ValueError:
        raise error(f"malformed {what} signature") from None
    # Compare before parsing anything: unsigned input is never interpreted.
    if not hmac.compare_digest(given, _mac(secret, payload, domain)):
        raise error(f"{what} signature does not verify")
    return json.loads(unb64url(payload))


def _mac(secret: bytes, payload: str, domain: bytes) -> bytes:
    return hmac.new(secret, domain + payload.encode("ascii"), hashlib.sha256).digest()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
