"""Right to erasure: queue a request, then delete the customer at the ESPs and in the lake, with a PII-free proof."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import Row, functions as F

from lakecdp.events.retention import expire_processed
from lakecdp.export.forget import EspDeletionFailed
from lakecdp.export.identifiers import normalized_email_col
from lakecdp.lake import TABLES, Lake

log = logging.getLogger(__name__)

ID_COLUMNS = ("customer_id", "user_id", "anonymous_id", "previous_id")
RAW_COLUMNS = {"quarantine": ("raw", "quarantine_id")}  # table -> (free-text column, key column)


@dataclass(frozen=True)
class ErasureProof:
    request_id: str
    completed_at: datetime
    rows_deleted: dict[str, int]
    landing_lines_deleted: int
    esp_outcomes: dict[str, str] | None = None  # destination -> outcome; None when no ESP was asked


# (the retailer's customer id, normalized email or None) -> {destination: outcome}; raises EspDeletionFailed when one failed.
Forget = Callable[[str, str | None], dict[str, str]]
# Where a raw line names ids: they are compared by pseudonym (the lake holds no raw device id).
RAW_ID_FIELDS = ("userId", "anonymousId", "previousId")


def request_erasure(lake: Lake, customer_id: str, now: datetime) -> str:
    """Queue an erasure; returns the request id (the only thing the proof will keep)."""
    request_id = uuid.uuid4().hex
    row = {"request_id": request_id, "customer_id": customer_id, "requested_at": now}
    lake.append("erasure_requests", lake.spark.createDataFrame([row], lake.spec("erasure_requests").schema))
    return request_id


def process_erasures(
    lake: Lake,
    landing_root: str | None,
    now: datetime,
    *,
    forget: Forget | None = None,
    state: Any = None,
    retention: timedelta | None = None,
) -> list[ErasureProof]:
    """Erase every queued customer from the ESPs, every table and landing file, purge history, record proofs.

    Args:
        retention: landing.retention; processed landing files past it are deleted before the
            others are rewritten without the customer's lines.
        forget: asks the ESPs to delete the customer (lakecdp.export.forget.EspEraser). It runs
            first, while the address is still in the lake; when it fails the request stays
            queued, nothing local is deleted, and the next run retries.
    """
    proofs = []
    requests = lake.read("erasure_requests").collect()
    if requests and landing_root:
        expire_processed(landing_root, retention, now, storage_options=lake.storage_options)
    for request in requests:
        outcomes = None
        if forget is not None:
            try:
                external_id, email = _contact(lake, request.customer_id)
                outcomes = forget(external_id or request.customer_id, email)
            except EspDeletionFailed as exc:
                for destination, reason in sorted(exc.failures.items()):
                    log.warning("erasure %s stays queued: ESP deletion at %s failed: %s", request.request_id, destination, reason)
                continue
        proofs.append(_erase_locally(lake, landing_root, request, now, outcomes, state))
    return proofs


def _erase_locally(
    lake: Lake, landing_root: str | None, request: Row, now: datetime, outcomes: dict[str, str] | None, state: Any = None
) -> ErasureProof:
    identifiers = customer_identifiers(lake, request.customer_id)
    deleted = {name: _erase_from_table(lake, name, identifiers) for name in TABLES if name not in {"erasure_requests", "erasure_log"}}
    if state is not None:
        deleted["online_state"] = state.erase(identifiers)
    lines = _erase_from_landing(Path(landing_root), identifiers, lake.pseudonyms.of) if landing_root else 0
    lake.delete("erasure_requests", {"request_id": request.request_id})
    for name in TABLES:
        if name != "erasure_log" and (deleted.get(name) or name == "erasure_requests"):
            lake.purge_history(name)
    proof = ErasureProof(request.request_id, now, {k: v for k, v in deleted.items() if v}, lines, outcomes)
    lake.append(
        "erasure_log",
        lake.spark.createDataFrame(
            [
                {
                    "request_id": proof.request_id,
                    "requested_at": request.requested_at,
                    "completed_at": now,
                    "rows_deleted_json": json.dumps(proof.rows_deleted, sort_keys=True),
                    "landing_lines_deleted": lines,
                    "esp_outcomes_json": json.dumps(outcomes, sort_keys=True) if outcomes is not None else None,
                }
            ],
            lake.spec("erasure_log").schema,
        ),
    )
    log.info(
        "erasure %s done: %s rows in %s tables, %s landing lines, ESPs %s",
        proof.request_id,
        sum(proof.rows_deleted.values()),
        len(proof.rows_deleted),
        lines,
        outcomes,
    )
    return proof


def _contact(lake: Lake, customer_id: str) -> tuple[str | None, str | None]:
    """The retailer's id and the address as the exporters send it (trimmed, lowercased; None when it is not an address)."""
    rows = (
        lake.with_plain_contacts(
            lake.read("customers").filter(F.col("customer_id") == customer_id).select("customer_id", "external_id", "email")
        )
        .select("external_id", normalized_email_col("email").alias("email"))
        .collect()
    )
    return next((r.external_id for r in rows if r.external_id), None), next((r.email for r in rows if r.email), None)


