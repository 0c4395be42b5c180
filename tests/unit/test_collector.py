"""The collector app in-process: Segment API auth, limits, gzip, validation, stamping, email links."""

from __future__ import annotations

import base64
import gzip
import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest

with warnings.catch_warnings():
    # Starlette 1.x nudges towards httpx2 for its TestClient; httpx works and is what is installed.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from lakecdp.clock import FrozenClock
from lakecdp.collector.app import CollectorConfig, create_app
from lakecdp.collector.landing import LandingWriter
from lakecdp.collector.links import PIXEL_GIF, open_pixel_url, sign_click_url
from lakecdp.collector.settings import load_collector_settings, resolve_write_keys

NOW = datetime(2026, 11, 1, 12, 0, 0, 123000, tzinfo=UTC)
KEY = "wk_web_0123456789"
SECRET = b"s3cret-link-key-for-tests-only!!"


def basic(key: str, password: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:{password}".encode()).decode()}


def track(**overrides) -> dict:
    return {"type": "track", "event": "Product Viewed", "userId": "cust_1", **overrides}


@pytest.fixture
def landing(tmp_path) -> Path:
    return tmp_path / "events"


@pytest.fixture
def client(landing):
    writer = LandingWriter(landing, roll_bytes=1 << 20, roll_seconds=3600, clock=FrozenClock(NOW))
    app = create_app(CollectorConfig(write_keys={KEY: "web"}, link_secret=SECRET), writer, clock=FrozenClock(NOW))
    with TestClient(app) as test_client:
        yield test_client


def landed(landing: Path) -> list[dict]:
    """Published lines (call after the client closed: shutdown publishes the open file)."""
    assert not list(landing.glob(".inprogress-*")), "shutdown must publish the open file"
    return [json.loads(line) for path in sorted(landing.glob("part-*.jsonl")) for line in path.read_text().splitlines()]


# -- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, body_key, reason",
    [
        ({}, None, "missing write key"),
        (basic("wrong-key"), None, "not valid"),
        ({"Authorization": "Bearer " + KEY}, None, "Basic auth"),
        ({"Authorization": "Basic !!notbase64"}, None, "not valid Basic"),
        ({}, "wrong-key", "not valid"),
    ],
)
def test_requests_without_a_valid_write_key_get_401(client, headers, body_key, reason):
    body = {"batch": [track()], **({"writeKey": body_key} if body_key else {})}
    response = client.post("/v1/batch", json=body, headers=headers)
    assert response.status_code == 401
    assert reason in response.json()["error"] and response.json()["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_a_revoked_key_gets_401_and_the_other_source_still_works(tmp_path):
    collector = load_collector_settings({"sources": {"web": {"write_key_env": "WEB_KEY"}, "app": {"write_key_env": "APP_KEY"}}})
    # APP_KEY was removed from the environment: that source's old key is revoked.
    keys = resolve_write_keys(collector, {"WEB_KEY": KEY})
    writer = LandingWriter(tmp_path, roll_bytes=1 << 20, roll_seconds=3600)
    with TestClient(create_app(CollectorConfig(write_keys=keys), writer)) as client:
        assert client.post("/v1/track", json=track(), headers=basic("old-app-key")).status_code == 401
        assert client.post("/v1/track", json=track(), headers=basic(KEY)).status_code == 200


def test_write_key_in_the_body_authenticates_and_never_lands(client, landing):
    response = client.post("/v1/batch", json={"writeKey": KEY, "batch": [track(writeKey=KEY)]})
    assert response.status_code == 200 and response.json() == {"success": True}
    client.__exit__(None, None, None)
    (event,) = landed(landing)
    assert "writeKey" not in event and KEY not in json.dumps(event)
    assert event["context"]["source"] == "web"


# -- size limits -------------------------------------------------------------------------------


def test_a_batch_over_500_kb_is_413(client):
    events = [track(properties={"blob": "x" * 20_000}) for _ in range(30)]  # ~600 KB
    response = client.post("/v1/batch", json={"batch": events}, headers=basic(KEY))
    assert response.status_code == 413
    assert "500 KB" in response.json()["error"]


def test_an_event_over_32_kb_is_refused_by_index_and_the_rest_of_its_batch_lands(client, landing):
    events = [track(), track(properties={"blob": "x" * 33_000}), track()]
    response = client.post("/v1/batch", json={"batch": events}, headers=basic(KEY))
    assert response.status_code == 200
    [refused] = response.json()["refused"]
    assert refused["index"] == 1 and "32 KB" in refused["error"] and refused["code"] == "event_too_large"
    single = client.post("/v1/track", json=track(properties={"blob": "x" * 33_000}), headers=basic(KEY))
    assert single.status_code == 400 and "index" not in single.json()
    client.__exit__(None, None, None)
    lines = landed(landing)
    assert [line.get("event") for line in lines] == ["Product Viewed", None, "Product Viewed"]
    # Too large to keep whole: the reason lands, for the quarantine, without the message.
    assert "32 KB" in lines[1]["_lakecdp_rejected"] and "message" not in lines[1]


# -- gzip ----------------------------------------------------------------------------------------


def test_gzip_bodies_are_accepted(client, landing):
    body = gzip.compress(json.dumps({"batch": [track(), track(event="Order Completed")]}).encode())
    response = client.post("/v1/batch", content=body, headers={**basic(KEY), "Content-Encoding": "gzip"})
    assert response.status_code == 200
    client.__exit__(None, None, None)
    assert [e["event"] for e in landed(landing)] == ["Product Viewed", "Order Completed"]


def test_broken_gzip_is_400_and_a_gzip_bomb_is_413(client):
    headers = {**basic(KEY), "Content-Encoding": "gzip"}
    assert client.post("/v1/batch", content=b"not gzip at all", headers=headers).status_code == 400
    bomb = gzip.compress(json.dumps({"batch": [track(properties={"pad": " " * 2_000_000})]}).encode())
    assert len(bomb) < 10_000
    assert client.post("/v1/batch", content=bomb, headers=headers).status_code == 413
    assert client.post("/v1/batch", content=b"{}", headers={**basic(KEY), "Content-Encoding": "br"}).status_code == 415


# -- validation and stamping --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event, reason",
    [
        ({"event": "A", "userId": "u"}, "missing type"),
        (track(type="purchase"), "unknown type 'purchase'"),
        ({"type": "track", "event": "A"}, "missing both userId and anonymousId"),
        (track(userId="  "), "missing both userId and anonymousId"),
        (track(event=""), "track event without an event name"),
        (track(timestamp="last tuesday"), "is not ISO-8601"),
        (track(timestamp="2026-02-30T10:00:00Z"), "is not ISO-8601"),
        (track(properties=[1, 2]), "properties must be a JSON object"),
        ({"type": "alias", "userId": "u"}, "alias without previousId"),
        (track(properties={"price": 1e999}), "properties.price: number out of range"),
        (track(properties={"sizes": [1, -1e999]}), "properties.sizes[1]: number out of range"),
        ("just text", "not a JSON object"),
    ],
)
def test_an_invalid_event_is_refused_by_index_and_reason_and_the_rest_of_its_batch_lands(client, landing, event, reason):
    # Sent as text: 1e999 is what a client's float overflow looks like on the wire (Python reads it as inf).
    body = json.dumps({"batch": [track(), event, track(event="Order Completed")]}).replace("Infinity", "1e999")
    response = client.post("/v1/batch", content=body, headers={**basic(KEY), "Content-Type": "application/json"})
    assert response.status_code == 200
    [refused] = response.json()["refused"]
    assert refused["index"] == 1 and reason in refused["error"] and refused["code"] == "invalid_event"
    client.__exit__(None, None, None)
    first, bad, last = landed(landing)
    assert (first["event"], last["event"]) == ("Product Viewed", "Order Completed")
    # The refused message lands whole (or, when it is not writable as JSON, its reason alone) for the stream to quarantine.
    assert bad.get("message", "not writable") == (event if "out of range" not in reason else "not writable")
    assert reason in bad["_lakecdp_rejected"] and bad["messageId"]


