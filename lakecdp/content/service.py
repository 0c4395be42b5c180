"""One customer's content from the current snapshot: decision, ESP merge fields, rendered HTML."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from lakecdp.clock import Clock, SystemClock
from lakecdp.config import Settings
from lakecdp.content.engine import ContentEngine, CustomerContext, Decision
from lakecdp.content.live import LiveProfiles
from lakecdp.content.store import Snapshot, SnapshotLoader, SnapshotStore
from lakecdp.lake.crypto import cipher_for
from lakecdp.online.store import StateStore, open_store_if_online
from lakecdp.privacy.roles import Principal


class ContentService:
    """The content engine over a refreshing in-memory snapshot."""

    def __init__(self, engine: ContentEngine, store: SnapshotStore, clock: Clock, live: LiveProfiles | None = None) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.live = live

    def context(self, snapshot: Snapshot, customer_id: str) -> CustomerContext | None:
        """The snapshot's context, with the live profile and segments when the stream keeps an online state."""
        context = snapshot.get(customer_id)
        return context if self.live is None else self.live.overlay(customer_id, context)

    def decide(self, customer_id: str, *, now: datetime | None = None) -> Decision:
        return self.engine.decide(self.context(self.store.snapshot, customer_id), customer_id, now=now or self.clock.now())

    def merge_fields(self, customer_id: str, *, now: datetime | None = None) -> dict[str, str]:
        return self.engine.merge_fields(self.decide(customer_id, now=now))

    def merge_fields_for(self, customer_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """Merge fields for many customers, all decided at the same instant."""
        now = self.clock.now()
        return {cid: self.merge_fields(cid, now=now) for cid in customer_ids}

    def render(self, customer_id: str, *, now: datetime | None = None) -> str:
        return self.engine.render(self.decide(customer_id, now=now))

    def log_reads(self, action: str, customer_id: str | None, rows: int, principal: Principal | None = None) -> None:
        """Record in pii_access_log that contact data (first names) left through `action`, to `principal` (default: the CLI's caller)."""
        from lakecdp.privacy.access import log_pii_access

        loader = self.store.loader
        log_pii_access(loader.root, loader.options, action, customer_id, ["customers"], rows, self.clock.now(), principal)

    def answer(self, customer_id: str) -> dict[str, Any]:
        """The content API's JSON body for one customer."""
        snapshot = self.store.snapshot
        decision = self.engine.decide(self.context(snapshot, customer_id), customer_id, now=self.clock.now())
        body = decision.as_json(self.engine.settings)
        body["snapshot_loaded_at"] = snapshot.loaded_at.isoformat()
        return body


def open_content_service(
    settings: Settings, *, lake_root: str | None = None, clock: Clock | None = None, state: StateStore | None = None
) -> ContentService:
    """Parse content and experiment settings, load the snapshot from the lake (delta-rs, no Spark).

    `state`: the online state store live profiles come from (default: the one settings name, when online).
    """
    from lakecdp.content.settings import parse_content_settings
    from lakecdp.experiments.assign import load_assigner

    clock = clock or SystemClock()
    root = lake_root or settings.lake.root
    content = parse_content_settings(settings.content)
    engine = ContentEngine(content, load_assigner(settings, at=clock.now(), lake_root=root))
    loader = SnapshotLoader(
        root, content, clock, settings.lake.storage_options, cipher=cipher_for(settings.lake.encryption, settings.customers.pii_columns)
    )
    state = state or open_store_if_online(settings, root)
    live = None if state is None else LiveProfiles(state, loader.profile_columns())
    return ContentService(engine, SnapshotStore(loader, content.api.refresh_interval), clock, live)


_services: dict[str, ContentService] = {}


def merge_fields(
    customer_id: str,
    service: ContentService | None = None,
    *,
    settings: Settings | None = None,
    lake_root: str | None = None,
) -> dict[str, str]:
    """Chosen block ids, token values and experiment variants for one customer as ESP merge fields.

    Pass a ContentService when calling for many customers; without one, a service over
    `lake_root` (default lake.root) is opened once per process and refreshed on each call.
    """
    if service is None:
        if settings is None:
            from lakecdp.config import load_settings

            settings = load_settings()
        root = lake_root or settings.lake.root
        service = _services.get(root)
        if service is None:
            service = _services[root] = open_content_service(settings, lake_root=root)
        else:
            # At most one refresh interval stale (exports use export_content_fields, which always checks).
            service.store.refresh_if_older_than(service.store.interval)
    return service.merge_fields(customer_id)


def export_content_fields(
    settings: Settings, *, lake_root: str | None = None, clock: Clock | None = None
) -> Callable[[Sequence[str]], Mapping[str, Mapping[str, str]]]:
    """What `ExportRunner(content=...)` calls: the snapshot is loaded on the first call only, so
    exports to destinations without `content_fields: true` never read it."""
    service: ContentService | None = None

    def fields(customer_ids: Sequence[str]) -> Mapping[str, Mapping[str, str]]:
        nonlocal service
        if service is None:
            service = open_content_service(settings, lake_root=lake_root, clock=clock)
        else:
            service.store.refresh()  # reloads only when a table's Delta version moved
        return service.merge_fields_for(customer_ids)

    return fields
