"""Edge: bring ESP-side opt-outs back into the lake, so the next export honours them.

One path for every ESP whose adapter lists opt-outs (Mailchimp, Klaviyo, Braze, SFMC): each
adapter yields `OptOut`s named by what the ESP returned (the id the export sent, Mailchimp's
subscriber hash, or an email SHA-256 the adapter computed and kept instead of the address).
Unsubscribes become `Unsubscribed` track events through the normal ingest path (validated,
deduplicated by messageId, so re-syncing the same change is a no-op) and consent-ledger facts
with the ESP as source; bounces are added to `export_suppressions` (insert-only).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.sql import DataFrame, Row, functions as F

from lakecdp.config import ConfigError
from lakecdp.config.models import EventSettings
from lakecdp.events.ingest import ingest_lines
from lakecdp.export.adapters import Runtime, build_adapter
from lakecdp.export.adapters.base import BOUNCED, UNSUBSCRIBED, OptOut, ReportsOptOuts
from lakecdp.export.identifiers import email_sha256_col, normalized_email_col, subscriber_hash_col
from lakecdp.export.settings import CONF_FILE, EspSettings
from lakecdp.lake import Lake
from lakecdp.privacy.ledger import ConsentRules, entries_from_events, record_consent

# Destination types whose adapter implements `opt_outs`.
OPT_OUT_TYPES = ("mailchimp", "klaviyo", "braze", "sfmc")
OPT_OUT_SCHEMA = "key_kind string, key string, kind string, changed_at string, reason string"
NO_DATE = "1970-01-01T00:00:00Z"  # messageId part when the ESP gives no date (one event per person then)


@dataclass(frozen=True)
class SyncResult:
    unsubscribed: int  # unsubscribes the ESP reported
    bounced: int  # bounces (Mailchimp cleaned, hard bounces, held) the ESP reported
    matched: int  # of those, opt-outs matched to at least one customer
    events_added: int  # new Unsubscribed events in bronze (0 when already synced)
    suppressions_added: int


def sync_unsubscribes(
    lake: Lake, esp: EspSettings, destination: str, runtime: Runtime, *, events: EventSettings, since: datetime | None = None
) -> SyncResult:
    """Read the destination's unsubscribes and bounces and record them in the lake."""
    adapter = _opt_out_adapter(esp, destination, runtime)
    try:
        opt_outs = list(adapter.opt_outs(since))
    finally:
        adapter.close()
    rows = [(o.key_kind, o.key, o.kind, _iso(o.changed_at), o.reason) for o in opt_outs]
    matches = match_opt_outs(lake.spark.createDataFrame(rows, OPT_OUT_SCHEMA), _customer_contacts(lake)).collect() if rows else []
    now = runtime.clock.now()
    added = _record_unsubscribes(lake, esp, destination, [m for m in matches if m["kind"] == UNSUBSCRIBED], events, now)
    suppressed = _record_bounces(lake, destination, [m for m in matches if m["kind"] == BOUNCED], now)
    matched = len({(m["key_kind"], m["key"], m["kind"]) for m in matches})
    return SyncResult(
        unsubscribed=sum(1 for o in opt_outs if o.kind == UNSUBSCRIBED),
        bounced=sum(1 for o in opt_outs if o.kind == BOUNCED),
        matched=matched,
        events_added=added,
        suppressions_added=suppressed,
    )


def _opt_out_adapter(esp: EspSettings, destination: str, runtime: Runtime) -> ReportsOptOuts:
    settings = esp.destinations.get(destination)
    if settings is None or settings.type not in OPT_OUT_TYPES:
        kind = "not configured" if settings is None else f"of type {settings.type}"
        raise ConfigError(
            f"{CONF_FILE}: esp.destinations.{destination} is {kind}; sync-unsubscribes reads {', '.join(OPT_OUT_TYPES)} "
            "destinations. Fix: pass one of those."
        )
    adapter = build_adapter(destination, settings, esp.attributes, runtime)
    if not isinstance(adapter, ReportsOptOuts):
        adapter.close()
        raise TypeError(f"{destination}: the {type(adapter).__name__} cannot list opt-outs")
    return adapter