def test_a_batch_message_whose_type_has_a_lone_surrogate_is_refused_with_a_readable_reason(client, landing):
    body = json.dumps({"batch": [track(), track(type="track\ud800")]})  # "\ud800" in the JSON text: valid JSON, no UTF-8
    response = client.post("/v1/batch", content=body, headers={**basic(KEY), "Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.json()["refused"] == [
        {
            "index": 1,
            "code": "invalid_event",
            "error": "batch[1]: unknown type 'track\\ud800': use one of track, identify, page, screen, alias, group",
        }
    ]
    client.__exit__(None, None, None)
    kept, refused = landed(landing)
    assert kept["event"] == "Product Viewed" and "unknown type 'track\\ud800'" in refused["_lakecdp_rejected"]


def test_invalid_json_is_400(client):
    response = client.post("/v1/track", content=b'{"type": "track",', headers=basic(KEY))
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    assert client.post("/v1/batch", json={"events": []}, headers=basic(KEY)).status_code == 400


def test_events_are_stamped_and_batch_context_applies(client, landing):
    batch = {
        "batch": [
            track(messageId="m-1", timestamp="2026-11-01T11:59:00.000Z", receivedAt="1999-01-01T00:00:00Z"),
            {"type": "identify", "anonymousId": "anon-1", "traits": {"plan": "pro"}, "context": {"locale": "de-DE"}},
        ],
        "context": {"library": {"name": "analytics-python"}, "locale": "en-US"},
        "sentAt": "2026-11-01T11:59:59.000Z",
    }
    assert client.post("/v1/batch", json=batch, headers=basic(KEY)).status_code == 200
    assert client.post("/v1/page", json={"userId": 42, "name": "Home"}, headers=basic(KEY)).status_code == 200
    client.__exit__(None, None, None)
    tracked, identified, paged = landed(landing)
    assert tracked["messageId"] == "m-1" and tracked["timestamp"] == "2026-11-01T11:59:00.000Z"
    assert tracked["receivedAt"] == "2026-11-01T12:00:00.123Z", "receivedAt comes from the collector's clock"
    assert tracked["sentAt"] == "2026-11-01T11:59:59.000Z"
    assert tracked["context"] == {"library": {"name": "analytics-python"}, "locale": "en-US", "source": "web"}
    assert identified["context"]["locale"] == "de-DE", "the message's own context wins over the batch's"
    assert len(identified["messageId"]) == 36 and identified["timestamp"] == identified["receivedAt"]
    assert paged["type"] == "page" and paged["userId"] == "42"


# -- email links ---------------------------------------------------------------------------------


def path_of(url: str) -> str:
    return url.removeprefix("http://collector.test")


def test_open_pixel_returns_a_gif_and_records_email_opened(client, landing):
    url = open_pixel_url("http://collector.test", secret=SECRET, customer_id="cust_9", campaign_id="cmp_1", email_id="eml_1")
    response = client.get(path_of(url))
    assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
    assert response.content == PIXEL_GIF and response.content[:6] == b"GIF89a" and response.content[6:10] == b"\x01\x00\x01\x00"
    assert "no-store" in response.headers["cache-control"]
    forged = client.get("/v1/o/eyJwIjoib3BlbiJ9.AAAA.gif")
    assert forged.status_code == 200 and forged.content == PIXEL_GIF, "a mail client always gets its image"
    client.__exit__(None, None, None)
    (opened,) = landed(landing)
    assert opened["event"] == "Email Opened" and opened["userId"] == "cust_9"
    assert opened["properties"] == {"campaign_id": "cmp_1", "email_id": "eml_1"}
    assert opened["context"]["source"] == "email"


def test_signed_click_redirects_and_records_email_link_clicked(client, landing):
    target = "https://shop.example.com/c/shoes?utm_campaign=cmp_1"
    url = sign_click_url(
        "http://collector.test", secret=SECRET, customer_id="cust_9", campaign_id="cmp_1", email_id="eml_1", target_url=target
    )
    response = client.get(path_of(url), follow_redirects=False)
    assert response.status_code == 302 and response.headers["location"] == target
    assert client.head(path_of(url), follow_redirects=False).status_code == 302
    client.__exit__(None, None, None)
    (clicked,) = landed(landing)  # HEAD (link scanners) is not a click
    assert clicked["event"] == "Email Link Clicked" and clicked["properties"]["url"] == target


def test_tampered_unsigned_or_wrong_purpose_links_never_redirect(client, landing):
    kwargs = {"secret": SECRET, "customer_id": "c", "campaign_id": "k", "email_id": "e"}
    good = path_of(sign_click_url("http://collector.test", target_url="https://shop.example.com/", **kwargs))
    token = good.rsplit("/", 1)[1]
    payload, signature = token.split(".")
    evil_payload = (
        base64.urlsafe_b64encode(json.dumps({"p": "click", "c": "c", "k": "k", "e": "e", "u": "https://evil.example.net/"}).encode())
        .rstrip(b"=")
        .decode()
    )
    other_secret = sign_click_url(
        "http://collector.test", **{**kwargs, "secret": b"another-secret-of-32-bytes-long!"}, target_url="https://evil.example.net/"
    )
    pixel_token = path_of(open_pixel_url("http://collector.test", **kwargs)).rsplit("/", 1)[1].removesuffix(".gif")
    for bad in (
        f"/v1/c/{evil_payload}.{signature}",  # target swapped, signature kept
        f"/v1/c/{payload}",  # signature stripped
        f"/v1/c/{payload}.{signature[:-2]}AA",  # signature altered
        path_of(other_secret),  # signed with someone else's secret
        f"/v1/c/{pixel_token}",  # an open token replayed as a click
        "/v1/c/evil.example.net",  # not a token at all
    ):
        response = client.get(bad, follow_redirects=False)
        assert response.status_code == 400, bad
        assert "location" not in response.headers
    client.__exit__(None, None, None)
    assert landed(landing) == []


def test_click_links_only_sign_web_targets():
    from lakecdp.collector.links import LinkError

    for target in ("javascript:alert(1)", "//evil.example.net", "https://ok.example.com/\r\nSet-Cookie: x"):
        with pytest.raises(LinkError):
            sign_click_url("http://t", secret=SECRET, customer_id="c", campaign_id="k", email_id="e", target_url=target)


def test_a_sender_cannot_set_the_refusal_field(client, landing):
    response = client.post("/v1/batch", json={"batch": [track(_lakecdp_rejected="spoofed")]}, headers=basic(KEY))
    assert response.status_code == 200 and "refused" not in response.json()
    client.__exit__(None, None, None)
    [line] = landed(landing)
    assert "_lakecdp_rejected" not in line and line["event"] == "Product Viewed"


def test_a_running_collector_sees_a_revocation_within_one_check_interval(tmp_path):
    from datetime import datetime

    from lakecdp.collector.revocations import CHECK_EVERY_S, Revocations

    now = [100.0]
    collector = Revocations(tmp_path / "revoked_sources.json", monotonic=lambda: now[0])
    assert not collector.is_revoked("web")  # read once: nothing revoked
    Revocations(tmp_path / "revoked_sources.json").revoke("web", reason="leaked", at=datetime(2026, 11, 1, tzinfo=UTC))
    now[0] += CHECK_EVERY_S / 2
    assert not collector.is_revoked("web")  # within the interval: the view it read
    now[0] += CHECK_EVERY_S / 2
    assert collector.is_revoked("web")  # one interval on: re-read, refused


def test_a_batch_message_with_lone_surrogates_in_its_id_and_type_lands_as_a_refused_line():
    """Such a message once landed None instead of a line, and the whole batch request failed."""
    from lakecdp.collector.messages import Envelope, landing_lines
    from lakecdp.events.schema import REJECTED_FIELD

    bad = {"type": "track\ud800", "messageId": "m-\udfff", "event": "Product Viewed", "userId": "u1"}
    good = {"type": "track", "messageId": "m-ok", "event": "Product Viewed", "userId": "u1"}
    landed = landing_lines(
        Envelope(messages=[bad, good], defaults={}, is_batch=True),
        source="web",
        received_at=datetime(2026, 11, 2, tzinfo=UTC),
        new_id=lambda: "fresh-id",
    )

    refused, kept = (json.loads(line) for line in landed.lines)
    assert refused["messageId"] == "fresh-id" and "unknown type 'track\\ud800'" in refused[REJECTED_FIELD]
    assert kept["messageId"] == "m-ok" and [r["index"] for r in landed.refused] == [0]
