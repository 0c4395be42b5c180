"""Edge: send due triggers, re-checking membership, consent, caps and quiet hours at send time."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lakecdp.config import Settings
from lakecdp.experiments.assign import load_assigner
from lakecdp.export.identifiers import email_sha256, normalize_email
from lakecdp.identity.graph import device_owners
from lakecdp.lake import Lake
from lakecdp.lake.delta_rs import arrow_rows
from lakecdp.online.executor import from_us, to_us
from lakecdp.privacy.email_consent import block_reason, latest_email_facts
from lakecdp.privacy.purposes import EMAIL_MARKETING, GRANTED, WITHDRAWN
from lakecdp.segments.rules import Segment
from lakecdp.triggers.outbox import PENDING, is_capped, quiet_until
from lakecdp.triggers.settings import TriggerSettings, WebhookDestination, trigger_settings

if TYPE_CHECKING:
    from lakecdp.content.service import ContentService
    from lakecdp.export.adapters.base import Runtime
    from lakecdp.online.flow import OnlineState
    from lakecdp.preferences.merge import PreferenceLinks
    from lakecdp.triggers.esp import SendResult

log = logging.getLogger(__name__)

HeldOut = Callable[[str], bool]  # customer_id -> in the global holdout now
Contact = dict[str, Any]  # a due customer's `customers` row, contacts in clear (Lake.contact_rows)

LEFT_SEGMENT = "left the segment before sending"
CAPPED = "frequency cap reached"


@dataclass
class DispatchReport:
    outcomes: Counter = field(default_factory=Counter)  # state or reason -> count (no customer data)
    decided: set[str] = field(default_factory=set)  # trigger ids of the due rows this dispatch decided


def dispatch_due(
    lake: Lake,
    settings: Settings,
    segments: list[Segment],
    now: datetime,
    runtime: Runtime | None = None,
    *,
    online: OnlineState | None = None,
    content: Callable[[], ContentService] | None = None,
    refresh: Callable[[list[str]], None] | None = None,
) -> DispatchReport:
    """Send every pending trigger due by `now`; record sent / cancelled (why) / failed (ESP reason).

    The timer flow (lakecdp.flows.timers.send_due_triggers) calls this with what re-checks need.

    Args:
        runtime: secrets, sleep and clock for the destinations' HTTP clients (default: the process environment).
        online: the stream's online state. Sends are then re-checked against the live states in its
            store (membership, time zone, opt-in/out events) and include the outbox rows no flush has
            written to Delta yet; without it, `refresh` brings the due customers' profiles and membership
            up to `now` from bronze first (the batch path).
        content: gives the content service ESP sends render with, kept open by the caller (called on
            the first ESP send); default: one opened for this dispatch.
    """
    if (online is None) == (refresh is None):
        raise ValueError("dispatch_due needs exactly one of `online` (the stream's state) and `refresh` (membership from bronze)")
    report = DispatchReport()
    at = now.astimezone(UTC).replace(tzinfo=None)  # as Lake.rows gives timestamps
    # The few rows a dispatch needs are read through delta-rs (Lake.rows): no Spark job beside live batches.
    due = [row for row in lake.rows("trigger_outbox", where={"state": PENDING}) if row["due_at"] <= at]
    if online is not None:
        due += _unflushed_due(lake, online, now)
    if not due:
        return report
    by_name = {s.name: s for s in segments}
    config = trigger_settings(settings.triggers)
    customers = sorted({row["customer_id"] for row in due})
    known = {r["customer_id"]: r for r in lake.contact_rows(customers, ["external_id", "marketing_opt_in", "email"])}
    # The customer's experiment variants travel with the send; the global holdout gets no trigger at all.
    assigner = load_assigner(settings, at=now, lake_root=lake.root)
    if online is not None:
        recheck = _recheck_from_store(lake, online, customers, known, assigner.in_global_holdout)
    elif refresh is not None:
        refresh(customers)  # re-check against the latest events: a purchase after the entry cancels the send
        recheck = _recheck_from_bronze(lake, settings, customers, known, assigner.in_global_holdout)
    external = {c: r["external_id"] for c, r in known.items()}
    senders = Senders(lake, settings, now, runtime, {c: normalize_email(r["email"]) for c, r in known.items()}, content)
    sent_before: dict[tuple[str, str], list[datetime]] = {}
    for r in lake.rows("trigger_outbox", ["segment", "customer_id", "updated_at"], {"state": "sent", "customer_id": customers}):
        sent_before.setdefault((r["segment"], r["customer_id"]), []).append(r["updated_at"].replace(tzinfo=now.tzinfo))
    updates = []
    try:
        updates = _decide_and_send(due, by_name, recheck, assigner, sent_before, external, config, senders, now)
    finally:
        senders.close(len([u for u in updates if u["state"] == "sent"]))
    for update in updates:
        report.outcomes[update["state"] if update["state"] != PENDING else f"pending ({update['reason']})"] += 1
        report.decided.add(update["trigger_id"])
    # A row still only in the store is inserted here; the flush's insert-only MERGE then keeps this state.
    with online.outbox_lock if online is not None else nullcontext():
        lake.merge_rows("trigger_outbox", arrow_rows(lake.spec("trigger_outbox"), updates))
    log.info("triggers dispatched: %s", dict(report.outcomes))
    return report


@dataclass
class Recheck:
    """What a send is re-checked against: the due customers' memberships, consent and time zones."""

    members: set[tuple[str, str]]  # (segment, customer_id) now
    blocked: dict[str, str]  # customer_id -> why they may not be emailed (lakecdp.privacy.email_consent, holdout included)
    zones: dict[str, str | None]  # customer_id -> time zone (quiet hours)


