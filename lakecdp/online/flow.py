"""Flow: a micro-batch's events -> per-customer state -> profiles, memberships, timers; Delta catches up by flushes.

The cost of a batch is the cost of its own events and customers: nothing reads bronze history.
Delta stays the system of record: bronze is appended every batch (by the caller), and
profile_features, segment_membership, segment_transitions, segment_timers, trigger_outbox and
identity_links receive the changed customers' rows at each flush (every state.flush_interval,
and when a run ends), numbered so a repeated flush is a no-op.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, functions as F

from lakecdp.config import Settings
from lakecdp.events.contacts import CONTACT_COLUMNS, fold_contact_rows
from lakecdp.events.ingest import commit_batch, prepare_batch
from lakecdp.identity.resolved import resolved_events
from lakecdp.lake import AppTxn, Lake, table
from lakecdp.lake.delta_rs import arrow_rows
from lakecdp.online.bronze import BronzeRows, BronzeWorker, Line, build_table
from lakecdp.online.executor import Plan, advance, fold, from_us, merge, new_state, profile, to_us, verdicts
from lakecdp.online.ingest import REJECTED, SUPPORTED_COLUMNS, UNSURE, VALID, LineParser
from lakecdp.online.landing import split_landing
from lakecdp.online.store import Commit, StateStore
from lakecdp.privacy.ledger import consent_rules, entries_from_events
from lakecdp.profiles.declarations import Match
from lakecdp.profiles.features import EVENT_COLUMNS
from lakecdp.profiles.view import CUSTOMER, customer_struct
from lakecdp.segments.compile import event_columns
from lakecdp.segments.rules import Segment, customer_columns
from lakecdp.spark.together import run_together
from lakecdp.triggers.outbox import CANCELLED, PENDING, too_late

log = logging.getLogger(__name__)

_ID_COLUMNS = ("message_id", "type", "user_id", "anonymous_id", "previous_id")
# The `customers` columns fold_contacts reads and writes.
_FOLDED_COLUMNS = ("external_id", *CONTACT_COLUMNS, "country", "city", "signup_date", "marketing_opt_in", "source", "updated_at")
# What a rule may read of profile_scores: every model output, not who wrote it or when.
_SCORE_COLUMNS = tuple(
    c for c in table("profile_scores").columns if c not in {"customer_id", "intent_model_version", "cluster_model_version", "scored_at"}
)


@dataclass
class Prepared:
    """A batch folded into state, to commit once bronze has the batch's events."""

    commit: Commit
    states: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    events: int = 0
    repeats: int = 0  # repeated inside the batch
    consent_facts: bool = False  # an event that may state consent (identify, consent events)
    fresh_lines: list[int] = field(default_factory=list)  # live batches: the lines whose events were new
    lines: int = 0  # live batches: lines read, and those rejected
    rejected: int = 0
    unsure: int = 0  # live batches: lines Spark decided
    oldest_received: int | None = None  # live batches: the earliest receivedAt of a kept line (µs)

    @property
    def customers(self) -> int:
        return sum(1 for state in self.states.values() if state is not None)


def _arrow_pieces(df: DataFrame, rows: int, chunk_rows: int, key: str) -> Iterator[dict[str, list]]:
    """`df` brought to the driver in pieces of about `chunk_rows` rows (split by a hash of `key`), as column lists."""
    pieces = max(1, math.ceil(rows / chunk_rows))
    for piece in range(pieces):
        part = df if pieces == 1 else df.filter(F.pmod(F.hash(key), F.lit(pieces)) == piece)
        arrow = part.toArrow()
        yield {name: arrow.column(name).to_pylist() for name in arrow.column_names}


