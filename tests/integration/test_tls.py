"""HTTPS: the collector serves TLS from conf's certificate to the Segment SDK, adds HSTS, and refuses plain HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
import segment.analytics.client as segment

from lakecdp.clock import FrozenClock
from lakecdp.collector.server import CollectorThread, build_app
from lakecdp.config import ConfigError, load_settings
from lakecdp.tls import TlsSettings
from tests.certs import self_signed

pytestmark = pytest.mark.integration

KEY = "wk_tls_0123456789"
NOW = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def collector(tmp_path, tls: dict):
    settings = load_settings(env={}, overrides={"collector": {"tls": tls}, "landing": {"root": str(tmp_path / "landing")}})
    return build_app(settings, env={"LAKECDP_WRITE_KEY": KEY}, clock=FrozenClock(NOW))


def landed(tmp_path) -> list[dict]:
    folder = tmp_path / "landing" / "events"
    return [json.loads(line) for path in sorted(folder.glob("part-*.jsonl")) for line in path.read_text().splitlines()]


def test_the_segment_sdk_sends_over_https_and_answers_carry_hsts(tmp_path, monkeypatch):
    certfile, keyfile = self_signed(tmp_path / "tls")
    app, settings = collector(tmp_path, {"certfile": str(certfile), "keyfile": str(keyfile)})
    # The SDK posts through requests, which trusts the CA bundle this variable names: our certificate.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certfile))
    errors: list[Exception] = []
    with CollectorThread(app, tls=settings.tls) as server:
        assert server.url.startswith("https://127.0.0.1:")
        sdk = segment.Client(KEY, host=server.url, on_error=lambda error, _batch: errors.append(error), sync_mode=True)
        sdk.track("cust_tls", "Product Viewed", {"category": "shoes"}, timestamp=NOW, message_id="over-tls")

        answer = httpx.get(f"{server.url}/health", verify=str(certfile))
        assert answer.status_code == 200 and answer.headers["strict-transport-security"] == "max-age=31536000"
        with pytest.raises(httpx.ConnectError):  # an untrusted certificate: TLS is real, not a label
            httpx.get(f"{server.url}/health")
        with pytest.raises(httpx.TransportError):  # plain HTTP to the HTTPS port never gets an answer
            httpx.get(server.url.replace("https://", "http://") + "/health")
    assert errors == []
    assert [(e["messageId"], e["event"]) for e in landed(tmp_path)] == [("over-tls", "Product Viewed")]


def test_behind_a_tls_proxy_plain_http_is_refused_and_forwarded_https_passes(tmp_path):
    app, _ = collector(tmp_path, {"require_https": True})
    with CollectorThread(app) as server, httpx.Client(base_url=server.url) as client:
        refused = client.get("/health")
        assert refused.status_code == 403 and "HTTPS required" in refused.json()["error"]
        assert "strict-transport-security" not in refused.headers  # never over plain HTTP (RFC 6797 §7.2)
        # uvicorn takes the scheme from X-Forwarded-Proto when the proxy is 127.0.0.1 (its forwarded_allow_ips)
        forwarded = client.get("/health", headers={"X-Forwarded-Proto": "https"})
        assert forwarded.status_code == 200 and forwarded.headers["strict-transport-security"] == "max-age=31536000"


def test_tls_settings_name_what_is_missing(tmp_path):
    with pytest.raises(ConfigError, match=r"collector\.tls: .*set both certfile and keyfile"):
        collector(tmp_path, {"certfile": "x.pem"})
    with pytest.raises(ConfigError, match=r"collector\.tls\.keyfile: .*missing\.key is not a file"):
        TlsSettings(certfile=str(self_signed(tmp_path / "tls")[0]), keyfile=str(tmp_path / "missing.key")).uvicorn_options("collector")