def _recheck_from_bronze(lake: Lake, settings: Settings, customers: list[str], known: dict[str, Contact], held_out: HeldOut) -> Recheck:
    """The batch path: the customers' profiles and membership in Delta, just refreshed from bronze."""
    wanted = {"customer_id": customers}
    members = {(r["segment"], r["customer_id"]) for r in lake.rows("segment_membership", ["segment", "customer_id"], wanted)}
    zones = {r["customer_id"]: r["timezone"] for r in lake.rows("profile_features", ["customer_id", "timezone"], wanted)}
    return Recheck(members, _consent_blocks(lake, customers, known, _email_facts(lake, customers), held_out), zones)


def _recheck_from_store(lake: Lake, online: OnlineState, customers: list[str], known: dict[str, Contact], held_out: HeldOut) -> Recheck:
    """The stream's path: the live states (every batch and timer already evaluated them); no bronze read."""
    states = online.store.load(customers)
    members = {(segment, key) for key, state in states.items() for segment in state["seg"]}
    zones = {key: state["at"].get("timezone", [None, None])[1] for key, state in states.items()}
    # The ledger's facts (in Delta, and in the store until the next flush) and the live opt-in and opt-out events
    # the states hold: a batch decided in Python records its consent facts only when it is flushed.
    facts = [{**row, "recorded_at": _naive(row["recorded_at"])} for row in online.store.unflushed("consent_ledger")]
    for customer, state in states.items():
        for status, at in zip((GRANTED, WITHDRAWN), online.email_consent_events(state), strict=True):
            if at is not None:
                facts.append(
                    {"customer_id": customer, "purpose": EMAIL_MARKETING, "status": status, "recorded_at": _naive(at), "source": "state"}
                )
    return Recheck(members, _consent_blocks(lake, customers, known, _email_facts(lake, customers, facts), held_out), zones)


def _naive(us: int) -> datetime:
    return from_us(us).replace(tzinfo=None)


def _email_facts(lake: Lake, customers: list[str], unflushed: list[dict] | None = None) -> dict[str, tuple[Any, Any]]:
    """customer_id -> latest email-marketing (grant, withdrawal) of these customers, from the consent ledger in Delta
    and, on the stream's path, the facts its store holds until the next flush (lakecdp.privacy.email_consent)."""
    due = set(customers)
    devices = sorted({r["anonymous_id"] for r in lake.rows("identity_links", ["anonymous_id"], {"customer_id": customers})})
    # A device stays its first customer's (device_owners): a shared one may belong to someone else.
    link_columns = ["anonymous_id", "customer_id", "linked_at", "is_active"]
    linked = device_owners(lake.rows("identity_links", link_columns, {"anonymous_id": devices}))
    linked = {device: customer for device, customer in linked.items() if customer in due}
    wanted = due | set(linked)
    facts = lake.rows("consent_ledger", where={"customer_id": sorted(wanted)})
    facts += [row for row in unflushed or () if row["customer_id"] in wanted]
    return latest_email_facts(facts, linked)


