"""One config loader: conf/base/*.yaml, then conf/local/*.yaml, then LAKECDP__* env vars."""

from lakecdp.config.loader import ConfigError, load_settings, parse_duration
from lakecdp.config.models import Settings
from lakecdp.config.sections import validate_section

__all__ = ["ConfigError", "Settings", "load_settings", "parse_duration", "validate_section"]
