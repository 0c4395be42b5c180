"""The consent ledger: every consent fact per customer x purpose x channel, with its source and proof.

Facts come from three places, each recorded as it arrives and never rewritten (insert-only on a
deterministic entry id, so a replayed batch or a re-import adds nothing):

- events through the collector or the stream: the email opt-in / opt-out events named in
  conf esp.yaml (`esp.consent`), a `Consent Updated` event (`properties.purpose`, `.status`
  "granted"/"withdrawn", optional `.channel`), and identify traits `consent: {purpose: true|false}`;
- CRM imports: `marketing_opt_in` of each imported row (email marketing);
- ESP unsubscribes synced back (`lakecdp export sync-unsubscribes`), recorded as opt-out events
  whose source names the ESP.

A customer's status for a purpose is the latest fact by `recorded_at` (ties: withdrawn wins). With
no fact: email marketing is opt-in (no send without a recorded grant: see lakecdp.privacy.consent),
personalization and profiling are opt-out (allowed until withdrawn); enrichment depends on the
source's legal basis (lakecdp.enrich: consent needs a grant, legitimate interest only no withdrawal).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window, functions as F

from lakecdp.config import ConfigError
from lakecdp.config.sections import Sources, source_of
from lakecdp.events.json_text import LONE_SURROGATE, NotExact, loads
from lakecdp.lake import Lake
from lakecdp.privacy.purposes import (
    CRM_SOURCE,
    EMAIL_MARKETING,
    ENRICHMENT,
    GRANTED,
    PERSONALIZATION,
    PREFERENCE_CENTRE,
    PROFILING,
    WITHDRAWN,
)


@dataclass(frozen=True)
class ConsentRules:
    """What counts as a consent fact, and the status a customer has with none."""

    opt_in_events: tuple[str, ...] = ("Subscribed",)
    opt_out_events: tuple[str, ...] = ("Unsubscribed",)
    consent_event: str = "Consent Updated"
    traits_key: str = "consent"
    purposes: tuple[str, ...] = (EMAIL_MARKETING, PERSONALIZATION, PROFILING, ENRICHMENT)


def consent_rules(privacy: Mapping[str, Any] | None, esp: Mapping[str, Any] | None, *, sources: Sources | None = None) -> ConsentRules:
    """Rules from the `privacy.consent` section; the email opt-in/out event names are esp.yaml's (one place).
    `sources`: where each key came from (Settings.sources), for the errors."""
    section = dict((privacy or {}).get("consent") or {})
    unknown = sorted(set(section) - {"event", "traits_key"})
    if unknown:
        where = source_of(("privacy", "consent", unknown[0]), sources)
        raise ConfigError(f"{where}: unknown key(s) privacy.consent.{', '.join(unknown)}. Fix: use event or traits_key.")
    email = dict((esp or {}).get("consent") or {})
    return ConsentRules(
        opt_in_events=tuple(email.get("opt_in_events") or ConsentRules.opt_in_events),
        opt_out_events=tuple(email.get("opt_out_events") or ConsentRules.opt_out_events),
        consent_event=str(section.get("event", ConsentRules.consent_event)),
        traits_key=str(section.get("traits_key", ConsentRules.traits_key)),
    )


def _entry(
    customer: Column, purpose: Column, channel: Column, status: Column, at: Column, source: Column, proof: Column, now: datetime
) -> list[Column]:
    return [
        F.sha2(F.concat_ws("|", proof, purpose, status), 256).alias("entry_id"),
        customer.alias("customer_id"),
        purpose.alias("purpose"),
        channel.alias("channel"),
        status.alias("status"),
        at.alias("recorded_at"),
        source.alias("source"),
        proof.alias("proof"),
        F.lit(now).cast("timestamp").alias("ingested_at"),
    ]


def entries_from_events(events: DataFrame, rules: ConsentRules, now: datetime) -> DataFrame:
    """Ledger entries for the consent facts among bronze-shaped `events` (any other event yields none)."""
    # The collector stamps context.source with the authenticated sender, and no write key may be the preference
    # centre's: only the centre's own events carry a link id the proof can trust.
    link_id = F.get_json_object("properties_json", "$.link_id")
    is_from_centre = (F.get_json_object("context_json", "$.source") == F.lit(PREFERENCE_CENTRE)) & link_id.isNotNull()
    centre_proof = F.concat(
        F.lit("preference link "), link_id, F.lit(" submitted "), F.date_format("timestamp", "yyyy-MM-dd'T'HH:mm:ss'Z'"), F.lit("; ")
    )
    event_source = F.when(is_from_centre, F.lit(PREFERENCE_CENTRE)).otherwise(F.concat(F.lit("event:"), F.col("event")))
    source = F.when(F.col("source_file").startswith("esp://"), F.col("source_file")).otherwise(event_source)
    proof = F.concat(F.when(is_from_centre, centre_proof).otherwise(F.lit("")), F.lit("message:"), F.col("message_id"))
    email = F.lit("email")
    opt = events.filter(F.col("event").isin(*rules.opt_in_events, *rules.opt_out_events)).select(
        *_entry(
            F.col("customer_id"),
            F.lit(EMAIL_MARKETING),
            email,
            F.when(F.col("event").isin(*rules.opt_in_events), F.lit(GRANTED)).otherwise(F.lit(WITHDRAWN)),
            F.col("timestamp"),
            source,
            proof,
            now,
        )
    )
    stated = F.lower(F.get_json_object("properties_json", "$.status"))
    granted_flag = F.get_json_object("properties_json", "$.granted")
    updated = (
        events.filter(F.col("event") == rules.consent_event)
        .withColumn("c_purpose", F.get_json_object("properties_json", "$.purpose"))
        .withColumn(
            "c_status",
            F.when(stated.isin(GRANTED, WITHDRAWN), stated)
            .when(F.lower(granted_flag) == "true", F.lit(GRANTED))
            .when(F.lower(granted_flag) == "false", F.lit(WITHDRAWN)),
        )
        .filter(F.col("c_purpose").isin(*rules.purposes) & F.col("c_status").isNotNull())
        .select(
            *_entry(
                F.col("customer_id"),
                F.col("c_purpose"),
                F.coalesce(F.get_json_object("properties_json", "$.channel"), email),
                F.col("c_status"),
                F.col("timestamp"),
                event_source,
                proof,
                now,
            )
        )
    )
    traits = events.filter((F.col("type") == "identify") & F.col("traits_json").isNotNull())
    from_traits = [
        traits.withColumn("flag", F.lower(F.get_json_object(F.get_json_object("traits_json", f"$.{rules.traits_key}"), f"$.{purpose}")))
        .filter(F.col("flag").isin("true", "false"))
        .select(
            *_entry(
                F.col("customer_id"),
                F.lit(purpose),
                email,
                F.when(F.col("flag") == "true", F.lit(GRANTED)).otherwise(F.lit(WITHDRAWN)),
                F.col("timestamp"),
                F.lit("identify traits"),
                proof,
                now,
            )
        )
        for purpose in rules.purposes
    ]
    result = opt.unionByName(updated)
    for frame in from_traits:
        result = result.unionByName(frame)
    return result


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def entries_of_rows(rows: Iterable[Mapping[str, Any]], rules: ConsentRules, now_us: int) -> list[dict[str, Any]]:
    """`entries_from_events` on the driver, for bronze rows with times in µs (the stream's flush).

    NotExact for a row with a field the entries read (link id, source, purpose, status, channel,
    consent traits) that is a number or an object: Spark's text of it is not redone here.
    """
    return [entry for row in rows for entry in _row_entries(row, rules, now_us)]


def _row_entries(row: Mapping[str, Any], rules: ConsentRules, now_us: int) -> list[dict[str, Any]]:
    event, properties = row["event"], _Fields(row["properties_json"])
    link_id = properties.get("link_id")
    is_from_centre = link_id is not None and _Fields(row["context_json"]).get("source") == PREFERENCE_CENTRE
    event_source = PREFERENCE_CENTRE if is_from_centre else f"event:{event}"
    proof = f"message:{row['message_id']}"
    if is_from_centre:
        submitted = (_EPOCH + timedelta(microseconds=row["timestamp"])).strftime("%Y-%m-%dT%H:%M:%SZ")
        proof = f"preference link {link_id} submitted {submitted}; {proof}"
    fact = {"customer_id": row["customer_id"], "recorded_at": row["timestamp"], "proof": proof, "ingested_at": now_us}
    stated: list[dict[str, Any]] = []  # purpose, channel, status, source of each fact the row states
    if event in rules.opt_in_events or event in rules.opt_out_events:
        source = row["source_file"] if row["source_file"].startswith("esp://") else event_source
        opted = GRANTED if event in rules.opt_in_events else WITHDRAWN
        stated.append({"purpose": EMAIL_MARKETING, "channel": "email", "status": opted, "source": source})
    if event == rules.consent_event:
        purpose, status, channel = properties.get("purpose"), _stated_status(properties), properties.get("channel")
        if purpose in rules.purposes and status is not None:
            stated.append(
                {"purpose": purpose, "channel": "email" if channel is None else channel, "status": status, "source": event_source}
            )
    if row["type"] == "identify" and row["traits_json"] is not None:
        consent = _Fields(_Fields(row["traits_json"]).get(rules.traits_key))
        for purpose in rules.purposes:
            flag = (consent.get(purpose) or "").lower()
            if flag in ("true", "false"):
                flagged = GRANTED if flag == "true" else WITHDRAWN
                stated.append({"purpose": purpose, "channel": "email", "status": flagged, "source": "identify traits"})
    return [{"entry_id": hashlib.sha256(f"{proof}|{s['purpose']}|{s['status']}".encode()).hexdigest()} | fact | s for s in stated]


def _stated_status(properties: _Fields) -> str | None:
    """A consent event's status: `status` granted/withdrawn, else the `granted` flag."""
    stated = (properties.get("status") or "").lower()
    if stated in (GRANTED, WITHDRAWN):
        return stated
    flag = (properties.get("granted") or "").lower()
    return GRANTED if flag == "true" else WITHDRAWN if flag == "false" else None


class _Fields:
    """get_json_object(text, '$.key') of a JSON object's text, for string and boolean fields."""

    def __init__(self, text: str | None) -> None:
        self._value: Any = None
        if text is None:
            return
        try:
            self._value = loads(text)[0]
        except NotExact:
            if text.lstrip().startswith("{"):
                raise  # a repeated key: which value Spark's path reader takes is not redone here
            # Not JSON: get_json_object gives null.

    def get(self, key: str) -> str | None:
        value = self._value.get(key) if isinstance(self._value, dict) else None
        if value is None:  # absent, or JSON's null: get_json_object gives null for both
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and not LONE_SURROGATE.search(value):
            return value
        raise NotExact  # a number, an object, a lone surrogate: Spark's text of it is not redone here


def entries_from_customers(customers: DataFrame, now: datetime) -> DataFrame:
    """Ledger entries for the email-marketing flag of CRM rows (customers-table shaped)."""
    return customers.filter(F.col("marketing_opt_in").isNotNull()).select(
        *_entry(
            F.col("customer_id"),
            F.lit(EMAIL_MARKETING),
            F.lit("email"),
            F.when(F.col("marketing_opt_in"), F.lit(GRANTED)).otherwise(F.lit(WITHDRAWN)),
            F.col("updated_at"),
            F.concat(F.lit(CRM_SOURCE), F.col("source")),
            F.concat(F.lit("crm:"), F.col("customer_id"), F.lit("@"), F.date_format("updated_at", "yyyy-MM-dd'T'HH:mm:ss.SSSSSSX")),
            now,
        )
    )


def record_consent(lake: Lake, entries: DataFrame) -> int:
    """Insert new facts; an entry already recorded is left as it is, so a replay adds nothing. Returns facts seen."""
    if entries.isEmpty():  # most stream batches carry no consent fact: skip the dedupe shuffle and the merge
        return 0
    entries = entries.dropDuplicates(["entry_id"]).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        count = entries.count()
        if count:
            lake.merge("consent_ledger", entries, update_columns=[])
        return count
    finally:
        entries.unpersist()


def current_consent(ledger: DataFrame, purpose: str) -> DataFrame:
    """(customer_id, status, recorded_at, source) of each customer's latest fact for `purpose`
    (lakecdp.privacy.facts.latest_facts in Spark)."""
    latest = Window.partitionBy("customer_id").orderBy(F.col("recorded_at").desc(), F.col("status").desc())  # withdrawn > granted
    return (
        ledger.filter(F.col("purpose") == purpose)
        .withColumn("rank", F.row_number().over(latest))
        .filter(F.col("rank") == 1)
        .select("customer_id", "status", "recorded_at", "source")
    )


def refused(lake: Lake, purpose: str) -> DataFrame:
    """customer_id of everyone whose latest fact for an opt-out `purpose` (personalization, profiling) is withdrawn."""
    if purpose == EMAIL_MARKETING:
        raise ValueError("email marketing is opt-in: use lakecdp.privacy.consent (no send without a recorded grant)")
    if not lake.exists("consent_ledger"):
        return lake.spark.createDataFrame([], "customer_id string")
    return current_consent(lake.read("consent_ledger"), purpose).filter(F.col("status") == WITHDRAWN).select("customer_id")


def refused_ids(lake: Lake, purpose: str) -> list[str]:
    return sorted(r.customer_id for r in refused(lake, purpose).collect())


def without_refusals(frame: DataFrame, lake: Lake, purpose: str, *, column: str = "customer_id") -> DataFrame:
    """`frame` minus the rows of customers who withdrew `purpose`."""
    return frame.join(refused(lake, purpose).withColumnRenamed("customer_id", column), on=column, how="left_anti")


def history(lake: Lake, customer_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Every fact recorded for these ids (a customer and their linked anonymous ids), oldest first."""
    if not lake.exists("consent_ledger"):
        return []
    rows = lake.read("consent_ledger").filter(F.col("customer_id").isin(list(customer_ids))).orderBy("recorded_at", "purpose").collect()
    return [r.asDict() for r in rows]
