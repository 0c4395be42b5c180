"""Model settings: conf/base/models.yaml loads; mistakes name the file, the key and the fix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from lakecdp.config import ConfigError, load_settings
from models.settings import parse_model_settings

REPO_CONF = Path(__file__).resolve().parents[2] / "conf"


def test_committed_models_yaml_is_valid():
    settings = parse_model_settings(load_settings(REPO_CONF, env={}).models)
    assert settings.horizon == timedelta(days=7)
    assert settings.clustering.k_min <= settings.clustering.k_max
    assert "orders_window" in settings.clustering.features


def test_horizon_is_configurable_as_a_duration():
    assert parse_model_settings({"horizon": "14d"}).horizon == timedelta(days=14)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"horizn": "7d"}, ["conf/base/models.yaml", "models.horizn", "remove 'horizn'"]),
        ({"intent": {"cv_folds": 1}}, ["models.intent.cv_folds", "greater than or equal to 2", "Fix: set models.intent.cv_folds"]),
        ({"clustering": {"k_min": 6, "k_max": 4}}, ["models.clustering", "k_max (4) must be >= k_min (6)"]),
        ({"clustering": {"features": ["orders_window", "shoe_size"]}}, ["['shoe_size'] are not model features"]),
        ({"horizon": "a week"}, ["models.horizon", "is not a duration"]),
    ],
)
def test_errors_name_file_key_and_fix(section, expected):
    with pytest.raises(ConfigError) as excinfo:
        parse_model_settings(section)
    for fragment in expected:
        assert fragment in str(excinfo.value)
