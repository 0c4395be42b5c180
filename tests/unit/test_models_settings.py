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
    assert settings.label_window == timedelta(days=7)
    assert settings.gap_to_validation == settings.label_window
    assert settings.clustering.k_min <= settings.clustering.k_max
    assert "orders_window" in settings.clustering.features


def test_the_label_window_is_a_duration_and_horizon_its_former_name():
    assert parse_model_settings({"label_window": "14d"}).label_window == timedelta(days=14)
    assert parse_model_settings({"horizon": "2w"}).label_window == timedelta(days=14)
    assert parse_model_settings({"validation_gap": "3d"}).gap_to_validation == timedelta(days=3)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"horizn": "7d"}, ["conf/base/models.yaml", "models.horizn", "remove 'horizn'"]),
        ({"intent": {"cv_folds": 1}}, ["models.intent.cv_folds", "greater than or equal to 2", "Fix: set models.intent.cv_folds"]),
        ({"clustering": {"k_min": 6, "k_max": 4}}, ["models.clustering", "k_max (4) must be >= k_min (6)"]),
        ({"clustering": {"features": ["orders_window", "shoe_size"]}}, ["['shoe_size'] are not model features"]),
        ({"label_window": "a week"}, ["models.label_window", "is not a duration"]),
        ({"horizon": "7d", "label_window": "7d"}, ["horizon and label_window are the same setting"]),
        ({"intent": {"families": ["random_forest", "random_forest"]}}, ["models.intent.families", "each model family once"]),
        ({"intent": {"families": ["xgboost"]}}, ["models.intent.families.0", "random_forest"]),
    ],
)
def test_errors_name_file_key_and_fix(section, expected):
    with pytest.raises(ConfigError) as excinfo:
        parse_model_settings(section)
    for fragment in expected:
        assert fragment in str(excinfo.value)
