"""Right of access, admin operations and the log of every read of contact PII.

- `access_bundle`: everything lakecdp holds about a customer (every table, by customer id, linked
  device ids and email), as one JSON-ready document.
- `log_pii_access`: who read contact PII, in which role, what and when, in `pii_access_log` (ids, never the PII).

Who may do what (tokens, roles, scopes) is lakecdp.privacy.roles.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import uuid
from datetime import UTC, date, datetime
from typing import Any

from pyspark.sql import functions as F

from lakecdp.lake import TABLES, Lake
from lakecdp.privacy.erasure import ID_COLUMNS, customer_identifiers
from lakecdp.privacy.purposes import ACCESS_REQUESTED
from lakecdp.privacy.roles import Principal, actor_of, current_principal

ACTOR_ENV = "LAKECDP_ACTOR"
# Tables that are about lakecdp's own bookkeeping of the request, not data held about the customer.
# customer_keys: a wrapped key is not data about the person (the bundle carries the decrypted contacts instead).
NOT_CUSTOMER_DATA = {"erasure_requests", "erasure_log", "pii_access_log", "customer_keys"}
PII_TABLES = ("customers", "events", "quarantine")
ACCESS_ACTION = "privacy access"  # pii_access_log.action of an access bundle


def actor() -> str:
    """Who is reading: $LAKECDP_ACTOR (set by a calling service), else the OS user."""
    return os.environ.get(ACTOR_ENV) or getpass.getuser()


def log_pii_access(
    lake_root: str,
    storage_options: dict[str, str] | None,
    action: str,
    customer_id: str | None,
    tables: list[str],
    rows: int,
    now: datetime,
    principal: Principal | None = None,
) -> None:
    """Append one access record to pii_access_log (through delta-rs: no Spark needed, so DuckDB reads log too).

    `principal`: who read, by default the caller the CLI verified (lakecdp.privacy.roles.current_principal).
    """
    import pyarrow as pa
    from deltalake import write_deltalake

    principal = principal or current_principal()
    record = pa.table(
        {
            "access_id": [uuid.uuid4().hex],
            "actor": [actor_of(principal, actor())],
            "action": [action],
            "customer_id": pa.array([customer_id], pa.string()),
            "tables": [",".join(sorted(tables))],
            "rows": pa.array([rows], pa.int64()),
            "accessed_at": pa.array([now.astimezone(UTC)], pa.timestamp("us", tz="UTC")),
            "role": [principal.role],
        }
    )
    # merge: a log written before the role column existed gains it (older records read null).
    write_deltalake(
        f"{lake_root.rstrip('/')}/pii_access_log", record, mode="append", schema_mode="merge", storage_options=storage_options or None
    )


def mentions_contact_pii(query: str) -> list[str]:
    """The tables holding personal data that a SQL text names (customers: contacts; quarantine: raw lines; events: behaviour)."""
    return [name for name in PII_TABLES if re.search(rf"\b{name}\b", query, flags=re.IGNORECASE)]


def access_bundle(lake: Lake, customer_id: str, now: datetime) -> dict[str, Any]:
    """Every row held about the customer, table by table (reads are logged in pii_access_log)."""
    identifiers = sorted(customer_identifiers(lake, customer_id))
    tables: dict[str, list[dict[str, Any]]] = {}
    for name, spec in TABLES.items():
        columns = [c for c in ID_COLUMNS if c in spec.columns]
        if name in NOT_CUSTOMER_DATA or not columns or not lake.exists(name):
            continue
        matches = F.lit(False)
        for column in columns:
            matches = matches | F.col(column).isin(identifiers)
        held = lake.read(name).filter(matches)
        if name == "customers":
            held = lake.with_plain_contacts(held)
        rows = [_json_ready(r.asDict(recursive=True)) for r in held.collect()]
        if rows:
            tables[name] = rows
    log_pii_access(lake.root, lake.storage_options, ACCESS_ACTION, customer_id, list(tables), sum(len(r) for r in tables.values()), now)
    return {
        "customer_id": customer_id,
        "generated_at": now.isoformat(),
        "tables": tables,
    }


def _json_ready(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, (datetime, date)):
            value = value.isoformat()
        elif key.endswith("_json") and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value
    return out


def access_requests(lake: Lake) -> list[dict[str, Any]]:
    """Data-copy requests (`Data Access Requested` events, oldest first), each with whether an access bundle
    for that customer was written after it (`lakecdp privacy access`, recorded in pii_access_log)."""
    if not lake.exists("events"):
        return []
    requested = (
        lake.read("events")
        .filter(F.col("event") == ACCESS_REQUESTED)
        .select(
            "customer_id",
            F.get_json_object("properties_json", "$.request_id").alias("request_id"),
            F.col("timestamp").alias("requested_at"),
        )
    )
    bundles = (
        lake.read("pii_access_log").filter(F.col("action") == ACCESS_ACTION).select("customer_id", F.col("accessed_at").alias("bundled_at"))
        if lake.exists("pii_access_log")
        else lake.spark.createDataFrame([], "customer_id string, bundled_at timestamp")
    )
    answered = F.max(F.when(F.col("bundled_at") >= F.col("requested_at"), F.col("bundled_at")))
    rows = (
        requested.join(bundles, on="customer_id", how="left")
        .groupBy("customer_id", "request_id", "requested_at")
        .agg(answered.alias("answered_at"))
        .orderBy("requested_at", "request_id")
        .collect()
    )
    return [r.asDict() for r in rows]
