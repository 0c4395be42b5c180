"""Edge: an in-memory snapshot of what content needs, read from the Delta tables with delta-rs.

No Spark and no per-request queries: the server answers from a dict of CustomerContext and
a background thread swaps in a fresh snapshot when a table's Delta version moves. Email
addresses and last names are never read.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from lakecdp.clock import Clock
from lakecdp.content.engine import CustomerContext
from lakecdp.content.settings import CUSTOMER_TOKEN_FIELDS, ContentSettings
from lakecdp.identity.graph import device_owners
from lakecdp.lake.crypto import ContactCipher, plain_rows
from lakecdp.lake.files import delta_dataset, scan
from lakecdp.privacy.email_consent import block_reason, latest_email_facts
from lakecdp.privacy.facts import latest_facts
from lakecdp.privacy.purposes import EMAIL_MARKETING, PERSONALIZATION, WITHDRAWN

log = logging.getLogger(__name__)

SNAPSHOT_TABLES = (
    "customers",
    "customer_keys",
    "consent_ledger",
    "profile_features",
    "profile_scores",
    "segment_membership",
    "recommendations",
    "events",
    "identity_links",
)
NO_CUSTOMER_RECORD = "no customer record"
PERSONALIZATION_WITHDRAWN = "personalization consent withdrawn"
CART_EVENTS = ("Product Added", "Product Removed", "Order Completed")
SCORE_COLUMNS = ("intent_probability", "intent_decile", "cluster_id", "cluster_label")
# Always loaded: cart items are only shown while the profile says the cart is open.
BASE_PROFILE_COLUMNS = ("has_open_cart",)


@dataclass(frozen=True)
class Snapshot:
    contexts: dict[str, CustomerContext]
    versions: dict[str, int]  # table -> Delta version read (-1: table absent)
    loaded_at: datetime

    def get(self, customer_id: str) -> CustomerContext | None:
        return self.contexts.get(customer_id)


class SnapshotLoader:
    """Reads the snapshot tables under a lake root into CustomerContexts."""

    def __init__(
        self,
        lake_root: str,
        settings: ContentSettings,
        clock: Clock,
        storage_options: Mapping[str, str] | None = None,
        *,
        cipher: ContactCipher | None = None,
    ) -> None:
        """cipher: decrypts the contact columns tokens read (first_name); None when encryption is off."""
        self.root = lake_root.rstrip("/")
        self.settings = settings
        self.clock = clock
        self.options = dict(storage_options or {}) or None
        self.cipher = cipher

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _table(self, name: str) -> DeltaTable | None:
        path = self._path(name)
        return DeltaTable(path, storage_options=self.options) if DeltaTable.is_deltatable(path, storage_options=self.options) else None

    def versions(self) -> dict[str, int]:
        result = {}
        for name in SNAPSHOT_TABLES:
            table = self._table(name)
            result[name] = -1 if table is None else table.version()
        return result

    def load(self) -> Snapshot:
        opened = {name: self._table(name) for name in SNAPSHOT_TABLES}
        versions = {name: -1 if t is None else t.version() for name, t in opened.items()}
        tables = {name: None if t is None else delta_dataset(t, self.options) for name, t in opened.items()}
        attributes, opted_in = self._customers(tables["customers"], tables["customer_keys"])
        profiles = self._rows_by_customer(tables["profile_features"], self.profile_columns())
        scores = self._rows_by_customer(tables["profile_scores"], SCORE_COLUMNS)
        segments = self._segments(tables["segment_membership"])
        recommendations = self._recommendations(tables["recommendations"])
        linked = _linked_devices(tables["identity_links"])
        carts = self._carts(tables["events"], linked)
        facts = _ledger_rows(tables["consent_ledger"])
        opt_outs = latest_email_facts(facts, linked)
        refusing = frozenset(c for c, fact in latest_facts(facts, PERSONALIZATION).items() if fact["status"] == WITHDRAWN)
        contexts = {}
        for customer_id in set(attributes) | set(profiles):
            profile = profiles.get(customer_id, {})
            contexts[customer_id] = CustomerContext(
                customer_id=customer_id,
                block_reason=PERSONALIZATION_WITHDRAWN
                if customer_id in refusing
                else _block_reason(customer_id, attributes, opted_in, opt_outs),
                attributes=attributes.get(customer_id, {}),
                profile=profile,
                scores=scores.get(customer_id, {}),
                segments=segments.get(customer_id, frozenset()),
                cart_items=carts.get(customer_id, ()) if profile.get("has_open_cart") else (),
                recommendations=recommendations.get(customer_id, ()),
            )
        log.info("content snapshot: %d customers, versions %s", len(contexts), versions)
        snapshot = Snapshot(contexts, versions, self.clock.now())
        # The snapshot is millions of long-lived objects without cycles: keep the cyclic GC from
        # rescanning them during requests (a full collection would stall a request for tens of ms).
        # Refcounting still frees an old snapshot once it is swapped out.
        gc.collect()
        gc.freeze()
        return snapshot

    def profile_columns(self) -> tuple[str, ...]:
        """profile_features columns the tokens and targeting rules use (only those are kept in memory)."""
        used = {spec.field for spec in self.settings.tokens.values() if spec.kind == "profile"}
        for block in self.settings.blocks.values():
            used |= _profile_fields(block.target)
        return tuple(sorted(used | set(BASE_PROFILE_COLUMNS)))

    # --- readers ------------------------------------------------------------------------

    def _customers(self, table: ds.Dataset | None, keys: ds.Dataset | None) -> tuple[dict[str, dict[str, Any]], dict[str, bool]]:
        if table is None:
            return {}, {}
        rows = table.to_table(columns=["customer_id", *CUSTOMER_TOKEN_FIELDS, "marketing_opt_in"]).to_pylist()
        if self.cipher is not None:
            wrapped: dict[str, list[str]] = defaultdict(list)
            for key in [] if keys is None else keys.to_table(columns=["customer_id", "wrapped_key"]).to_pylist():
                wrapped[key["customer_id"]].append(key["wrapped_key"])
            rows = plain_rows(self.cipher, rows, wrapped)
        attributes = {row["customer_id"]: {c: row[c] for c in CUSTOMER_TOKEN_FIELDS} for row in rows}
        return attributes, {row["customer_id"]: bool(row["marketing_opt_in"]) for row in rows}

    @staticmethod
    def _rows_by_customer(table: ds.Dataset | None, columns: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        if table is None:
            return {}
        present = [c for c in columns if c in table.schema.names]
        data = table.to_table(columns=["customer_id", *present])
        return {row.pop("customer_id"): row for row in data.to_pylist()}

    @staticmethod
    def _segments(table: ds.Dataset | None) -> dict[str, frozenset[str]]:
        if table is None:
            return {}
        data = table.to_table(columns=["customer_id", "segment"])
        grouped: dict[str, set[str]] = defaultdict(set)
        names: dict[str, str] = {}
        for customer_id, segment in zip(data.column("customer_id").to_pylist(), data.column("segment").to_pylist()):
            grouped[customer_id].add(names.setdefault(segment, segment))
        return {customer_id: frozenset(s) for customer_id, s in grouped.items()}

    def _recommendations(self, table: ds.Dataset | None) -> dict[str, tuple[dict[str, Any], ...]]:
        if table is None:
            return {}
        data = table.to_table(columns=["customer_id", "rank", "product_id", "product_name", "category", "price"])
        data = data.sort_by([("customer_id", "ascending"), ("rank", "ascending")])
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in data.to_pylist():
            grouped[row["customer_id"]].append(
                {
                    "product_id": row["product_id"],
                    "name": row["product_name"] or row["product_id"],
                    "category": row["category"],
                    "price": row["price"],
                }
            )
        return {customer_id: tuple(items) for customer_id, items in grouped.items()}

    def _carts(self, events: ds.Dataset | None, linked: dict[str, str]):
        """Open-cart items per customer, from bronze."""
        if events is None:
            return {}
        columns = [
            "customer_id",
            "user_id",
            "anonymous_id",
            "event",
            "timestamp",
            "cart_id",
            "product_id",
            "price",
            "quantity",
            "properties_json",
        ]
        cutoff = self.clock.now() - timedelta(days=30)
        # Recent cart events only; generated and real carts expire well within 30 days.
        is_cart = ds.field("event").isin(list(CART_EVENTS)) & (ds.field("event_date") >= pa.scalar(cutoff.date()))
        return _open_carts(_resolve(scan(events, columns, is_cart), linked))


def _ledger_rows(ledger: ds.Dataset | None) -> list[dict[str, Any]]:
    """The consent facts content decides by (email marketing, personalization), read once per snapshot."""
    if ledger is None:
        return []
    wanted = ds.field("purpose").isin([EMAIL_MARKETING, PERSONALIZATION])
    return scan(ledger, ["customer_id", "purpose", "status", "recorded_at", "source"], wanted).to_pylist()


def _block_reason(customer_id: str, attributes, opted_in, opt_outs) -> str | None:
    last_in, last_out = opt_outs.get(customer_id, (None, None))
    return block_reason(opted_in.get(customer_id, False) if customer_id in attributes else None, last_in, last_out)


def _linked_devices(links: ds.Dataset | None) -> dict[str, str]:
    """anonymous id -> the customer its device was first linked to (lakecdp.identity.graph.device_owners)."""
    if links is None:
        return {}
    return device_owners(links.to_table(columns=["anonymous_id", "customer_id", "linked_at", "is_active"]).to_pylist())


def _resolve(data: pa.Table, linked: dict[str, str]) -> pa.Table:
    """Anonymous-only events take the customer their device was first linked to (as the pipeline does)."""
    if not linked or data.num_rows == 0:
        return data
    user_ids = data.column("user_id").to_pylist()
    anonymous_ids = data.column("anonymous_id").to_pylist()
    resolved = [
        cid if user is not None or anon not in linked else linked[anon]
        for cid, user, anon in zip(data.column("customer_id").to_pylist(), user_ids, anonymous_ids)
    ]
    return data.set_column(data.schema.get_field_index("customer_id"), "customer_id", pa.array(resolved, pa.string()))


def _open_carts(data: pa.Table) -> dict[str, tuple[dict[str, Any], ...]]:
    """Items of each customer's latest cart that no order has closed: adds minus removes."""
    rows = data.filter(pc.is_in(data.column("event"), pa.array(list(CART_EVENTS)))).sort_by([("timestamp", "ascending")])
    latest_cart: dict[str, str] = {}
    ordered_carts: set[str] = set()
    lines: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows.to_pylist():
        customer_id, cart_id, event = row["customer_id"], row["cart_id"], row["event"]
        if cart_id is None:
            continue
        if event == "Order Completed":
            ordered_carts.add(cart_id)
            continue
        key = (customer_id, cart_id)
        if event == "Product Added":
            latest_cart[customer_id] = cart_id
            line = lines[key].setdefault(
                row["product_id"], {"product_id": row["product_id"], "name": None, "price": row["price"], "quantity": 0}
            )
            line["quantity"] += row["quantity"] or 1
            line["name"] = line["name"] or _product_name(row["properties_json"])
        elif event == "Product Removed":
            lines[key].pop(row["product_id"], None)
    carts = {}
    for customer_id, cart_id in latest_cart.items():
        items = [dict(item, name=item["name"] or item["product_id"]) for item in lines[(customer_id, cart_id)].values()]
        if cart_id not in ordered_carts and items:
            carts[customer_id] = tuple(items)
    return carts


