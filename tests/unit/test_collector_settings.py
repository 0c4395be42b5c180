"""conf/base/collector.yaml: validated, with errors naming the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakecdp.collector.settings import load_collector_settings, resolve_link_secret, resolve_write_keys
from lakecdp.config import ConfigError, load_settings

REPO_CONF = Path(__file__).resolve().parents[2] / "conf"


def test_committed_collector_conf_loads_on_loopback_with_env_keys():
    collector = load_collector_settings(load_settings(REPO_CONF, env={}).collector)
    assert collector.host == "127.0.0.1"
    assert collector.sources["default"].write_key_env == "LAKECDP_WRITE_KEY"
    assert resolve_write_keys(collector, {"LAKECDP_WRITE_KEY": "k1"}) == {"k1": "default"}
    assert resolve_write_keys(collector, {}) == {}, "an unset variable is a revoked key"


def test_env_overrides_reach_the_collector_section():
    settings = load_settings(REPO_CONF, env={"LAKECDP__COLLECTOR__PORT": "9001"})
    assert load_collector_settings(settings.collector).port == 9001


@pytest.mark.parametrize(
    "section, expected",
    [
        ({"prot": 1}, ["conf/base/collector.yaml", "collector.prot", "check its spelling"]),
        ({"port": "http"}, ["collector.port", "'http'", "LAKECDP__COLLECTOR__PORT"]),
        ({"roll_bytes": 10}, ["collector.roll_bytes", "greater than or equal to 1024"]),
        ({"sources": {"Web App": {"write_key_env": "X"}}}, ["collector.sources", "lower-case"]),
        ({"sources": {"web": {"write_key_env": "lower"}}}, ["collector.sources.web.write_key_env", "UPPER_SNAKE_CASE"]),
    ],
)
def test_errors_name_file_key_and_fix(section, expected):
    with pytest.raises(ConfigError) as excinfo:
        load_collector_settings(section)
    for text in expected:
        assert text in str(excinfo.value)


def test_a_committed_write_key_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as excinfo:
        load_collector_settings({"sources": {"web": {"write_key_env": "WEB_KEY", "write_key": "sk_live_secret"}}})
    message = str(excinfo.value)
    assert "collector.sources.web.write_key" in message and "never commit a write key" in message
    assert "sk_live_secret" not in message


def test_two_sources_sharing_a_key_is_an_error():
    collector = load_collector_settings({"sources": {"a": {"write_key_env": "A"}, "b": {"write_key_env": "B"}}})
    with pytest.raises(ConfigError, match="own write key"):
        resolve_write_keys(collector, {"A": "same", "B": "same"})


def test_link_secret_must_be_long_enough():
    collector = load_collector_settings({})
    assert resolve_link_secret(collector, {}) is None
    with pytest.raises(ConfigError, match="shorter than 16 bytes"):
        resolve_link_secret(collector, {"LAKECDP_LINK_SECRET": "short"})
    assert resolve_link_secret(collector, {"LAKECDP_LINK_SECRET": "x" * 32}) == b"x" * 32