def customer_identifiers(lake: Lake, customer_id: str) -> set[str]:
    """The pseudonym, every device pseudonym ever linked to it, the retailer's id and the contact email."""
    links = lake.read("identity_links").filter(F.col("customer_id") == customer_id).select("anonymous_id").collect()
    contacts = lake.with_plain_contacts(
        lake.read("customers").filter(F.col("customer_id") == customer_id).select("customer_id", "external_id", "email")
    ).collect()
    return (
        {customer_id}
        | {r.anonymous_id for r in links}
        | {r.external_id for r in contacts if r.external_id}
        | {r.email for r in contacts if r.email}
    )


def _erase_from_table(lake: Lake, name: str, identifiers: set[str]) -> int:
    spec = lake.spec(name)
    if not lake.exists(name):
        return 0
    deleted = 0
    for column in (c for c in ID_COLUMNS if c in spec.columns):
        deleted += lake.delete(name, {column: sorted(identifiers)})
    if name in RAW_COLUMNS:
        text, key = RAW_COLUMNS[name]
        # A raw line names the retailer's id or email as text, device ids only by their pseudonym.
        mentions = F.lit(False)
        for needle in text_needles(identifiers):
            mentions = mentions | F.col(text).contains(needle)
        for field in RAW_ID_FIELDS:
            mentions = mentions | F.coalesce(
                lake.pseudonyms.column(F.get_json_object(text, f"$.{field}")).isin(*sorted(identifiers)), F.lit(False)
            )
        keys = [r[key] for r in lake.read(name).filter(mentions).select(key).collect()]
        if keys:
            deleted += lake.delete(name, {key: keys})
    return deleted


def text_needles(identifiers: set[str]) -> list[str]:
    """What marks a raw line as the customer's: an email anywhere, an id only as a whole JSON string
    (`"c1"`, so erasing c1 leaves c10's lines alone)."""
    return sorted(i if "@" in i else json.dumps(i) for i in identifiers)


def _erase_from_landing(root: Path, identifiers: set[str], pseudonym_of: Callable[[str], str]) -> int:
    """Rewrite landing files without the lines that mention the customer (atomic replace)."""
    removed = 0

    needles = text_needles(identifiers)

    def mentions(line: str) -> bool:
        if any(needle in line for needle in needles):
            return True
        try:
            event = json.loads(line)
        except ValueError:
            return False
        ids = [event.get(f) for f in RAW_ID_FIELDS] if isinstance(event, dict) else []
        return any(isinstance(i, str) and pseudonym_of(i) in identifiers for i in ids)

    for path in root.rglob("*.jsonl"):
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if not mentions(line)]
        if len(kept) != len(lines):
            tmp = path.with_name(f".{path.name}.erasure.tmp")
            tmp.write_text("".join(kept))
            os.replace(tmp, path)
            removed += len(lines) - len(kept)
    return removed
