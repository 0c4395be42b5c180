"""The preference-centre link as an email merge field: every triggered email carries its recipient's own link,
and so does every export to a destination with `content_fields: true` (beside the content merge fields)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta

from lakecdp.clock import Clock
from lakecdp.config import Settings
from lakecdp.preferences.tokens import new_link, periodic_link, preference_url, sign_link

MERGE_FIELD = "PREFS_URL"
MergeFields = Callable[[Sequence[str]], Mapping[str, Mapping[str, str]]]  # customer ids -> each one's merge fields


class PreferenceLinks:
    """Mints each recipient's link: fresh at send time (a triggered email), or the period's link for a list an
    ESP keeps (`periodic`: exports), so that an unchanged member is not re-sent on every run."""

    def __init__(self, base_url: str, secret: bytes, valid_for: timedelta, clock: Clock, *, periodic: bool = False) -> None:
        self.base_url, self.secret, self.valid_for, self.clock, self.periodic = base_url, secret, valid_for, clock, periodic

    def url(self, customer_id: str) -> str:
        """The link for `customer_id` (the lake's pseudonym)."""
        now = self.clock.now()
        if self.periodic:
            link = periodic_link(customer_id, now=now, valid_for=self.valid_for, secret=self.secret)
        else:
            link = new_link(customer_id, now=now, valid_for=self.valid_for)
        return preference_url(self.base_url, sign_link(link, self.secret))


def with_preference_links(fields: MergeFields, links: PreferenceLinks | None) -> MergeFields:
    """`fields` plus each customer's PREFS_URL (unchanged when there are no links to mint)."""
    if links is None:
        return fields

    def combined(customer_ids: Sequence[str]) -> Mapping[str, Mapping[str, str]]:
        base = fields(customer_ids)
        return {c: {**base.get(c, {}), MERGE_FIELD: links.url(c)} for c in customer_ids}

    return combined


def preference_links(settings: Settings, env: Mapping[str, str], clock: Clock, *, periodic: bool = False) -> PreferenceLinks | None:
    """Links minted at `clock`'s now; None when the preference centre is disabled or its secret is not set."""
    from lakecdp.collector.settings import load_collector_settings
    from lakecdp.preferences.settings import load_preferences_settings, resolve_secret

    collector = load_collector_settings(settings.collector)
    preferences = load_preferences_settings(settings.preferences)
    secret = resolve_secret(preferences, collector, env)
    if not preferences.enabled or secret is None:
        return None
    return PreferenceLinks(collector.base_url(), secret, preferences.valid_for, clock, periodic=periodic)