def _customer_contacts(lake: Lake) -> DataFrame:
    """customer_id, external_id, email of every customer: the one read of `customers.email` here."""
    return lake.with_plain_contacts(lake.read("customers").select("customer_id", "external_id", "email"))


def with_match_keys(contacts: DataFrame) -> DataFrame:
    """One row per (customer, way an ESP may name them): customer_id, email_sha256, key_kind, key (nulls dropped)."""
    email = normalized_email_col("email")
    keys = F.create_map(
        F.lit("external_id"),
        F.col("external_id"),
        F.lit("subscriber_hash"),
        subscriber_hash_col(email),
        F.lit("email_sha256"),
        email_sha256_col(email),
    )
    return (
        contacts.select("customer_id", email_sha256_col(email).alias("email_sha256"), F.explode(keys).alias("key_kind", "key"))
        .filter(F.col("key").isNotNull())
        .select("customer_id", "email_sha256", "key_kind", "key")
    )


def match_opt_outs(opt_outs: DataFrame, contacts: DataFrame) -> DataFrame:
    """Opt-outs (OPT_OUT_SCHEMA) joined to the customers they name; one row per (opt-out, customer).

    An address shared by two customers names both: the address opted out, so both are matched.
    Returns: key_kind, key, kind, changed_at, reason, customer_id, email_sha256 (null without an address).
    """
    # Opt-outs are few next to customers: broadcast them rather than shuffle the customer table.
    return (
        with_match_keys(contacts)
        .join(F.broadcast(opt_outs), on=["key_kind", "key"], how="inner")
        .select("key_kind", "key", "kind", "changed_at", "reason", "customer_id", "email_sha256")
    )


def _record_unsubscribes(
    lake: Lake, esp: EspSettings, destination: str, matches: Sequence[Row], events: EventSettings, now: datetime
) -> int:
    """Unsubscribed events through ingest, then consent facts whose source names the ESP; the new event count."""
    if not matches:
        return 0
    event = esp.consent.opt_out_events[0]
    lines = [_unsubscribed_event(destination, event, m) for m in matches]
    source = f"esp://{destination}/unsubscribed"
    raw = lake.spark.createDataFrame([(line, source) for line in lines], "raw string, source_file string")
    added = ingest_lines(lake, raw, received_at=now, settings=events).events
    # The stream never sees these lines, so their ledger facts are recorded here.
    rules = ConsentRules(opt_in_events=tuple(esp.consent.opt_in_events), opt_out_events=tuple(esp.consent.opt_out_events))
    record_consent(lake, entries_from_events(lake.read("events").filter(F.col("source_file") == source), rules, now))
    return added


def _record_bounces(lake: Lake, destination: str, matches: Sequence[Row], now: datetime) -> int:
    """New export_suppressions rows for bounced addresses (insert-only: the first reason stays); how many."""
    bounced = {m["email_sha256"]: (m["customer_id"], m["reason"]) for m in matches if m["email_sha256"] is not None}
    if not bounced:
        return 0
    existing = lake.read("export_suppressions").filter(F.col("email_sha256").isin(sorted(bounced)))
    known = {r["email_sha256"] for r in existing.select("email_sha256").collect()}
    new = [
        (digest, cid, f"bounced ({reason})", destination, now) for digest, (cid, reason) in sorted(bounced.items()) if digest not in known
    ]
    if new:
        rows = lake.spark.createDataFrame(new, schema=lake.spec("export_suppressions").schema)
        lake.merge("export_suppressions", rows, update_columns=[])
    return len(new)


def _unsubscribed_event(destination: str, event: str, match: Row) -> str:
    """A Segment-spec track event; the messageId is fixed per (ESP key, change) so a re-sync adds nothing."""
    changed = match["changed_at"] or NO_DATE
    return json.dumps(
        {
            "type": "track",
            "event": event,
            "messageId": f"{destination}-unsubscribed-{match['key']}-{changed}",
            "userId": match["customer_id"],
            "timestamp": changed,
            "properties": {},
            "context": {"source": destination},
        }
    )


def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


__all__ = ["OPT_OUT_TYPES", "OptOut", "SyncResult", "match_opt_outs", "sync_unsubscribes", "with_match_keys"]