class OnlineState:
    """The stream's online half: one per running stream, holding the plan and the store."""

    def __init__(
        self,
        lake: Lake,
        settings: Settings,
        store: StateStore,
        segments: list[Segment],
        *,
        rescore: Callable[[datetime, list[str]], object] | None = None,
    ) -> None:
        """`rescore(now, customers)`: re-scores the flushed customers' profiles (the stream passes
        lakecdp.flows.micro_batch.rescore_profiles when stream.rescore is on); None: no re-scoring."""
        self.lake, self.settings, self.store, self.segments = lake, settings, store, segments
        self.rescore = rescore
        rules = consent_rules(settings.privacy, settings.esp)
        self.consent_rules = rules
        self.consent_events = {*rules.opt_in_events, *rules.opt_out_events, rules.consent_event}
        self.opt_in, self.opt_out = [Match(e) for e in rules.opt_in_events], [Match(e) for e in rules.opt_out_events]
        self.plan = Plan(segments, extra=(*self.opt_in, *self.opt_out))
        self.names = [s.name for s in segments]
        self.triggers = {s.name: s.trigger for s in segments if s.trigger is not None}
        self.columns = sorted((set(EVENT_COLUMNS) | event_columns(segments) | set(_ID_COLUMNS)) - {"timestamp"})
        self.store_id = store.meta("store_id") or self._new_store_id()
        self._scores: tuple[int, dict[str, dict]] | None = None
        self.last_flush: dict[str, Any] = {}  # what the last flush wrote and how long each part took
        self.landing_parts: dict[str, Any] = {}  # the last flush_landing's rows built in Python and left to Spark
        # trigger_outbox is written by the flush and the dispatcher, which run on different threads.
        self.outbox_lock = threading.Lock()
        self.uses_scores = any(c in _SCORE_COLUMNS for c in _attribute_columns(segments))
        self.customer_columns = customer_columns(segments)  # CRM columns rules read (`customer:` leaves)
        self._customers: tuple[int, dict[str, dict]] | None = None
        # Live batches are decided in Python when every column the state folds is one the executor derives.
        self.parser = LineParser(settings.events, lake.pseudonyms, self.columns) if set(self.columns) <= SUPPORTED_COLUMNS else None
        # The flush's bronze rows of plain live lines: built in a child process, here when it fails.
        self.bronze = BronzeRows(settings.events, lake.pseudonyms)
        self._bronze_worker: BronzeWorker | None = None

    def _new_store_id(self) -> str:
        store_id = uuid.uuid4().hex[:12]
        self.store.set_meta("store_id", store_id)
        return store_id

    @property
    def fingerprint(self) -> str:
        """The state's declarations and the rule versions: a change re-evaluates everyone from bronze."""
        return f"{self.plan.fingerprint}|{','.join(f'{s.name}={s.version}' for s in self.segments)}"

    # -- micro-batches ---------------------------------------------------------------------------

    def events_of(self, valid: DataFrame, rows: int) -> Iterator[dict[str, Any]]:
        """A batch's bronze rows as dicts with `timestamp` in µs, piece by piece (bounded driver memory)."""
        selected = valid.select(*self.columns, F.unix_micros("timestamp").alias("timestamp"))
        for columns in _arrow_pieces(selected, rows, self.settings.state.chunk_rows, "message_id"):
            names = list(columns)
            for values in zip(*columns.values()):
                yield dict(zip(names, values))

    def prepare(self, events: Iterator[dict[str, Any]], *, stream: str, batch_id: int, now: datetime) -> Prepared | None:
        """Fold a batch into its customers' states (not yet committed); None when the store already has the batch.

        Events arrive piece by piece and are folded as they come: a device's events folded before the
        identify that links it move into the customer's state when the link is found (merge is exact).
        """
        if self.store.applied(stream) >= batch_id:
            return None
        at = to_us(now)
        since = at - int(self.settings.state.dedupe_window.total_seconds() * 1_000_000)
        prepared = Prepared(Commit(stream=stream, batch_id=batch_id))
        commit, states = prepared.commit, prepared.states
        for chunk in _batched(events, 20_000):
            seen = self.store.seen([e["message_id"] for e in chunk], since)
            fresh = []
            for event in chunk:
                line = event.pop("_line", None)
                message_id = event["message_id"]
                if message_id in seen:
                    commit.seen_ids.append(message_id)
                elif message_id in commit.messages:
                    prepared.repeats += 1
                else:
                    commit.messages[message_id] = at
                    fresh.append(event)
                    if line is not None:
                        prepared.fresh_lines.append(line)
            links = self._link(fresh, states, commit, at)
            for event in fresh:
                if event["user_id"] is None and event["anonymous_id"] is not None:
                    event["customer_id"] = links.get(event["anonymous_id"], event["customer_id"])
            # One store read for the chunk's customers, not one per customer.
            unloaded = sorted({e["customer_id"] for e in fresh} - states.keys())
            stored = self.store.load(unloaded)
            states.update((key, stored.get(key) or new_state()) for key in unloaded)
            for event in fresh:
                fold(self.plan, self._state(states, event["customer_id"]), event, at)
            prepared.events += len(fresh)
            prepared.consent_facts = prepared.consent_facts or any(
                e["type"] == "identify" or e["event"] in self.consent_events for e in fresh
            )
        self._evaluate(states, commit, now)
        return prepared

    def prepare_live(self, raws: list[bytes], files: list[str], *, stream: str, batch_id: int, now: datetime) -> Prepared | None:
        """A live batch's lines decided in Python (LineParser) and folded; None when the store already has the batch.

        No Spark job runs unless a line is unsure. The lines bronze and quarantine need are committed
        with the state, and the flush (`flush_landing`) writes them.
        """
        if self.store.applied(stream) >= batch_id:
            return None
        parser = self.parser
        if parser is None:
            raise RuntimeError("prepare_live: the state folds columns the Python executor does not derive (read the batch with Spark)")
        at = to_us(now)
        decided: list[tuple[str, dict[str, Any] | None]] = []
        received: list[int] = []
        for raw in raws:
            decided.append(parser.parse(raw, at))
            if decided[-1][0] == VALID and parser.received_us is not None:
                received.append(parser.received_us)
        unsure = [n for n, (outcome, _) in enumerate(decided) if outcome == UNSURE]
        if unsure:
            spark_says = self._decide_with_spark([raws[n] for n in unsure], now)
            for n, event in zip(unsure, spark_says):
                decided[n] = (REJECTED, None) if event is None else (VALID, event)
        by_line = {n: event for n, (outcome, event) in enumerate(decided) if outcome == VALID and event is not None}
        for n, event in by_line.items():
            event["_line"] = n
        prepared = self.prepare(iter(by_line.values()), stream=stream, batch_id=batch_id, now=now)
        if prepared is None:  # another committer stored the batch since the check above
            return None
        rejected = [n for n, (outcome, _) in enumerate(decided) if outcome == REJECTED]
        prepared.lines, prepared.rejected, prepared.unsure = len(raws), len(rejected), len(unsure)
        prepared.oldest_received = min(received, default=None)
        prepared.commit.landing = [
            _landing_row(raws[n], files[n], at, by_line.get(n), self._kind(by_line.get(n))) for n in sorted(prepared.fresh_lines + rejected)
        ]
        return prepared

    def _kind(self, event: dict[str, Any] | None) -> str | None:
        """What the flush must do besides bronze for a kept line: quarantine it, or look at it for contacts and consent."""
        if event is None:
            return "rejected"
        if event["type"] == "identify":
            return "identify"
        return "consent" if event["event"] in self.consent_events else None

    def _decide_with_spark(self, raws: list[bytes], now: datetime) -> list[dict[str, Any] | None]:
        """What prepare_batch makes of lines the Python executor left undecided: the event, or None (rejected)."""
        frame = self.lake.spark.createDataFrame([(raw, str(n)) for n, raw in enumerate(raws)], "raw binary, source_file string")
        batch = prepare_batch(
            frame.select(F.col("raw").cast("string").alias("raw"), "source_file"),
            received_at=now,
            settings=self.settings.events,
            pseudonyms=self.lake.pseudonyms,
        )
        try:
            rows = batch.valid.select("source_file", *self.columns, F.unix_micros("timestamp").alias("timestamp")).toArrow().to_pylist()
        finally:
            batch.release()
        events: list[dict[str, Any] | None] = [None] * len(raws)
        for row in rows:
            events[int(row.pop("source_file"))] = row
        return events

    def flush_landing(self, now: datetime | None = None) -> int:
        """Bronze, quarantine, contacts and consent facts of the live lines the store holds, written under
        numbered transactions (a repeat is a no-op). Returns lines written.

        Valid lines become bronze rows, contacts and consent facts in Python (lakecdp.online.landing)
        written through delta-rs; the rest (rejects, lines a builder refuses) go through Spark's
        prepare_batch. Rejects and consent facts are stamped `now`, by default the instant the newest
        of the lines was taken.
        """
        written, limit = 0, self.settings.state.chunk_rows
        parts = self.landing_parts = {"python_rows": 0, "spark_rows": 0, "build_s": 0.0, "append_s": 0.0, "spark_s": 0.0}

        def timed(part: str, began: float) -> float:
            ended = time.perf_counter()
            parts[part] = round(parts[part] + ended - began, 2)
            return ended

        while True:
            pending = self.store.landing_pending(limit)
            if not pending.rows:
                return written
            at = now or from_us(max(r["received_at"] for r in pending.rows))
            began = time.perf_counter()
            landing = split_landing(pending.rows, self._build_bronze, self.consent_rules, self.lake.pseudonyms, to_us(at))
            parts["python_rows"] += landing.bronze.num_rows
            parts["spark_rows"] += len(landing.left)
            began = timed("build_s", began)
            if landing.bronze.num_rows:
                self.lake.append_rows("events", landing.bronze, txn=AppTxn(f"lakecdp-online-bronze-{self.store_id}", pending.seq))
            if landing.contacts:
                self._upsert_contacts(landing.contacts, AppTxn(f"lakecdp-online-contacts-{self.store_id}", pending.seq))
            if landing.entries:  # insert-only: a replayed flush adds nothing
                self.lake.insert_rows("consent_ledger", arrow_rows(table("consent_ledger"), landing.entries))
            began = timed("append_s", began)
            if landing.left:
                self._flush_with_spark(landing.left, pending.seq, at)
            timed("spark_s", began)
            self.store.landing_flushed(pending)
            written += len(pending.rows)
            if len(pending.rows) < limit:  # caught up: lines the batches commit meanwhile wait for the next flush
                return written

    def _build_bronze(self, lines: list[Line]) -> tuple[pa.Table, list[int]]:
        """The bronze rows of `lines` from the bronze worker (built here if it failed), and the lines it left out."""
        try:
            if self._bronze_worker is None:
                self._bronze_worker = BronzeWorker(self.settings.events, self.lake.pseudonyms)
            return self._bronze_worker.build(lines)
        except (EOFError, OSError) as exc:
            # Nothing is lost: the lines stay in the store until written; they are built here instead.
            log.warning("flush: the bronze worker failed (%s); building bronze rows in this process", type(exc).__name__)
            self._bronze_worker = None
            return build_table(self.bronze, lines)

    def _upsert_contacts(self, contacts: list[dict[str, Any]], txn: AppTxn) -> None:
        """`upsert_contacts` on the driver: the contacts folded into their `customers` rows (read and sealed
        through Lake's contact rows), merged through delta-rs."""
        if self.lake.committed_version("customers", txn.app_id) == txn.version:
            return  # a replayed flush: the fold read rows this commit has since changed
        loaded = self._customers  # the CRM attributes live batches read
        stored = self.lake.contact_rows([c["customer_id"] for c in contacts], _FOLDED_COLUMNS)
        existing = {r["customer_id"]: r | {"updated_at": to_us(r["updated_at"])} for r in stored}
        folded = fold_contact_rows(contacts, existing)
        self.lake.merge_rows("customers", arrow_rows(table("customers"), folded), txn=txn)
        if loaded is not None:
            self._keep_attributes(loaded, txn)

    def close(self) -> None:
        """Ends the flush's bronze worker (a stream's last flush is done)."""
        if self._bronze_worker is not None:
            self._bronze_worker.close()
            self._bronze_worker = None

    def _flush_with_spark(self, rows: list[dict[str, Any]], seq: int, at: datetime) -> None:
        """The landing rows `rows` through Spark's prepare_batch: bronze, quarantine, contacts, consent facts."""
        table = pa.table(
            {
                "raw": pa.array([base64.b64decode(r["raw_b64"]) if "raw_b64" in r else r["raw"].encode() for r in rows], pa.binary()),
                "source_file": pa.array([r["source_file"] for r in rows], pa.string()),
                "received_at": pa.array([r["received_at"] for r in rows], pa.timestamp("us", tz="UTC")),
            }
        )
        lines = self.lake.spark.createDataFrame(table).select(F.col("raw").cast("string").alias("raw"), "source_file", "received_at")
        # Each line is judged against the instant its micro-batch took it, as the live path judged it.
        batch = prepare_batch(
            lines, received_at=F.col("received_at"), quarantined_at=at, settings=self.settings.events, pseudonyms=self.lake.pseudonyms
        )
        kinds = {r.get("kind") for r in rows}
        # What the live path already knows spares the flush its counting jobs: lines, rejects, no
        # repeats (they were dropped), and whether any identify or consent event is among them.
        counts = {
            "lines": len(rows),
            "rejected": sum(r.get("kind") == "rejected" for r in rows),
            "repeats": False,
            "identifies": "identify" in kinds,
        }
        txn = AppTxn(f"lakecdp-online-landing-{self.store_id}", seq)
        loaded = self._customers if "identify" in kinds else None  # the CRM attributes live batches read
        replayed = loaded is not None and self.lake.committed_version("customers", txn.app_id) == txn.version
        try:
            commit_batch(self.lake, batch, txn=txn, seen_ids=[], counts=counts)
            if loaded is not None and not replayed:
                self._keep_attributes(loaded, txn)
            if kinds & {"identify", "consent"}:
                candidates = batch.valid.filter((F.col("type") == "identify") | F.col("event").isin(*sorted(self.consent_events)))
                # Insert-only: a replayed flush adds nothing.
                self.lake.insert_rows("consent_ledger", entries_from_events(candidates, self.consent_rules, at).toArrow())
        finally:
            batch.release()

    def _keep_attributes(self, loaded: tuple[int, dict[str, dict[str, Any]]], txn: AppTxn) -> None:
        """The CRM attributes `loaded` at a version of `customers` stay current when the one commit since
        is this flush's contact upsert (`txn`): an identify writes contact columns and keeps every column a
        rule may read (events.contacts.fold_contacts), so the next live batch need not reload the table."""
        version, attributes = loaded
        if self.lake.version("customers") == version + 1 and self.lake.committed_version("customers", txn.app_id) == txn.version:
            self._customers = (version + 1, attributes)

    def consent_rows(self, entries: DataFrame) -> list[tuple[str, dict[str, Any]]]:
        """A batch's consent ledger entries, to reach Delta with the next flush (insert-only there)."""
        rows = entries.dropDuplicates(["entry_id"]).toArrow().to_pylist()
        return [("consent_ledger", {k: to_us(v) if isinstance(v, datetime) else v for k, v in row.items()}) for row in rows]

    def _state(self, states: dict[str, dict[str, Any] | None], key: str) -> dict[str, Any]:
        if key not in states:
            states[key] = self.store.load([key]).get(key) or new_state()
        state = states[key]
        if state is None:
            # Merged into its customer earlier in the batch and a key again (one device's anonymousId is
            # someone's userId): it starts afresh, as in a later batch, whose store no longer has it.
            state = states[key] = new_state()
        return state

    def _link(self, events: list[dict[str, Any]], states: dict[str, dict[str, Any] | None], commit: Commit, at: int) -> dict[str, str]:
        """Record the batch's identify/alias links; a newly linked device's state moves into its customer's."""
        found: dict[tuple[str, str], tuple[int, str]] = {}
        for e in events:
            anonymous = e["anonymous_id"] if e["type"] == "identify" else e["previous_id"] if e["type"] == "alias" else None
            if anonymous is None or e["user_id"] is None or anonymous == e["user_id"]:
                continue
            pair, first = (anonymous, e["user_id"]), (e["timestamp"], e["message_id"])
            found[pair] = min(found.get(pair, first), first)
        anonymous_ids = {e["anonymous_id"] for e in events if e["anonymous_id"] is not None} | {a for a, _ in found}
        links = {**self.store.links(anonymous_ids), **commit.links}  # the batch's earlier pieces linked some already
        for (anonymous, customer), (linked_at, message_id) in sorted(found.items(), key=lambda item: (item[1][0], item[0][1])):
            commit.link_rows.append(
                {
                    "anonymous_id": anonymous,
                    "customer_id": customer,
                    "linked_at": linked_at,
                    "source_message_id": message_id,
                    "is_active": True,
                    "unmerged_at": None,
                }
            )
            if anonymous in links:
                continue  # the earliest link wins: a shared device is not re-assigned
            links[anonymous] = commit.links[anonymous] = customer
            device = self._state(states, anonymous)
            if device["n"] or device["later"] or device["seg"]:
                merge(self.plan, self._state(states, customer), device, at)
                self._exit_all(anonymous, device, commit, at)
            states[anonymous] = None
        return links

    def _exit_all(self, key: str, state: dict[str, Any], commit: Commit, at: int) -> None:
        for name, (_, version, reason) in sorted(state["seg"].items()):
            if name in self.names:
                commit.rows.append(("segment_transitions", _transition(name, key, "exited", at, version, reason)))

    def _evaluate(self, states: Mapping[str, dict[str, Any] | None], commit: Commit, now: datetime) -> None:
        """Profiles, verdicts, transitions and timers of every changed customer, as of `now`."""
        at = to_us(now)
        scores = self.scores() if self.uses_scores else {}
        crm = self.customer_attributes() if self.customer_columns else {}
        for key, state in states.items():
            commit.states[key] = state
            if state is None:
                continue
            advance(self.plan, state, at)
            row = profile(state, key, at)
            state["as_of"] = at
            timers: dict[str, list] = {}
            members = state["seg"]
            values = {**(row or {}), **scores.get(key, {}), CUSTOMER: crm.get(key, {})}
            for verdict in verdicts(state, values, self.segments, at) if row else []:
                was = members.get(verdict.segment)
                if verdict.is_member:
                    members[verdict.segment] = [was[0] if was else at, verdict.rule_version, verdict.reason]
                    if not was:
                        commit.rows.append(
                            ("segment_transitions", _transition(verdict.segment, key, "entered", at, verdict.rule_version, verdict.reason))
                        )
                        if verdict.segment in self.triggers:
                            commit.rows.append(("trigger_outbox", self._outbox_row(verdict.segment, key, at, verdict.changed_at)))
                elif was:
                    del members[verdict.segment]
                    commit.rows.append(
                        ("segment_transitions", _transition(verdict.segment, key, "exited", at, verdict.rule_version, verdict.reason))
                    )
                if verdict.next_check_at is not None:
                    timers[verdict.segment] = [verdict.next_check_at, verdict.rule_version]
            if row is None:
                self._exit_all(key, state, commit, at)
                members.clear()
            state["timers"] = timers
            waiting = [e["timestamp"] for e in state["later"]]
            dues = [due for due, _ in timers.values()] + waiting
            state["due"] = min(dues) if dues else None

    def _outbox_row(self, segment: str, customer: str, at: int, changed_at: int | None) -> dict[str, Any]:
        entered = from_us(at)
        key = "\u0000".join((segment, customer, entered.strftime("%Y-%m-%dT%H:%M:%S.%f")))
        spec = self.triggers[segment]
        late = too_late(spec, at, changed_at)
        return {
            "trigger_id": hashlib.sha256(key.encode()).hexdigest()[:32],
            "segment": segment,
            "customer_id": customer,
            "destination": spec.destination,
            "entered_at": at,
            "due_at": at + int(spec.delay.total_seconds() * 1_000_000),
            "state": PENDING if late is None else CANCELLED,
            "attempts": 0,
            "reason": late,
            "updated_at": at,
        }

    def fire_timers(self, now: datetime, *, stream: str) -> list[str]:
        """Re-evaluate the customers whose verdict time alone may flip by `now` (no bronze read)."""
        due = self.store.due(to_us(now))
        if due:
            commit = Commit(stream=f"{stream}:timers", batch_id=to_us(now))
            self._evaluate(dict(self.store.load(due)), commit, now)
            self.store.commit(commit)
        return due

    def email_consent_events(self, state: dict[str, Any]) -> tuple[int | None, int | None]:
        """A state's latest opt-in and latest opt-out event instants (µs): live, where the consent ledger has them only
        from the next flush (the dispatcher's re-check reads both)."""

        def latest(matches: list[Match]) -> int | None:
            return max((state["m"][m.key][1] for m in matches if state["m"].get(m.key, [0, None])[1] is not None), default=None)

        return latest(self.opt_in), latest(self.opt_out)

    def last_evaluated(self) -> datetime | None:
        """The latest instant any customer's state was evaluated at (None: empty store)."""
        return from_us(max((state.get("as_of") or 0 for _, state in self.store.scan()), default=None) or None)

    def next_due(self) -> datetime | None:
        return from_us(self.store.next_due())

    def scores(self) -> dict[str, dict[str, Any]]:
        """profile_scores by customer, reloaded when the table's version moves (the scoring job writes it)."""
        if not self.lake.exists("profile_scores"):
            return {}
        version = self.lake.version("profile_scores")
        if self._scores is None or self._scores[0] != version:
            rows = self.lake.read("profile_scores").select("customer_id", *_SCORE_COLUMNS).toArrow().to_pylist()
            self._scores = (version, {r.pop("customer_id"): r for r in rows})
        return self._scores[1]

    def customer_attributes(self) -> dict[str, dict[str, Any]]:
        """The CRM columns rules read, by customer; reloaded when `customers` moves (an import, an identify)."""
        if not self.lake.exists("customers"):
            return {}
        version = self.lake.version("customers")
        if self._customers is None or self._customers[0] != version:
            rows = customer_struct(self.lake.read("customers"), self.customer_columns).toArrow().to_pylist()
            self._customers = (version, {r["customer_id"]: r[CUSTOMER] for r in rows})
        return self._customers[1]

    # -- bootstrap from bronze ---------------------------------------------------------------------

    def bootstrap(self, now: datetime) -> int:
        """When the declarations or rules changed (or the store is new), rebuild every state from bronze once.

        Memberships carry over, so customers who stay in keep their entry instant; what the new rules
        change is recorded as transitions. Returns the events folded (0: the store was current).
        """
        from lakecdp.identity.graph import active_links

        if self.store.meta("fingerprint") == self.fingerprint:
            return 0
        at = to_us(now)
        states: dict[str, dict[str, Any]] = {}
        folded = 0
        if self.lake.exists("events"):
            events = resolved_events(self.lake).select(
                *self.columns, F.unix_micros("timestamp").alias("timestamp"), F.unix_micros("received_at").alias("received")
            )
            rows = events.count()
            log.info("online state: rebuilding from %s bronze events (declarations or rules changed)", f"{rows:,}")
            since = at - int(self.settings.state.dedupe_window.total_seconds() * 1_000_000)
            commit = Commit(stream="bootstrap", batch_id=at)
            for columns in _arrow_pieces(events, rows, self.settings.state.chunk_rows, "customer_id"):
                names = list(columns)
                for values in zip(*columns.values()):
                    event = dict(zip(names, values))
                    fold(self.plan, states.setdefault(event["customer_id"], new_state()), event, at)
                    if event["received"] >= since:
                        commit.messages[event["message_id"]] = event["received"]
                    folded += 1
            links = active_links(self.lake.read("identity_links")).toArrow().to_pylist() if self.lake.exists("identity_links") else []
            commit.links = {r["anonymous_id"]: r["linked_customer_id"] for r in links}
        else:
            commit = Commit(stream="bootstrap", batch_id=at)
        for key, old in self.store.scan():
            if key in states:
                states[key]["seg"] = old.get("seg", {})
            else:
                self._exit_all(key, old, commit, at)
        self._evaluate(states, commit, now)
        self.store.replace_all({k: s for k, s in commit.states.items() if s is not None}, {}, self.fingerprint)
        self.store.commit(
            Commit(stream=commit.stream, batch_id=commit.batch_id, messages=commit.messages, links=commit.links, rows=commit.rows)
        )
        return folded

    # -- Delta catches up --------------------------------------------------------------------------

    def flush(self, now: datetime | None = None) -> int:
        """Write what changed since the last flush to Delta; returns the customers written.

        With `now` and a `rescore` callable, the changed customers are re-scored with the champion models
        too (their model features read their bronze history: at the flush, off the batches' path).
        """
        began = time.perf_counter()
        lines = self.flush_landing(now)  # bronze first: rescoring below reads the flushed customers' history
        if lines:
            log.info("flush: %s live lines written to bronze and quarantine", f"{lines:,}")
        self.last_flush = {"lines": lines, "landing_s": round(time.perf_counter() - began, 2), "landing": self.landing_parts}
        pending = self.store.pending()
        if not pending.customers and not pending.rows:
            return 0
        txn = AppTxn(f"lakecdp-online-{self.store_id}", pending.seq)
        states = self.store.load(pending.customers)
        profiles, members, timers = [], [], []
        for key, state in states.items():
            row = profile(state, key, state["as_of"]) if state.get("as_of") is not None else None
            if row is not None:
                profiles.append(row)
            evaluated_at = from_us(state.get("as_of"))
            for name, (entered, version, reason) in state["seg"].items():
                if name in self.names:
                    members.append(
                        {
                            "segment": name,
                            "customer_id": key,
                            "entered_at": from_us(entered),
                            "rule_version": version,
                            "reason": reason,
                            "evaluated_at": evaluated_at,
                        }
                    )
            for name, (due, version) in state.get("timers", {}).items():
                timers.append({"segment": name, "customer_id": key, "due_at": from_us(due), "rule_version": version})
        scope = {"segment": self.names, "customer_id": pending.customers}
        lake = self.lake

        def rows_of(name: str, rows: list[dict[str, Any]]) -> pa.Table:  # timestamps as µs or datetimes
            return arrow_rows(table(name), rows)

        writes: list[Callable[[], Any]] = [
            lambda: lake.merge_rows(
                "profile_features", rows_of("profile_features", profiles), txn=txn, delete_missing={"customer_id": pending.customers}
            ),
            lambda: lake.merge_rows(
                "segment_membership",
                rows_of("segment_membership", members),
                update_columns=["rule_version", "reason", "evaluated_at"],
                delete_missing=scope,
                txn=txn,
            ),
            lambda: lake.merge_rows("segment_timers", rows_of("segment_timers", timers), delete_missing=scope, txn=txn),
        ]
        by_table: dict[str, list[dict]] = {}
        for name, row in pending.rows:
            by_table.setdefault(name, []).append(row)
        if by_table.get("segment_transitions"):
            writes.append(
                lambda: lake.append_rows("segment_transitions", rows_of("segment_transitions", by_table["segment_transitions"]), txn=txn)
            )
        for name in ("trigger_outbox", "identity_links", "consent_ledger"):  # insert-only: a replayed row never resets one already there
            if by_table.get(name):

                def insert(name: str = name, rows: list[dict[str, Any]] = by_table[name]) -> None:
                    self._insert_new(name, rows_of(name, rows), txn)

                writes.append(insert)
        began = time.perf_counter()
        run_together(self.lake.spark, *writes)
        self.last_flush |= {"customers": len(pending.customers), "tables_s": round(time.perf_counter() - began, 2)}
        if now is not None and self.rescore is not None:
            began = time.perf_counter()
            self.rescore(now, sorted(states))
            self.last_flush["rescore_s"] = round(time.perf_counter() - began, 2)
        self.store.flushed(pending)
        # Message ids older than the dedupe window can no longer make a duplicate.
        newest = max((state.get("as_of") or 0 for state in states.values()), default=0)
        self.store.forget_messages(newest - int(self.settings.state.dedupe_window.total_seconds() * 1_000_000))
        return len(pending.customers)

    def _insert_new(self, name: str, rows: pa.Table, txn: AppTxn) -> None:
        """Rows whose keys `name` lacks are inserted; trigger_outbox's under `outbox_lock`, which the
        dispatcher holds while it records its sends (so a row it marked sent stays sent)."""
        with self.outbox_lock if name == "trigger_outbox" else nullcontext():
            self.lake.insert_rows(name, rows, txn=txn)


