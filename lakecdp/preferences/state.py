"""Edge: the preference centre's reads and writes of the lake, through delta-rs (the collector runs without Spark).

Current choices are decided by the rules exports, triggers and content use: email marketing by
lakecdp.privacy.email_consent (CRM opt-in and no later opt-out event), the other purposes by the
latest consent-ledger fact (none: allowed until withdrawn). Reads filter on one customer's pseudonym.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable, write_deltalake

from lakecdp.lake.files import read_delta
from lakecdp.preferences.choices import Choice
from lakecdp.privacy.email_consent import block_reason, latest_email_facts
from lakecdp.privacy.facts import latest_facts
from lakecdp.privacy.purposes import EMAIL_MARKETING, WITHDRAWN


class LakeChoices:
    """One lake's consent facts for the page, and the erasure queue it adds to."""

    def __init__(self, lake_root: str, storage_options: Mapping[str, str] | None) -> None:
        self.root = lake_root.rstrip("/")
        self.options = dict(storage_options or {}) or None

    def current(self, customer_id: str, purposes: Sequence[str], channels: Sequence[str]) -> dict[Choice, bool] | None:
        """(purpose, channel) -> granted now, as the lake knows it (decisions are per purpose: every channel alike);
        None for a customer with no `customers` row: never emailed, or erased (an old link must not bring them back)."""
        customer = self._rows("customers", ["marketing_opt_in"], ds.field("customer_id") == customer_id)
        if customer is None or not customer.num_rows:
            return None
        opt_in = customer.column("marketing_opt_in").to_pylist()[0]
        granted = {}
        for purpose in purposes:
            if purpose == EMAIL_MARKETING:
                granted[purpose] = self._email_marketing(customer_id, opt_in)
            else:
                granted[purpose] = self._latest_fact(customer_id, purpose) != WITHDRAWN
        return {(p, c): granted[p] for p in purposes for c in channels}

    def queue_erasure(self, customer_id: str, request_id: str, now: datetime) -> bool:
        """Add a row to erasure_requests (what `lakecdp privacy process-erasures` works through); False when it is queued already."""
        from lakecdp.lake.delta_rs import arrow_schema
        from lakecdp.lake.tables import table

        queued = self._rows("erasure_requests", ["request_id"], ds.field("request_id") == request_id)
        if queued is not None and queued.num_rows:
            return False
        row = {"request_id": [request_id], "customer_id": [customer_id], "requested_at": [now]}
        data = pa.table(row, schema=arrow_schema(table("erasure_requests")))
        write_deltalake(f"{self.root}/erasure_requests", data, mode="append", storage_options=self.options)
        return True

    def _email_marketing(self, customer_id: str, opt_in: bool | None) -> bool:
        facts = self._rows(
            "consent_ledger",
            ["customer_id", "purpose", "status", "recorded_at", "source"],
            (ds.field("customer_id") == customer_id) & (ds.field("purpose") == EMAIL_MARKETING),
        )
        last = latest_email_facts(facts.to_pylist() if facts is not None else []).get(customer_id, (None, None))
        return block_reason(opt_in, *last) is None

    def _latest_fact(self, customer_id: str, purpose: str) -> str | None:
        facts = self._rows(
            "consent_ledger",
            ["customer_id", "purpose", "status", "recorded_at"],
            (ds.field("customer_id") == customer_id) & (ds.field("purpose") == purpose),
        )
        latest = latest_facts(facts.to_pylist() if facts is not None else [], purpose).get(customer_id)
        return None if latest is None else latest["status"]

    def _rows(self, name: str, columns: list[str], where: ds.Expression) -> pa.Table | None:
        path = f"{self.root}/{name}"
        if not DeltaTable.is_deltatable(path, storage_options=self.options):
            return None
        return read_delta(DeltaTable(path, storage_options=self.options), columns=columns, filters=where, storage_options=self.options)
