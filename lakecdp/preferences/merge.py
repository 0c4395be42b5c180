"""The preference-centre link as an email merge field: every triggered email carries its recipient's own link."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from lakecdp.config import Settings
from lakecdp.preferences.tokens import new_link, preference_url, sign_link

MERGE_FIELD = "PREFS_URL"


class PreferenceLinks:
    """Mints a fresh link per recipient at send time, so a link in an email works for the whole validity period."""

    def __init__(self, base_url: str, secret: bytes, valid_for: timedelta, now: datetime) -> None:
        self.base_url, self.secret, self.valid_for, self.now = base_url, secret, valid_for, now

    def url(self, customer_id: str) -> str:
        """The link for `customer_id` (the lake's pseudonym)."""
        return preference_url(self.base_url, sign_link(new_link(customer_id, now=self.now, valid_for=self.valid_for), self.secret))


def preference_links(settings: Settings, env: Mapping[str, str], now: datetime) -> PreferenceLinks | None:
    """Links for sends at `now`; None when the preference centre is disabled or its secret is not set."""
    from lakecdp.collector.settings import load_collector_settings
    from lakecdp.preferences.settings import load_preferences_settings, resolve_secret

    collector = load_collector_settings(settings.collector)
    preferences = load_preferences_settings(settings.preferences)
    secret = resolve_secret(preferences, collector, env)
    if not preferences.enabled or secret is None:
        return None
    return PreferenceLinks(collector.base_url(), secret, preferences.valid_for, now)