def _unflushed_due(lake: Lake, online: OnlineState, now: datetime) -> list[dict]:
    """Outbox rows due by `now` that are still only in the store (no flush has written them), and not dispatched yet."""
    at = to_us(now)
    waiting = [row for row in online.store.unflushed("trigger_outbox") if row["state"] == PENDING and row["due_at"] <= at]
    if not waiting:
        return []
    known = {r["trigger_id"] for r in lake.rows("trigger_outbox", ["trigger_id"], {"trigger_id": [row["trigger_id"] for row in waiting]})}
    stamps = ("entered_at", "due_at", "updated_at")
    fresh = {row["trigger_id"]: row for row in waiting if row["trigger_id"] not in known}
    return [
        {k: (from_us(v).replace(tzinfo=None) if k in stamps and v is not None else v) for k, v in row.items()} for row in fresh.values()
    ]


def _decide_and_send(due, by_name, recheck: Recheck, assigner, sent_before, external, config, senders, now) -> list[dict]:
    """The re-check of every due row (membership, consent, holdout, cap, quiet hours), then the send."""
    members, blocked, zones = recheck.members, recheck.blocked, recheck.zones
    updates = []
    for row in due:
        spec = by_name[row["segment"]].trigger if row["segment"] in by_name else None
        key = (row["segment"], row["customer_id"])
        if spec is None or key not in members:
            updates.append(_finish(row, "cancelled", LEFT_SEGMENT if spec else "segment no longer triggers", now))
        elif row["customer_id"] in blocked:
            updates.append(_finish(row, "cancelled", blocked[row["customer_id"]], now))
        elif is_capped(sent_before.get(key, []), now, spec):
            updates.append(_finish(row, "cancelled", CAPPED, now))
        elif (resume := quiet_until(now, spec, zones.get(row["customer_id"]))) is not None:
            updates.append({**row, "due_at": resume.replace(tzinfo=None), "reason": "postponed: quiet hours", "updated_at": now})
        else:
            variants = {name: assigner.assign(name, row["customer_id"]) for name in assigner.settings.definitions}
            updates.append(_send(row, config, senders, now, variants, external.get(row["customer_id"])))
            if updates[-1]["state"] == "sent":
                sent_before.setdefault(key, []).append(now)
    return updates


def _send(row: dict, config: TriggerSettings, senders: Senders, now: datetime, variants: dict[str, str], external_id: str | None) -> dict:
    destination = config.destinations.get(row["destination"])
    if destination is None:
        return _finish(row, "failed", f"unknown destination {row['destination']!r} (conf/base/triggers.yaml)", now)
    customer_id = external_id or row["customer_id"]  # the retailer's id; the pseudonym only if none is known
    if isinstance(destination, WebhookDestination):
        payload = {
            "trigger_id": row["trigger_id"],
            "segment": row["segment"],
            "customer_id": customer_id,
            "entered_at": row["entered_at"].isoformat() + "Z",
            "experiments": variants,  # experiment -> variant (or "holdout"), as lakecdp.experiments assigns it everywhere
        }
        result = senders.webhook(row["destination"], destination, payload, row["trigger_id"])
    else:
        result = senders.send(row, destination, customer_id, variants)
    attempts = row["attempts"] + 1
    if result.ok:
        return {**_finish(row, "sent", None, now), "attempts": attempts}
    if result.retryable and attempts < config.max_attempts:
        # The outbox's backoff, or longer when the destination asked for longer (Retry-After).
        backoff = max(config.retry_after * (2 ** (attempts - 1)), timedelta(seconds=result.wait_s or 0))
        return {**row, "attempts": attempts, "reason": result.reason, "due_at": (now + backoff).replace(tzinfo=None), "updated_at": now}
    return {**_finish(row, "failed", result.reason, now), "attempts": attempts}


def _finish(row: dict, state: str, reason: str | None, now: datetime) -> dict:
    return {**row, "state": state, "reason": reason, "updated_at": now}


