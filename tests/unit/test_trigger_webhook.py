"""The trigger webhook goes over the export's HTTP client: one retry/Retry-After policy for every destination.

A real HTTP server on 127.0.0.1 answers from a script; the sender's sleeps are recorded, not slept, and
its signatures carry the frozen clock's time.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lakecdp.export.adapters.base import Runtime
from lakecdp.triggers.dispatch import _send
from lakecdp.triggers.esp import SendResult, WebhookSender
from lakecdp.triggers.settings import trigger_settings
from lakecdp.webhooks import verify
from tests.clocks import RecordingClock

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SECRET = "test-webhook-secret"
PAYLOAD = {"trigger_id": "t1", "segment": "cart_abandoned_48h", "customer_id": "C-1"}


class Scripted(BaseHTTPRequestHandler):
    answers: list[tuple[int, dict[str, str]]] = []
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Scripted.received.append({"headers": dict(self.headers), "body": body})
        status, headers = Scripted.answers.pop(0) if Scripted.answers else (202, {})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Scripted.answers, Scripted.received = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/hooks/cart"
    httpd.shutdown()
    httpd.server_close()


def sender(url: str, env: dict[str, str] | None = None, clock: RecordingClock | None = None) -> WebhookSender:
    config = trigger_settings({"destinations": {"cart": {"kind": "webhook", "url": url, "secret_env": "HOOK_SECRET"}}})
    runtime = Runtime(env={"HOOK_SECRET": SECRET} if env is None else env, clock=clock or RecordingClock(NOW))
    return WebhookSender("cart", config.destinations["cart"], runtime)


def test_a_503_is_retried_as_asked_with_the_same_id_and_a_valid_signature(server):
    Scripted.answers = [(503, {"Retry-After": "2"})]
    clock = RecordingClock(NOW)
    hook = sender(server, clock=clock)
    assert hook.post(PAYLOAD, "t1") == SendResult(True, False)
    assert clock.slept == [2.0] and hook.requests_sent == 2
    for request, sent_at in zip(Scripted.received, (NOW, NOW + timedelta(seconds=2))):  # each attempt signed afresh
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert headers["webhook-id"] == "t1" and headers["idempotency-key"] == "t1"
        assert headers["webhook-timestamp"] == str(int(sent_at.timestamp()))
        assert verify(SECRET, headers, request["body"], now=sent_at.timestamp())
        assert json.loads(request["body"]) == PAYLOAD


def test_a_long_retry_after_ends_the_send_and_the_outbox_waits_as_long():
    config = trigger_settings({"destinations": {"cart": {"url": "http://127.0.0.1:9/", "secret_env": "HOOK_SECRET"}}})

    class Asked:  # the destination asked for an hour (what WebhookSender returns for a 429 with Retry-After: 3600)
        def webhook(self, *args):
            return SendResult(False, True, "HTTP 429 from webhook (server asked to wait 3600s)", 3600.0)

    row = {
        "trigger_id": "t1",
        "segment": "s",
        "customer_id": "c",
        "destination": "cart",
        "attempts": 0,
        "entered_at": NOW.replace(tzinfo=None),
        "due_at": NOW.replace(tzinfo=None),
    }
    update = _send(row, config, Asked(), NOW, {}, None)
    assert update["due_at"] == (NOW + timedelta(hours=1)).replace(tzinfo=None) and update["attempts"] == 1
    plain = type("Plain", (), {"webhook": lambda self, *a: SendResult(False, True, "HTTP 503")})()
    assert _send(row, config, plain, NOW, {}, None)["due_at"] == (NOW + config.retry_after).replace(tzinfo=None)


def test_the_server_s_long_wait_is_reported_not_slept(server):
    Scripted.answers = [(429, {"Retry-After": "3600"})]
    clock = RecordingClock(NOW)
    result = sender(server, clock=clock).post(PAYLOAD, "t1")
    assert (result.ok, result.retryable, result.wait_s, clock.slept) == (False, True, 3600.0, [])
    assert "429" in result.reason and len(Scripted.received) == 1


def test_a_refusal_is_permanent_and_a_missing_secret_is_named(server):
    Scripted.answers = [(400, {})]
    result = sender(server).post(PAYLOAD, "t1")
    assert (result.ok, result.retryable) == (False, False) and result.reason.startswith("HTTP 400")
    missing = sender(server, env={}).post(PAYLOAD, "t1")
    assert (missing.ok, missing.retryable) == (False, False) and "HOOK_SECRET" in missing.reason
    assert len(Scripted.received) == 1
