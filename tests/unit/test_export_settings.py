"""conf/base/esp.yaml validation: documented limits, env-var names for secrets, errors that say file, key, fix."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lakecdp.config import ConfigError, load_settings
from lakecdp.export.settings import RateLimitSpec, load_esp_settings, token_bucket


def mailchimp(**extra):
    return {"destinations": {"mc": {"type": "mailchimp", "list_id": "a1", "api_key_env": "MC_KEY", "segments": ["s"], **extra}}}


def test_committed_esp_yaml_loads_with_every_destination_disabled():
    settings = load_settings(env={})
    esp = load_esp_settings(settings.esp, segment_names=[s["name"] for s in settings.segments])
    assert {d.type for d in esp.destinations.values()} == {"mailchimp", "klaviyo", "braze", "sfmc", "s3", "webhook"}
    assert esp.enabled() == {}
    assert esp.destinations["klaviyo"].rate_limits == [
        RateLimitSpec(requests=10, per=timedelta(seconds=1)),
        RateLimitSpec(requests=150, per=timedelta(minutes=1)),
    ]
    assert esp.destinations["braze"].batch_size == 75 and esp.destinations["mailchimp"].max_in_flight == 10


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (mailchimp(batch_size=501), "esp.destinations.mc: batch_size 501 is above the documented maximum 500"),
        (mailchimp(max_in_flight=11), "above the documented 10 concurrent connections"),
        (mailchimp(api_key="abc"), "esp.destinations.mc.api_key: Extra inputs are not permitted. Fix: never commit a secret"),
        (mailchimp(api_key_env="mc_key"), "esp.destinations.mc.api_key_env: must be an environment variable NAME"),
        ({"destinations": {"k": {"type": "klaviyo", "api_key_env": "K", "segments": ["s"]}}}, "segments ['s'] need a list_id"),
        (
            {"destinations": {"k": {"type": "klaviyo", "api_key_env": "K", "rate_limits": [{"requests": 20, "per": "1s"}]}}},
            "rate_limits must include one at or below the documented 10 requests per 1s",
        ),
        ({"destinations": {"b": {"type": "braze", "base_url": "u", "api_key_env": "B", "batch_size": 76}}}, "documented maximum 75"),
        ({"destinations": {"x": {"type": "sendgrid"}}}, "Fix: set type to one of mailchimp, klaviyo, braze, sfmc, s3, webhook"),
        (
            {"destinations": {"s": {"type": "s3", "bucket": "b", "kms_key_id": "k"}}},
            "kms_key_id is set but server_side_encryption is not 'aws:kms'",
        ),
    ],
)
def test_invalid_destinations_fail_naming_file_key_and_fix(section, expected):
    with pytest.raises(ConfigError) as raised:
        load_esp_settings(section)
    message = str(raised.value)
    assert "conf/base/esp.yaml" in message and expected in message
    assert "Fix:" in message


def test_unknown_segment_names_are_refused():
    with pytest.raises(ConfigError, match=r"esp.destinations.mc.segments: \['s'\] are not segments in conf/base/segments.yaml"):
        load_esp_settings(mailchimp(), segment_names=["cart_abandoned_48h"])


def test_unknown_destination_name_on_the_command_line_is_refused():
    esp = load_esp_settings(mailchimp())
    with pytest.raises(ConfigError, match=r"has no \['nope'\]"):
        esp.enabled(["nope"])
    assert list(esp.enabled(["mc"])) == ["mc"]


@pytest.mark.parametrize(("requests", "per", "fill"), [(10, 1, 0.95), (150, 60, 0.95), (3000, 3, 0.95), (20, 1, 0.9), (2, 1, 0.95)])
def test_token_bucket_never_admits_more_than_the_limit_in_any_window(requests, per, fill):
    capacity, rate = token_bucket(RateLimitSpec(requests=requests, per=timedelta(seconds=per)), fill)
    # A bucket starting full admits at most capacity + rate * T in any window of length T.
    assert capacity + rate * per <= requests
    assert capacity >= 1 and rate > 0


@pytest.mark.parametrize(("requests", "per"), [(150, 60), (3000, 3), (20, 1), (50, 1)])
def test_token_bucket_sustains_at_least_90_percent_of_the_documented_rate(requests, per):
    _, rate = token_bucket(RateLimitSpec(requests=requests, per=timedelta(seconds=per)), 0.95)
    assert 0.9 * requests / per <= rate < requests / per
