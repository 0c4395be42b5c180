"""Edge: bring ESP-side opt-outs back into the lake, so the next export honours them.

Mailchimp's unsubscribed members become `Unsubscribed` track events through the normal ingest
path (validated, deduplicated by messageId, so re-syncing the same change is a no-op); its
`cleaned` members (hard bounces, https://mailchimp.com/help/about-your-contacts/#Cleaned) are
added to `export_suppressions`. Members are matched to customers by subscriber hash, so no
address is ever requested from Mailchimp.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import functions as F

from lakecdp.config import ConfigError
from lakecdp.config.models import EventSettings
from lakecdp.events.ingest import ingest_lines
from lakecdp.export.adapters import Runtime, build_adapter
from lakecdp.export.adapters.mailchimp import MailchimpAdapter
from lakecdp.export.identifiers import email_sha256_col, normalized_email_col, subscriber_hash_col
from lakecdp.export.settings import CONF_FILE, EspSettings
from lakecdp.lake import Lake
from lakecdp.privacy.ledger import ConsentRules, entries_from_events, record_consent

BOUNCED = "bounced (Mailchimp cleaned)"


@dataclass(frozen=True)
class SyncResult:
    unsubscribed: int  # unsubscribed members Mailchimp reported
    cleaned: int  # cleaned (bounced) members Mailchimp reported
    matched: int  # of those, members matched to a customer
    events_added: int  # new Unsubscribed events in bronze (0 when already synced)
    suppressions_added: int


def sync_unsubscribes(
    lake: Lake, esp: EspSettings, destination: str, runtime: Runtime, *, events: EventSettings, since: str | None = None
) -> SyncResult:
    """Read the audience's unsubscribed and cleaned members and record them in the lake."""
    settings = esp.destinations.get(destination)
    if settings is None or settings.type != "mailchimp":
        raise ConfigError(f"{CONF_FILE}: esp.destinations.{destination} is not a mailchimp destination. Fix: pass a mailchimp one.")
    adapter = build_adapter(destination, settings, esp.attributes, runtime)
    if not isinstance(adapter, MailchimpAdapter):
        raise TypeError(f"{destination}: expected the Mailchimp adapter, got {type(adapter).__name__}")
    try:
        unsubscribed = list(adapter.members_with_status("unsubscribed", since))
        cleaned = list(adapter.members_with_status("cleaned", since))
    finally:
        adapter.close()
    customers = _customers_by_hash(lake, {m["id"] for m in unsubscribed + cleaned})
    now = runtime.clock.now()
    lines = [
        _unsubscribed_event(destination, esp.consent.opt_out_events[0], member, customers[member["id"]][0])
        for member in unsubscribed
        if member["id"] in customers
    ]
    added = 0
    if lines:
        source = f"esp://{destination}/unsubscribed"
        raw = lake.spark.createDataFrame([(line, source) for line in lines], "raw string, source_file string")
        added = ingest_lines(lake, raw, received_at=now, settings=events).events
        # Consent facts whose source names the ESP (the stream never sees these lines).
        rules = ConsentRules(opt_in_events=tuple(esp.consent.opt_in_events), opt_out_events=tuple(esp.consent.opt_out_events))
        record_consent(lake, entries_from_events(lake.read("events").filter(F.col("source_file") == source), rules, now))
    bounced = {customers[m["id"]][1]: customers[m["id"]][0] for m in cleaned if m["id"] in customers}
    suppressed = 0
    if bounced:
        existing = lake.read("export_suppressions").filter(F.col("email_sha256").isin(sorted(bounced)))
        known = {r["email_sha256"] for r in existing.select("email_sha256").collect()}
        new = [(digest, cid, BOUNCED, destination, now) for digest, cid in sorted(bounced.items()) if digest not in known]
        if new:
            rows = lake.spark.createDataFrame(new, schema=lake.spec("export_suppressions").schema)
            lake.merge("export_suppressions", rows, update_columns=[])  # insert-only: the first reason stays
        suppressed = len(new)
    matched = sum(1 for m in unsubscribed + cleaned if m["id"] in customers)
    return SyncResult(len(unsubscribed), len(cleaned), matched, added, suppressed)


def _customers_by_hash(lake: Lake, hashes: set[str]) -> dict[str, tuple[str, str]]:
    """subscriber hash -> (customer_id, email_sha256) for the customers whose address has that hash."""
    if not hashes:
        return {}
    email = normalized_email_col("email")
    rows = (
        lake.with_plain_contacts(lake.read("customers").select("customer_id", "email"))
        .select("customer_id", subscriber_hash_col(email).alias("hash"), email_sha256_col(email).alias("email_sha256"))
        .filter(F.col("hash").isin(sorted(hashes)))
        .collect()
    )
    return {r["hash"]: (r["customer_id"], r["email_sha256"]) for r in rows}


def _unsubscribed_event(destination: str, event: str, member: dict, customer_id: str) -> str:
    """A Segment-spec track event; the messageId is fixed per (member, change) so a re-sync adds nothing."""
    changed = member.get("last_changed") or datetime(1970, 1, 1).isoformat() + "Z"
    return json.dumps(
        {
            "type": "track",
            "event": event,
            "messageId": f"{destination}-unsubscribed-{member['id']}-{changed}",
            "userId": customer_id,
            "timestamp": changed,
            "properties": {},
            "context": {"source": destination},
        }
    )