def _consent_blocks(
    lake: Lake, customers: list[str], rows: dict[str, Contact], last: dict[str, tuple[Any, Any]], held_out: HeldOut
) -> dict[str, str]:
    """customer_id -> why they may not be emailed now, by the email-consent rule (lakecdp.privacy.email_consent).

    `rows`: their `customers` rows, in clear; `last`: their latest email-marketing (grant, withdrawal) instants;
    `held_out`: whether a customer is in the global holdout now.
    """
    hashes = {c: email_sha256(r["email"]) for c, r in rows.items() if normalize_email(r["email"]) is not None}
    suppressed = lake.rows("export_suppressions", ["email_sha256", "reason"], {"email_sha256": sorted(set(hashes.values()))})
    reasons = {r["email_sha256"]: r["reason"] for r in suppressed}
    blocked = {}
    for customer in customers:
        row = rows.get(customer)
        reason = block_reason(
            row["marketing_opt_in"] if row is not None else None,
            *last.get(customer, (None, None)),
            suppression=reasons.get(hashes.get(customer, "")),
            held_out=held_out(customer),
        )
        if reason is not None:
            blocked[customer] = reason
    return blocked


class Senders:
    """One sender per destination (its HTTP client), and what ESP sends need beyond the webhook, loaded on
    the first ESP send of a dispatch only: the content service (decision, cart, recommendations), contact emails."""

    def __init__(
        self,
        lake: Lake,
        settings: Settings,
        now: datetime,
        runtime: Runtime | None,
        emails: dict[str, str | None],
        content: Callable[[], ContentService] | None = None,
    ) -> None:
        self.lake, self.settings, self.now = lake, settings, now
        self._runtime = runtime
        self._emails = emails  # customer_id -> normalized email
        self._content: Any = None
        self._open_content = content
        self._senders: dict[str, Any] = {}
        self._links: tuple[PreferenceLinks | None] | None = None  # looked up on the first ESP send

    def webhook(self, name: str, destination: WebhookDestination, payload: dict, idempotency_key: str) -> SendResult:
        return self._sender(name, destination).post(payload, idempotency_key)

    def send(self, row: dict, destination: Any, customer_id: str, variants: dict[str, str]) -> SendResult:
        from lakecdp.preferences.merge import MERGE_FIELD
        from lakecdp.triggers.esp import build_message

        service = self._content_service()
        context = service.context(service.store.snapshot, row["customer_id"])
        decision = service.engine.decide(context, row["customer_id"], now=self.now)
        merge_fields = dict(service.engine.merge_fields(decision))
        if (links := self._preference_links()) is not None:
            merge_fields[MERGE_FIELD] = links.url(row["customer_id"])
        message = build_message(
            row,
            customer_id=customer_id,
            email=self._emails.get(row["customer_id"]),
            decision=decision,
            merge_fields=merge_fields,
            context=context,
            experiments=variants,
            now=self.now,
        )
        return self._sender(row["destination"], destination).send(message)

    def close(self, sent: int) -> None:
        for sender in self._senders.values():
            sender.close()
        if self._senders and sent:
            from lakecdp.privacy.access import log_pii_access

            # Emails (and first names in the tokens) left for ESPs: recorded as the export records its runs.
            log_pii_access(self.lake.root, self.lake.storage_options, "trigger dispatch", None, ["customers"], sent, self.now)

    def _content_service(self) -> Any:
        if self._content is None and self._open_content is not None:
            self._content = self._open_content()
        if self._content is None:
            from lakecdp.clock import FrozenClock
            from lakecdp.content.service import open_content_service

            # As `lakecdp content preview --at`: the snapshot read now, after this dispatch refreshed profiles.
            self._content = open_content_service(self.settings, lake_root=self.lake.root, clock=FrozenClock(self.now))
        return self._content

    def _preference_links(self) -> PreferenceLinks | None:
        if self._links is None:
            from lakecdp.clock import FrozenClock
            from lakecdp.preferences.merge import preference_links

            env = self._runtime.env if self._runtime is not None else os.environ
            self._links = (preference_links(self.settings, env, FrozenClock(self.now)),)
        return self._links[0]

    def _sender(self, name: str, destination: Any) -> Any:
        if name not in self._senders:
            from lakecdp.export.adapters.base import Runtime
            from lakecdp.triggers.esp import build_sender

            self._senders[name] = build_sender(name, destination, self._runtime or Runtime(env=os.environ))
        return self._senders[name]
