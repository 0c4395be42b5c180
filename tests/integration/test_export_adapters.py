"""Each ESP adapter against its contract server on 127.0.0.1 (and S3 against moto's real server)."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from lakecdp.export.adapters import Runtime, build_adapter
from lakecdp.export.batches import REMOVE, UPSERT, Batch, Member
from lakecdp.export.http import DestinationError
from lakecdp.export.identifiers import email_sha256, mailchimp_subscriber_hash
from lakecdp.export.runner import send_with_row_retry
from lakecdp.export.settings import load_esp_settings
from lakecdp.sandbox import BrazeServer, KlaviyoServer, MailchimpServer, Response, SfmcServer, WebhookServer
from lakecdp.sandbox.scenario import SECRETS, destinations, email_of
from tests.clocks import RecordingClock

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 1, tzinfo=UTC)
ATTRIBUTES = {"first_name": "Ada", "last_name": None, "country": "GB", "city": "London"}
INVALID, FLAKY = "c003", "c005"


def adapter_for(name: str, url: str, runtime: Runtime | None = None, **overrides):
    esp = load_esp_settings({"destinations": destinations({name: url}, **{name: overrides})})
    return build_adapter(name, esp.destinations[name], esp.attributes, runtime or Runtime(env=SECRETS))


def members(n: int, identifier) -> tuple[Member, ...]:
    return tuple(Member(f"c{i:03d}", "create", identifier(f"c{i:03d}"), "h", email_of(f"c{i:03d}"), ATTRIBUTES) for i in range(n))


def removes(ms) -> tuple[Member, ...]:
    return tuple(Member(m.customer_id, REMOVE, m.identifier, m.payload_hash) for m in ms)


def batch(ms, kind=UPSERT, seq=0, segment="cart_abandoned_48h") -> Batch:
    return Batch("run1", "esp", segment, seq, kind, tuple(ms), planned_at=NOW)


def outcomes(result) -> dict[str, tuple[bool, str | None]]:
    return {o.customer_id: (o.ok, o.reason) for o in result.outcomes}


def test_mailchimp_partial_failures_are_retried_row_by_row_and_never_exceed_10_connections():
    with MailchimpServer(
        api_key=SECRETS["LAKECDP_TEST_MAILCHIMP_KEY"],
        list_id="aud1",
        invalid_emails=[email_of(INVALID)],
        flaky_emails=[email_of(FLAKY)],
        latency=0.03,
    ) as server:
        adapter = adapter_for("mailchimp", server.url)
        ms = members(8, lambda c: mailchimp_subscriber_hash(email_of(c)))
        result = send_with_row_retry(adapter, batch(ms))
        assert outcomes(result)[INVALID] == (False, "ERROR_GENERIC: <email> looks fake or invalid, please enter a real email address.")
        assert all(ok for cid, (ok, _) in outcomes(result).items() if cid != INVALID)  # the flaky one succeeded alone
        assert server.batch_sizes == [8, 1, 1]  # two row-by-row retries
        assert server.tagged("lakecdp_cart_abandoned_48h") == {email_of(m.customer_id) for m in ms if m.customer_id != INVALID}

        untagged = send_with_row_retry(adapter, batch(removes(ms[:4]), REMOVE, seq=1))
        assert all(ok for ok, _ in outcomes(untagged).values())  # c003 was never added: a 404, fine
        assert email_of("c000") not in server.tagged("lakecdp_cart_abandoned_48h")

        # 24 callers at once: the adapter still keeps at most 10 requests open.
        many = [batch((m,), seq=10 + i) for i, m in enumerate(members(24, lambda c: mailchimp_subscriber_hash(email_of(c))))]
        with ThreadPoolExecutor(24) as pool:
            list(pool.map(adapter.send, many))
        assert 2 <= server.peak_in_flight <= 10
        assert server.violations == []


def test_klaviyo_job_errors_name_the_profile_and_429_retry_after_is_honoured():
    with KlaviyoServer(
        api_key=SECRETS["LAKECDP_TEST_KLAVIYO_KEY"],
        invalid_emails=[email_of(INVALID)],
        flaky_emails=[email_of(FLAKY)],
        polls_until_complete=2,
    ) as server:
        server.inject("POST", "/api/profile-bulk-import-jobs", Response(429, {"errors": []}, headers={"Retry-After": "1"}))
        adapter = adapter_for("klaviyo", server.url)
        ms = members(8, lambda c: c)
        result = send_with_row_retry(adapter, batch(ms))
        assert outcomes(result)[INVALID] == (False, "invalid: Invalid input. - Invalid email address <email>")
        assert sum(ok for ok, _ in outcomes(result).values()) == 7
        posts = [r.arrived_at for r in server.requests if r.method == "POST"]
        assert posts[1] - posts[0] >= 0.95  # waited what Retry-After said
        assert server.members_of("L0") == {m.customer_id for m in ms} - {INVALID}

        left = send_with_row_retry(adapter, batch(removes(ms[:2] + (Member("c999", REMOVE, "c999", "h"),)), REMOVE, seq=1))
        assert all(ok for ok, _ in outcomes(left).values())
        assert server.members_of("L0") == {m.customer_id for m in ms[2:]} - {INVALID}
        assert server.violations == []


def test_klaviyo_server_fails_requests_that_break_the_openapi_contract():
    with KlaviyoServer(api_key="k") as server:
        url = f"{server.url}/api/profile-bulk-import-jobs"
        auth = {"Authorization": "Klaviyo-API-Key k", "Content-Type": "application/vnd.api+json"}
        good = {
            "data": {
                "type": "profile-bulk-import-job",
                "attributes": {"profiles": {"data": [{"type": "profile", "attributes": {"email": "a@b.co"}}]}},
            }
        }
        no_revision = httpx.post(url, headers=auth, content=json.dumps(good))
        bad_body = httpx.post(url, headers={**auth, "revision": "2026-07-15"}, content=json.dumps({"data": {"type": "profile"}}))
        wrong_media = httpx.post(
            url, headers={**auth, "revision": "2026-07-15", "Content-Type": "application/json"}, content=json.dumps(good)
        )
        ok = httpx.post(url, headers={**auth, "revision": "2026-07-15"}, content=json.dumps(good))
    assert [no_revision.status_code, bad_body.status_code, wrong_media.status_code, ok.status_code] == [400, 400, 415, 202]
    assert len(server.violations) == 3 and "revision" in server.violations[0] and "schema" in server.violations[1]


def test_braze_reads_x_ratelimit_reset_and_reports_non_fatal_errors_by_index():
    with BrazeServer(
        api_key=SECRETS["LAKECDP_TEST_BRAZE_KEY"], invalid_emails=[email_of(INVALID)], flaky_emails=[email_of(FLAKY)]
    ) as server:
        clock = RecordingClock(NOW)
        server.clock = clock  # the server's epoch seconds and the client's agree, both frozen
        reset = str(int(clock.now().timestamp()) + 2)
        server.inject("POST", "/users/track", Response(429, {"message": "Too Many Requests"}, headers={"X-RateLimit-Reset": reset}))
        adapter = adapter_for("braze", server.url, Runtime(env=SECRETS, clock=clock))
        ms = members(6, lambda c: c)
        result = send_with_row_retry(adapter, batch(ms))
        assert outcomes(result)[INVALID] == (False, "'email' is not a valid email address")
        assert 2.0 in clock.slept  # waited until X-RateLimit-Reset, 2 s after the 429 by the shared clock
        assert server.in_segment("lakecdp_segments", "cart_abandoned_48h") == {m.customer_id for m in ms} - {INVALID}
        assert server.users["c000"]["email_subscribe"] == "opted_in" and server.users["c000"]["home_city"] == "London"
        send_with_row_retry(adapter, batch(removes(ms[:2]), REMOVE, seq=1))
        assert server.in_segment("lakecdp_segments", "cart_abandoned_48h") == {m.customer_id for m in ms[2:]} - {INVALID}
        assert max(server.batch_sizes) <= 75 and server.violations == []


def test_sfmc_renews_a_revoked_token_and_attributes_row_errors_row_by_row():
    with SfmcServer(
        client_id=SECRETS["LAKECDP_TEST_SFMC_ID"],
        client_secret=SECRETS["LAKECDP_TEST_SFMC_SECRET"],
        data_extension_key="lakecdp_members",
        invalid_emails=[email_of(INVALID)],
        polls_until_complete=2,
    ) as server:
        adapter = adapter_for("sfmc", server.url)
        ms = members(6, lambda c: c)
        result = send_with_row_retry(adapter, batch(ms))
        assert outcomes(result)[INVALID] == (False, "InvalidEmailAddress: Invalid email address: <email>")
        assert server.members("cart_abandoned_48h") == {m.customer_id for m in ms} - {INVALID}
        server.revoke_tokens()
        send_with_row_retry(adapter, batch(removes(ms[:2]), REMOVE, seq=1))
        assert server.members("cart_abandoned_48h") == {m.customer_id for m in ms[2:]} - {INVALID}
        assert server.rows[("c000", "cart_abandoned_48h")].get("EmailAddress") == email_of("c000")  # a remove sends no address
        assert server.tokens_issued == 2 and server.violations == []


def test_webhook_is_signed_and_a_resent_batch_is_delivered_once():
    with WebhookServer(secret=SECRETS["LAKECDP_TEST_WEBHOOK_SECRET"], invalid_customers=[INVALID], flaky_customers=[FLAKY]) as server:
        adapter = adapter_for("webhook", server.url)
        b = batch(members(6, lambda c: email_sha256(email_of(c))))
        first, again = send_with_row_retry(adapter, b), send_with_row_retry(adapter, b)
        assert outcomes(first) == outcomes(again) and outcomes(first)[INVALID] == (False, "unknown recipient")
        assert set(server.deliveries.values()) == {1} and server.replays >= 2
        body = server.requests[0].body.decode()
        assert "@" not in body and email_sha256(email_of("c000")) in body  # identifier: normalized SHA-256 only
        assert server.violations == []


def test_5xx_that_outlasts_the_retries_fails_every_member_as_retryable():
    with BrazeServer(api_key=SECRETS["LAKECDP_TEST_BRAZE_KEY"]) as server:
        server.inject("POST", "/users/track", Response(503, {"message": "unavailable"}), times=10)
        result = send_with_row_retry(adapter_for("braze", server.url), batch(members(3, lambda c: c)))
    assert {o.retryable for o in result.outcomes} == {True}
    assert {o.reason for o in result.outcomes} == {'HTTP 503 from users.track: {"message": "unavailable"} after 4 attempts'}
    assert server.count("POST") == 4


@pytest.mark.parametrize("name", ["mailchimp", "klaviyo", "braze", "webhook"])
def test_refused_credentials_stop_the_destination(name):
    servers = {
        "mailchimp": lambda: MailchimpServer(api_key="other", list_id="aud1"),
        "klaviyo": lambda: KlaviyoServer(api_key="other"),
        "braze": lambda: BrazeServer(api_key="other"),
        "webhook": lambda: WebhookServer(secret="another-secret-0123456789"),
    }
    with servers[name]() as server:
        with pytest.raises(DestinationError):
            adapter_for(name, server.url).send(batch(members(2, lambda c: email_sha256(email_of(c)) if name == "webhook" else c)))


@pytest.fixture(scope="module")
def s3_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    httpx.post(f"http://{host}:{port}/moto-api/reset")  # moto keeps one backend per process: start empty
    yield f"http://{host}:{port}"
    server.stop()


def test_s3_drop_writes_encrypted_parts_and_a_manifest_with_checksums(s3_server):
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="lakecdp-drop")
    adapter = adapter_for("s3_drop", s3_server, format="jsonl")
    ms = members(5, lambda c: email_sha256(email_of(c)))
    parts = [adapter.send(batch(ms[:3])), adapter.send(batch(ms[3:], seq=1)), adapter.send(batch(removes(ms[:1]), REMOVE, seq=2))]
    adapter.send(batch(ms[:3]))  # a resend overwrites its own part
    adapter.finish(parts)
    prefix = "lakecdp/exports/s3_drop/cart_abandoned_48h/run1"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="lakecdp-drop", Prefix=prefix)["Contents"])
    assert keys == [f"{prefix}/manifest.json", *[f"{prefix}/part-{n:05d}.jsonl" for n in range(3)]]
    manifest = json.loads(s3.get_object(Bucket="lakecdp-drop", Key=f"{prefix}/manifest.json")["Body"].read())
    assert manifest["counts"] == {"create": 5, "update": 0, "remove": 1} and manifest["total_rows"] == 6
    for entry in manifest["files"]:
        data = s3.get_object(Bucket="lakecdp-drop", Key=entry["key"])
        body = data["Body"].read()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"] and len(body) == entry["bytes"]
        assert data["ServerSideEncryption"] == "AES256"
        rows = [json.loads(line) for line in body.decode().splitlines()]
        assert all("@" not in json.dumps(row) for row in rows)  # identifier email_sha256: no address in the file
    adapter.close()
