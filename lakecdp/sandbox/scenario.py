"""A small export scenario: a lake with customers, consent events and segment members, plus ESP config.

Used by the export tests and bench/bench_export.py; the lake is written through the normal
adapter (appends for a new lake; later changes by merge, new events through `ingest_lines`).
Customers are named by the retailer's ids ("c001"); the lake holds their pseudonyms (`pid`),
`customers.external_id` the ids, and ESPs are told the ids.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from lakecdp.config.models import EventSettings
from lakecdp.export.identifiers import email_sha256
from tests.pseudonyms import pid

REPO = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
SEGMENTS = ("cart_abandoned_48h", "high_purchase_intent")  # real segment names from conf/base/segments.yaml

SECRETS = {
    "LAKECDP_TEST_MAILCHIMP_KEY": "0123456789abcdef0123456789abcdef-us1",
    "LAKECDP_TEST_KLAVIYO_KEY": "pk_test_klaviyo_0123456789",
    "LAKECDP_TEST_BRAZE_KEY": "braze-rest-key-0123456789",
    "LAKECDP_TEST_SFMC_ID": "sfmc-client-id",
    "LAKECDP_TEST_SFMC_SECRET": "sfmc-client-secret-0123456789",
    "LAKECDP_TEST_WEBHOOK_SECRET": "webhook-signing-secret-0123456789",
    "LAKECDP_TEST_AWS_KEY": "testing",
    "LAKECDP_TEST_AWS_SECRET": "testing",
}


def email_of(customer_id: str) -> str:
    return f"{customer_id}@shop.example.com"


@dataclass
class Customer:
    customer_id: str
    opt_in: bool | None = True
    email: str | None = "default"
    first_name: str = "Ada"

    def row(self, updated_at: datetime) -> tuple:
        email = email_of(self.customer_id) if self.email == "default" else self.email
        return (
            pid(self.customer_id),
            self.customer_id,
            email,
            self.first_name,
            "Lovelace",
            "GB",
            "London",
            date(2025, 1, 1),
            self.opt_in,
            "test",
            updated_at,
        )


@dataclass
class Population:
    """Who is who in the scenario (customer ids only)."""

    contactable: list[str] = field(default_factory=list)
    opted_out: list[str] = field(default_factory=list)  # marketing_opt_in false
    unsubscribed: list[str] = field(default_factory=list)  # Unsubscribed after their latest opt-in
    resubscribed: list[str] = field(default_factory=list)  # Subscribed again after an Unsubscribed: contactable
    suppressed: list[str] = field(default_factory=list)  # address bounced
    no_email: list[str] = field(default_factory=list)

    @property
    def blocked(self) -> list[str]:
        return self.opted_out + self.unsubscribed + self.suppressed + self.no_email


def population(n: int = 24) -> tuple[list[Customer], Population]:
    """n customers c000..; a fixed handful are not contactable for each reason."""
    ids = [f"c{i:03d}" for i in range(n)]
    pop = Population(opted_out=[ids[1]], unsubscribed=[ids[2]], resubscribed=[ids[3]], suppressed=[ids[4]], no_email=[ids[5]])
    customers = []
    for cid in ids:
        customers.append(Customer(cid, opt_in=cid not in pop.opted_out, email=None if cid in pop.no_email else "default"))
        if cid not in pop.blocked:
            pop.contactable.append(cid)
    return customers, pop


def consent_event(customer_id: str, event: str, at: datetime, message_id: str | None = None) -> str:
    return json.dumps(
        {
            "type": "track",
            "event": event,
            "messageId": message_id or f"{customer_id}-{event}-{at:%Y%m%d%H%M}",
            "userId": customer_id,
            "timestamp": at.isoformat().replace("+00:00", "Z"),
            "properties": {},
        }
    )


def write_lake(spark, lake, customers: Sequence[Customer], members: Mapping[str, Iterable[str]], pop: Population) -> None:
    """customers, segment_membership, consent events and suppressions of a new lake (appends: tables are empty)."""
    lake.append("customers", spark.createDataFrame([c.row(AS_OF) for c in customers], schema=lake.spec("customers").schema))
    rows = [(segment, pid(cid), AS_OF, "v1", None, AS_OF) for segment, ids in members.items() for cid in ids]
    lake.append("segment_membership", spark.createDataFrame(rows, schema=lake.spec("segment_membership").schema))
    events = []
    for cid in pop.unsubscribed:
        events += [(cid, "Subscribed", AS_OF - timedelta(days=20)), (cid, "Unsubscribed", AS_OF - timedelta(days=2))]
    for cid in pop.resubscribed:
        events += [(cid, "Unsubscribed", AS_OF - timedelta(days=20)), (cid, "Subscribed", AS_OF - timedelta(days=2))]
    if events:
        lake.append("events", spark.createDataFrame([bronze_row(*e) for e in events], schema=lake.spec("events").schema))
        _record_consent(lake)
    if pop.suppressed:
        suppressions = [(email_sha256(email_of(cid)), pid(cid), "bounced", "test", AS_OF) for cid in pop.suppressed]
        lake.append("export_suppressions", spark.createDataFrame(suppressions, schema=lake.spec("export_suppressions").schema))


def bronze_row(customer_id: str, event: str, at: datetime) -> tuple:
    """A bronze `events` row for a consent event (what ingest would have written for `consent_event`)."""
    from lakecdp.lake.tables import table

    values: dict[str, Any] = {name: None for name in table("events").columns}
    values.update(
        message_id=f"{customer_id}-{event}-{at:%Y%m%d%H%M}",
        type="track",
        event=event,
        customer_id=pid(customer_id),
        user_id=pid(customer_id),
        timestamp=at,
        received_at=AS_OF,
        properties_json="{}",
        event_date=at.date(),
    )
    return tuple(values.values())


def set_customers(spark, lake, customers: Sequence[Customer]) -> None:
    rows = [c.row(AS_OF) for c in customers]
    lake.merge("customers", spark.createDataFrame(rows, schema=lake.spec("customers").schema))


def set_members(spark, lake, members: Mapping[str, Iterable[str]]) -> None:
    """Replace the membership of the given segments."""
    rows = [(segment, pid(cid), AS_OF, "v1", None, AS_OF) for segment, ids in members.items() for cid in ids]
    df = spark.createDataFrame(rows, schema=lake.spec("segment_membership").schema)
    lake.merge("segment_membership", df, delete_missing={"segment": list(members)})


def add_event(spark, lake, customer_id: str, event: str, at: datetime) -> None:
    from lakecdp.events.ingest import ingest_lines

    raw = spark.createDataFrame([(consent_event(customer_id, event, at), "test://consent")], "raw string, source_file string")
    ingest_lines(lake, raw, received_at=AS_OF, settings=EventSettings())
    _record_consent(lake)


def _record_consent(lake) -> None:
    """The consent ledger's facts of the lake's events, as the stream records them with each batch (insert-only)."""
    from lakecdp.privacy.ledger import ConsentRules, entries_from_events, record_consent

    record_consent(lake, entries_from_events(lake.read("events"), ConsentRules(), AS_OF))


def destinations(urls: Mapping[str, str], *, segments: Sequence[str] = SEGMENTS, fast: bool = True, **overrides: Any) -> dict[str, Any]:
    """The esp.destinations section pointing at local servers (keys of `urls`: which to enable)."""
    quick = {"retry": {"base_delay": "10ms", "max_delay": "200ms", "max_attempts": 4}, "poll_interval": "20ms"} if fast else {}
    segs = list(segments)
    all_destinations = {
        "mailchimp": {
            "type": "mailchimp",
            "list_id": "aud1",
            "api_key_env": "LAKECDP_TEST_MAILCHIMP_KEY",
            "batch_size": 5,
            "segments": {s: {"tag": f"lakecdp_{s}"} for s in segs},
        },
        "klaviyo": {
            "type": "klaviyo",
            "api_key_env": "LAKECDP_TEST_KLAVIYO_KEY",
            "batch_size": 8,
            "segments": {s: {"list_id": f"L{i}"} for i, s in enumerate(segs)},
        },
        "braze": {"type": "braze", "api_key_env": "LAKECDP_TEST_BRAZE_KEY", "batch_size": 6, "segments": segs},
        "sfmc": {
            "type": "sfmc",
            "client_id_env": "LAKECDP_TEST_SFMC_ID",
            "client_secret_env": "LAKECDP_TEST_SFMC_SECRET",
            "data_extension_key": "lakecdp_members",
            "batch_size": 6,
            "segments": segs,
        },
        "s3_drop": {
            "type": "s3",
            "bucket": "lakecdp-drop",
            "access_key_id_env": "LAKECDP_TEST_AWS_KEY",
            "secret_access_key_env": "LAKECDP_TEST_AWS_SECRET",
            "batch_size": 6,
            "segments": segs,
        },
        "webhook": {"type": "webhook", "secret_env": "LAKECDP_TEST_WEBHOOK_SECRET", "batch_size": 4, "segments": segs},
    }
    chosen = {}
    for name, url in urls.items():
        spec = {**all_destinations[name], **quick, "enabled": True}
        if spec["type"] in ("mailchimp", "klaviyo", "braze"):
            spec["base_url"] = url
        elif spec["type"] == "sfmc":
            spec.update(auth_url=url, rest_url=url)
        elif spec["type"] == "s3":
            spec["endpoint_url"] = url
        else:
            spec["url"] = url + "/hook"
        spec.update(overrides.get(name, {}))
        chosen[name] = spec
    return chosen


def esp_section(urls: Mapping[str, str], **kwargs: Any) -> dict[str, Any]:
    """A whole `esp:` section with only the local destinations (base placeholders left out)."""
    return {"destinations": destinations(urls, **kwargs)}


def write_conf(folder: Path, esp: Mapping[str, Any], *, lake_root: Path) -> Path:
    """A conf dir: the repo's base files except esp.yaml (replaced by `esp`), plus local overrides."""
    base, local = folder / "base", folder / "local"
    base.mkdir(parents=True, exist_ok=True)
    local.mkdir(exist_ok=True)
    for path in (REPO / "conf" / "base").glob("*.yaml"):
        if path.name != "esp.yaml":
            shutil.copy(path, base / path.name)
    (base / "esp.yaml").write_text(yaml.safe_dump({"esp": dict(esp)}, sort_keys=False))
    (local / "test.yaml").write_text(
        yaml.safe_dump(
            {
                "lake": {"root": str(lake_root)},
                "spark": {"shuffle_partitions": 2, "driver_memory": "1g"},
            }
        )
    )
    return folder
