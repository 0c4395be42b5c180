"""Cart-abandonment triggers end to end: entry by timer, durable outbox, re-check, consent, exactly once."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lakecdp.config import load_settings
from lakecdp.experiments.assign import load_assigner
from lakecdp.flows.timers import fire_due_timers, send_due_triggers
from lakecdp.lake import open_lake
from lakecdp.privacy.email_consent import HELD_OUT
from lakecdp.segments import parse_segments
from lakecdp.webhooks import verify
from tests.lakes import ingest_and_refresh
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

SECRET = "test-webhook-secret"
T = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # 11:00 in Berlin: outside quiet hours 48 h later too
H = timedelta(hours=1)
RULES = [
    {
        "name": "cart_abandoned_48h",
        "rule": {"did": {"event": "Product Added"}, "then_not": {"event": "Order Completed"}, "within": "48h"},
        "trigger": {
            "destination": "cart_webhook",
            "delay": "1h",
            "frequency_cap": {"max": 1, "per": "7d"},
            "quiet_hours": {"start": "21:00", "end": "08:00"},
        },
    }
]


class Receiver(BaseHTTPRequestHandler):
    """Checks the signature; counts deliveries per idempotency key."""

    deliveries: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        # The signature only: freshness against a clock is tests/unit/test_webhooks.py's.
        if not verify(SECRET, self.headers, body, now=float(self.headers.get("webhook-timestamp") or 0)):
            self.send_response(401)
            self.end_headers()
            return
        Receiver.deliveries.append({"key": self.headers["Idempotency-Key"], **json.loads(body)})
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.deliveries = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/cart"
    server.shutdown()


def import_crm(lake, crm):
    """The CRM rows of (customer, marketing opt-in) pairs, each with the address <customer>@example.com."""
    rows = [
        {"customer_id": pid(c), "external_id": c, "email": f"{c}@example.com", "marketing_opt_in": ok, "source": "test", "updated_at": T}
        for c, ok in crm
    ]
    lake.merge("customers", lake.spark.createDataFrame(rows, lake.spec("customers").schema))


def suppress(lake, customer):
    """The customer's address on the suppression list, as `export sync-unsubscribes` records a hard bounce."""
    from lakecdp.export.identifiers import email_sha256

    row = (email_sha256(f"{customer}@example.com"), pid(customer), "bounced", "mailchimp", T)
    lake.append("export_suppressions", lake.spark.createDataFrame([row], lake.spec("export_suppressions").schema))


def line(message_id, customer, event, at, **properties):
    return json.dumps(
        {
            "type": "track",
            "event": event,
            "messageId": message_id,
            "userId": customer,
            "timestamp": at.isoformat().replace("+00:00", "Z"),
            "properties": properties,
            "context": {"timezone": "Europe/Berlin"},
        }
    )