def _product_name(properties_json: str | None) -> str | None:
    if not properties_json:
        return None
    try:
        name = json.loads(properties_json).get("name")
    except (ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def _profile_fields(target: Any) -> set[str]:
    """profile_features columns a raw targeting rule mentions."""
    if isinstance(target, dict):
        found = {target["profile"]} if isinstance(target.get("profile"), str) else set()
        for value in target.values():
            found |= _profile_fields(value)
        return found
    if isinstance(target, list):
        return set().union(*(_profile_fields(item) for item in target)) if target else set()
    return set()


class SnapshotStore:
    """The current snapshot, swapped atomically by a refresher thread when a table version moves."""

    def __init__(self, loader: SnapshotLoader, interval: timedelta) -> None:
        self.loader = loader
        self.interval = interval
        self.snapshot = loader.load()
        self.checked_at = self.snapshot.loaded_at
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Reload when any table's version moved; True when a new snapshot was swapped in."""
        self.checked_at = self.loader.clock.now()
        if self.loader.versions() == self.snapshot.versions:
            return False
        self.snapshot = self.loader.load()  # a single reference assignment: readers see old or new, never half
        return True

    def refresh_if_older_than(self, age: timedelta) -> bool:
        """Check the table versions only when the last check is older than `age`."""
        if self.loader.clock.now() - self.checked_at < age:
            return False
        return self.refresh()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="content-snapshot-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval.total_seconds()):
            try:
                self.refresh()
            except Exception:
                log.exception("content snapshot refresh failed; serving the previous snapshot")


__all__ = ["Snapshot", "SnapshotLoader", "SnapshotStore"]
