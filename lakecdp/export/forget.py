"""Edge: right to erasure at the ESPs - ask every enabled destination to delete one customer.

Each adapter's `forget` calls its provider's documented deletion API (the URLs are in each
adapter's docstring) through the same limits and retry policy as exports. A destination that
still fails after retries, or refuses, makes the whole call fail with `EspDeletionFailed`, so the
erasure stays queued and the next run asks every destination again (each deletion is idempotent).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lakecdp.export.adapters import Adapter, Runtime, build_adapter
from lakecdp.export.http import DestinationError, RetriesExhausted
from lakecdp.export.identifiers import email_sha256, mailchimp_subscriber_hash, scrub_pii
from lakecdp.export.settings import EspSettings


class EspDeletionFailed(RuntimeError):
    """Some destination did not delete the customer; `failures` maps destination -> reason (no PII)."""

    def __init__(self, outcomes: Mapping[str, str], failures: Mapping[str, str]) -> None:
        super().__init__("ESP deletion failed at " + ", ".join(f"{name} ({reason})" for name, reason in sorted(failures.items())))
        self.outcomes, self.failures = dict(outcomes), dict(failures)


class EspEraser:
    """The enabled destinations' adapters, built once and reused for every erasure of a run.

    Reusing them keeps each ESP's rate limits across customers. Building fails loudly
    (ConfigError) when a destination's secret is not set, before anything is deleted anywhere.
    """

    def __init__(self, esp: EspSettings, runtime: Runtime, names: Iterable[str] | None = None) -> None:
        self.adapters: dict[str, Adapter] = {}
        try:
            for name, settings in esp.enabled(names).items():
                self.adapters[name] = build_adapter(name, settings, esp.attributes, runtime)
        except BaseException:
            self.close()
            raise

    def __call__(self, customer_id: str, email: str | None) -> dict[str, str]:
        """destination -> outcome for every destination; raises EspDeletionFailed when any failed."""
        outcomes, failures = {}, {}
        for name, adapter in self.adapters.items():
            try:
                outcomes[name] = adapter.forget(customer_id, email)
            except (RetriesExhausted, DestinationError) as exc:
                failures[name] = redact(str(exc), customer_id, email)
        if failures:
            raise EspDeletionFailed(outcomes, failures)
        return outcomes

    def close(self) -> None:
        for adapter in self.adapters.values():
            adapter.close()

    def __enter__(self) -> EspEraser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def forget_everywhere(esp_settings: EspSettings, runtime: Runtime, customer_id: str, email: str | None) -> dict[str, str]:
    """Delete one customer at every enabled destination: destination -> outcome ("deleted", "not found", ...).

    Raises:
        EspDeletionFailed: a destination failed after retries or refused; nothing should be deleted locally yet.
    """
    with EspEraser(esp_settings, runtime) as eraser:
        return eraser(customer_id, email)


def redact(text: str, customer_id: str, email: str | None) -> str:
    """An ESP's error text without the customer's id, address or the address's hashes (safe to log)."""
    text = scrub_pii(text) or ""
    if email:
        for value in (email, email_sha256(email), mailchimp_subscriber_hash(email)):
            text = text.replace(value, "<email>")
    return text.replace(customer_id, "<customer_id>")
