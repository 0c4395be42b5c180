"""Edge: the signed webhook a trigger sends to."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import httpx

from lakecdp.triggers.settings import WebhookDestination
from lakecdp.webhooks import signed_headers

@dataclass(frozen=True)
class SendResult:
    ok: bool
    retryable: bool
    reason: str | None = None


def send_webhook(destination: WebhookDestination, payload: dict, idempotency_key: str, session: httpx.Client) -> SendResult:
    """POST the payload signed; 2xx is sent, 429/5xx/network errors are retryable, other 4xx permanent."""
    secret = os.environ.get(destination.secret_env)
    if not secret:
        return SendResult(False, False, f"environment variable {destination.secret_env} (webhook secret) is not set")
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    # Standard Webhooks (lakecdp.webhooks): webhook-id is the trigger's idempotency key, the same on every retry.
    headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key,
               **signed_headers(secret, idempotency_key, int(time.time()), body)}
    try:
        response = session.post(destination.url, content=body, headers=headers, timeout=destination.timeout.total_seconds())
    except httpx.HTTPError as exc:
        return SendResult(False, True, f"network error: {type(exc).__name__}")
    if 200 <= response.status_code < 300:
        return SendResult(True, False)
    retryable = response.status_code == 429 or response.status_code >= 500
    return SendResult(False, retryable, f"HTTP {response.status_code}: {response.text[:200]}")