def test_abandoned_cart_triggers_once_and_a_purchase_in_between_cancels(spark, tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("LAKECDP_TRIGGER_WEBHOOK_SECRET", SECRET)
    settings = load_settings(env={}, overrides={"triggers": {"destinations": {"cart_webhook": {"url": receiver}}}})
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    segments = parse_segments(RULES)
    # held_out_3 falls in the 5% global holdout (sha256 of salt, epoch and its pseudonym under the tests' key;
    # see lakecdp.experiments.assign)
    crm = [("abandoner", True), ("late_buyer", True), ("early_buyer", True), ("no_consent", False), ("held_out_3", True), ("bounced", True)]
    name = {pid(c): c for c, _ in crm}  # the lake names customers by pseudonym
    import_crm(lake, crm)
    suppress(lake, "bounced")

    def send(now, *lines):
        ingest_and_refresh(lake, settings, segments, now, lines)

    send(T + H, *[line(f"add-{c}", c, "Product Added", T, category="shoes", price="80") for c, _ in crm])
    send(T + 20 * H, line("buy-early", "early_buyer", "Order Completed", T + 20 * H, revenue="80"))
    timers = {name[r.customer_id]: r.due_at.replace(tzinfo=UTC) for r in lake.read("segment_timers").collect()}
    assert timers == dict.fromkeys(set(name.values()) - {"early_buyer"}, T + 48 * H)  # the buyer can no longer flip by time alone
    assert fire_due_timers(lake, segments, T + 48 * H - timedelta(seconds=1)) == []
    fired = fire_due_timers(lake, segments, T + 48 * H + timedelta(seconds=20))  # hour 48: entries by time alone, no new event
    assert sorted(name[c] for c in fired) == sorted(timers)
    entered = lake.read("segment_transitions").filter("transition = 'entered'").collect()
    assert {(name[r.customer_id], r.at.replace(tzinfo=UTC)) for r in entered} == {(c, T + 48 * H + timedelta(seconds=20)) for c in timers}
    assert lake.read("segment_timers").count() == 0
    outbox = {name[r.customer_id]: r for r in lake.read("trigger_outbox").collect()}
    assert set(outbox) == {"abandoner", "late_buyer", "no_consent", "held_out_3", "bounced"}
    assert all(r.state == "pending" and r.due_at.replace(tzinfo=UTC) == T + 49 * H + timedelta(seconds=20) for r in outbox.values())

    send(T + 48.5 * H, line("buy-late", "late_buyer", "Order Completed", T + 48.5 * H, revenue="80"))  # after it was queued
    assert send_due_triggers(lake, settings, segments, T + 49 * H).outcomes == {}  # not due yet
    report = send_due_triggers(lake, settings, segments, T + 49.5 * H)
    states = {name[r.customer_id]: (r.state, r.reason) for r in lake.read("trigger_outbox").collect()}
    assert states["abandoner"] == ("sent", None)
    assert states["late_buyer"][0] == "cancelled" and "left the segment" in states["late_buyer"][1]
    assert states["no_consent"] == ("cancelled", "no marketing opt-in")
    assert states["held_out_3"] == ("cancelled", HELD_OUT)
    assert states["bounced"] == ("cancelled", "suppressed: bounced")  # the export's suppression list
    assert report.outcomes["sent"] == 1 and report.outcomes["cancelled"] == 4

    send_due_triggers(lake, settings, segments, T + 60 * H)  # nothing left to send: no second delivery
    # the receiver is told the retailer's id, never the pseudonym
    assert [(d["customer_id"], d["segment"]) for d in Receiver.deliveries] == [("abandoner", "cart_abandoned_48h")]
    assert Receiver.deliveries[0]["key"] == outbox["abandoner"].trigger_id
    assert "email" not in Receiver.deliveries[0]
    # the variant travels with the send, the same one every other part of lakecdp assigns
    assigner = load_assigner(settings, at=T + 49.5 * H, lake_root=str(tmp_path / "lake"))
    assert Receiver.deliveries[0]["experiments"] == {"personalized_content": assigner.assign("personalized_content", pid("abandoner"))}


def test_an_entry_reaches_transitions_and_the_outbox_whichever_write_commits_first(spark, tmp_path, monkeypatch):
    """refresh_membership's writes run in threads, so their commits come in any order; each must still
    record the entry (a membership commit first once left transitions and outbox empty in CI). The
    order as listed is what the other tests here see most; this one runs the writes in reverse."""

    def one_after_another(_spark, *steps):
        return [step() for step in steps[::-1]]

    monkeypatch.setattr("lakecdp.flows.micro_batch.run_together", one_after_another)
    settings = load_settings(env={}, overrides={"triggers": {"destinations": {"cart_webhook": {"url": "http://127.0.0.1:9/unused"}}}})
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    segments = parse_segments(RULES)
    ingest_and_refresh(lake, settings, segments, T + H, [line("add", "abandoner", "Product Added", T, category="shoes", price="80")])
    fire_due_timers(lake, segments, T + 48 * H + timedelta(seconds=20))
    entered = lake.read("segment_transitions").filter("transition = 'entered'").collect()
    assert [(r.customer_id, r.segment) for r in entered] == [(pid("abandoner"), "cart_abandoned_48h")]
    assert [r.customer_id for r in lake.read("trigger_outbox").collect()] == [pid("abandoner")]
    assert [r.customer_id for r in lake.read("segment_membership").collect()] == [pid("abandoner")]


def test_the_stream_dispatches_from_the_state_store_before_any_flush(spark, tmp_path, receiver, monkeypatch):
    """Online mode: due sends come from the store's unflushed outbox and are re-checked against the live
    states (membership, opt-out events) with no bronze, profile or membership table in Delta yet."""
    from lakecdp.online.flow import OnlineState
    from lakecdp.online.store import open_store

    monkeypatch.setenv("LAKECDP_TRIGGER_WEBHOOK_SECRET", SECRET)
    settings = load_settings(env={}, overrides={"triggers": {"destinations": {"cart_webhook": {"url": receiver}}}})
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    segments = parse_segments(RULES)
    online = OnlineState(lake, settings, open_store(settings.state, lake.root), segments)
    crm = [
        ("abandoner", True),
        ("late_buyer", True),
        ("unsubscriber", True),
        ("no_consent", False),
        ("held_out_3", True),
        ("bounced", True),
    ]
    name = {pid(c): c for c, _ in crm}
    import_crm(lake, crm)
    suppress(lake, "bounced")
    batches = iter(range(100))

    def send(now, *lines):
        prepared = online.prepare_live([x.encode() for x in lines], ["t.jsonl"] * len(lines), stream="s", batch_id=next(batches), now=now)
        online.store.commit(prepared.commit)

    def dispatch(now):
        return send_due_triggers(lake, settings, segments, now, online=online)

    send(T + H, *[line(f"add-{c}", c, "Product Added", T, category="shoes", price=80) for c, _ in crm])
    online.fire_timers(T + 48 * H + timedelta(seconds=20), stream="s")  # hour 48: entries by time alone
    queued = {name[r["customer_id"]]: r for r in online.store.unflushed("trigger_outbox")}
    assert set(queued) == {"abandoner", "late_buyer", "unsubscriber", "no_consent", "held_out_3", "bounced"}
    send(
        T + 48.5 * H,
        line("buy-late", "late_buyer", "Order Completed", T + 48.5 * H, revenue=80),
        line("unsub", "unsubscriber", "Unsubscribed", T + 48.5 * H),
    )

    assert dispatch(T + 49 * H).outcomes == {}  # due at 49 h 20 s
    report = dispatch(T + 49.5 * H)

    assert not lake.exists("profile_features") and not lake.exists("events")  # nothing came from Delta's copies
    states = {name[r.customer_id]: (r.state, r.reason) for r in lake.read("trigger_outbox").collect()}
    assert states["abandoner"] == ("sent", None)
    assert states["late_buyer"][0] == "cancelled" and "left the segment" in states["late_buyer"][1]
    assert states["unsubscriber"] == ("cancelled", "unsubscribed after latest opt-in")
    assert states["no_consent"] == ("cancelled", "no marketing opt-in")
    assert states["held_out_3"] == ("cancelled", HELD_OUT)
    assert states["bounced"] == ("cancelled", "suppressed: bounced")
    assert report.outcomes == {"sent": 1, "cancelled": 5}
    assert [(d["customer_id"], d["key"]) for d in Receiver.deliveries] == [("abandoner", queued["abandoner"]["trigger_id"])]

    online.flush(T + 49.6 * H)  # the flush's insert-only outbox write keeps what the dispatcher recorded
    assert {name[r.customer_id]: r.state for r in lake.read("trigger_outbox").collect()} == {c: s for c, (s, _) in states.items()}
    assert online.store.unflushed("trigger_outbox") == []
    assert dispatch(T + 60 * H).outcomes == {}
    assert len(Receiver.deliveries) == 1


@pytest.mark.parametrize("executor", ["online", "batch"])
def test_an_entry_decided_long_after_its_moment_is_recorded_late_and_never_sent(spark, tmp_path, receiver, monkeypatch, executor):
    """A history loaded at T + 100 h: a cart added at T was abandoned at T + 48 h, 52 h before the entry
    (late: cancelled with the reason); one added at T + 40 h was abandoned at T + 88 h, 12 h before
    (sent). A trigger with `max_lateness: none` sends both. Both executors decide alike."""
    from lakecdp.online.flow import OnlineState
    from lakecdp.online.store import open_store

    monkeypatch.setenv("LAKECDP_TRIGGER_WEBHOOK_SECRET", SECRET)
    settings = load_settings(env={}, overrides={"triggers": {"destinations": {"cart_webhook": {"url": receiver}}}})
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    always = {**RULES[0], "name": "cart_abandoned_any_age", "trigger": {"destination": "cart_webhook", "max_lateness": "none"}}
    segments = parse_segments([RULES[0], always])
    now = T + 100 * H
    rows = [(c, True) for c in ("old_cart", "recent_cart")]
    import_crm(lake, rows)
    lines = [
        line("add-old", "old_cart", "Product Added", T, price=80),
        line("add-recent", "recent_cart", "Product Added", T + 40 * H, price=80),
    ]
    online = None
    if executor == "online":
        online = OnlineState(lake, settings, open_store(settings.state, lake.root), segments)
        prepared = online.prepare_live([x.encode() for x in lines], ["t.jsonl"] * 2, stream="s", batch_id=0, now=now)
        online.store.commit(prepared.commit)
        online.flush(now)
    else:
        ingest_and_refresh(lake, settings, segments, now, lines)

    outbox = {(r.segment, r.customer_id): (r.state, r.reason) for r in lake.read("trigger_outbox").collect()}
    assert outbox == {
        ("cart_abandoned_48h", pid("old_cart")): (
            "cancelled",
            "late: entered more than trigger.max_lateness (24.0 h) after its moment by event time",
        ),
        ("cart_abandoned_48h", pid("recent_cart")): ("pending", None),
        ("cart_abandoned_any_age", pid("old_cart")): ("pending", None),
        ("cart_abandoned_any_age", pid("recent_cart")): ("pending", None),
    }
    report = send_due_triggers(lake, settings, segments, now + 2 * H, online=online)
    assert report.outcomes == {"sent": 3}  # a late entry is never due
    assert sorted((d["customer_id"], d["segment"]) for d in Receiver.deliveries) == [
        ("old_cart", "cart_abandoned_any_age"),
        ("recent_cart", "cart_abandoned_48h"),
        ("recent_cart", "cart_abandoned_any_age"),
    ]
