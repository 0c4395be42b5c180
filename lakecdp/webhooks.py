"""The one signature scheme of lakecdp's webhooks (trigger sends and exports): Standard Webhooks.

Spec: https://www.standardwebhooks.com/ (v1). Each request carries
  webhook-id         the message id; the same on every retry of one message (lakecdp: the idempotency key)
  webhook-timestamp  unix seconds when this attempt was signed
  webhook-signature  "v1,<base64 HMAC-SHA256 of '<id>.<timestamp>.<raw body>'>" (space-separated if several)
The key is the secret's bytes; a secret written as the spec serializes it, "whsec_<base64>", is
base64-decoded first. Receivers refuse timestamps more than 5 minutes away (replays), as the spec advises.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from email.message import Message

    from lakecdp.clock import Clock

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
TOLERANCE_S = 300.0


def signing_key(secret: str | bytes) -> bytes:
    """The HMAC key of a secret: "whsec_<base64>" decoded, anything else as its UTF-8 bytes."""
    if isinstance(secret, bytes):
        secret = secret.decode()
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error as error:
            raise ValueError("a webhook secret starting with whsec_ must be base64 after the prefix") from error
    return secret.encode()


def signature(secret: str | bytes, message_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(signing_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str | bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of one signed attempt."""
    return {ID_HEADER: message_id, TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(secret, message_id, timestamp, body)}


def json_post_headers(secret: str | bytes, idempotency_key: str, clock: Clock) -> Callable[[bytes], dict[str, str]]:
    """Headers of a signed JSON POST as a function of the body, for lakecdp.export.http.ApiClient: each
    attempt is signed at `clock`'s time; `webhook-id` and `Idempotency-Key` stay the same on every retry."""

    def headers(body: bytes) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
            **signed_headers(secret, idempotency_key, int(clock.now().timestamp()), body),
        }

    return headers


def verify(secret: str | bytes, headers: Mapping[str, str] | Message, body: bytes, *, now: float, tolerance_s: float = TOLERANCE_S) -> bool:
    """A receiver's check: all three headers present, a fresh timestamp, and one matching v1 signature
    (constant-time). `headers` must look names up case-insensitively, as HTTP header maps (and http.server's Message) do."""
    message_id, stamp, given = (headers.get(name) for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not message_id or not stamp or not given:
        return False
    try:
        timestamp = int(stamp)
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, message_id, timestamp, body)
    return any(hmac.compare_digest(candidate, expected) for candidate in given.split())