def _landing_row(raw: bytes, source_file: str, received_at: int, event: dict[str, Any] | None, kind: str | None) -> dict[str, Any]:
    """A live line kept for the flush; the event's pseudonyms let an erasure find it before then."""
    try:
        row: dict[str, Any] = {"raw": raw.decode("utf-8")}
    except UnicodeDecodeError:
        row = {"raw_b64": base64.b64encode(raw).decode()}
    row |= {"source_file": source_file, "received_at": received_at}
    if event is not None:
        row |= {"customer_id": event["customer_id"], "anonymous_id": event.get("anonymous_id")}
    if kind is not None:
        row["kind"] = kind
    return row


def _transition(segment: str, customer: str, kind: str, at: int, version: str, reason: str | None) -> dict[str, Any]:
    return {"segment": segment, "customer_id": customer, "transition": kind, "at": at, "rule_version": version, "reason": reason}


def _batched(items: Iterator[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _attribute_columns(segments: list[Segment]) -> set[str]:
    from lakecdp.segments.rules import Attribute
    from lakecdp.segments.sql import SqlRule

    found: set[str] = set()

    def visit(rule: Any) -> None:
        if isinstance(rule, Attribute) and rule.table == "profile":
            found.add(rule.column)
        elif isinstance(rule, SqlRule):
            found.update(rule.profile_columns)
        for child in (*getattr(rule, "rules", ()), *([rule.rule] if hasattr(rule, "rule") else [])):
            visit(child)

    for segment in segments:
        visit(segment.rule)
    return found
