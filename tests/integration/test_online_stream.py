"""The stream on its online state (SQLite and a real Redis): equal to a batch recompute, deduped within the window, reconciled."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta

import pytest

from lakecdp.clock import FrozenClock
from lakecdp.config import load_settings
from lakecdp.generate import GeneratorSettings, write_dataset
from lakecdp.lake import open_lake
from lakecdp.online.flow import OnlineState
from lakecdp.online.reconcile import reconcile
from lakecdp.online.store import Commit, open_store
from lakecdp.segments import segments_of
from lakecdp.stream import run_stream

pytestmark = pytest.mark.integration

GENERATED = GeneratorSettings(customers=60, days=5, seed=21)


def _stream(spark, tmp_path, state: dict, source=None, stream: dict | None = None):
    settings = load_settings(overrides={"state": state, "stream": stream or {}})
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    run = run_stream(
        spark,
        lake,
        settings,
        source=str(source or tmp_path / "landing" / "events"),
        checkpoint=str(tmp_path / "ckpt"),
        clock=FrozenClock(GENERATED.end),
    )
    return settings, lake, run


def _online(settings, lake):
    return OnlineState(lake, settings, open_store(settings.state, lake.root), segments_of(settings))


@pytest.fixture(scope="module")
def streamed(spark, tmp_path_factory):
    """GENERATED streamed once on the default store (SQLite), a file per micro-batch: (tmp dir, settings, lake, run).

    The tests below share it in file order: each reads it, or puts back what it changed, except the last.
    """
    root = tmp_path_factory.mktemp("streamed")
    write_dataset(GENERATED, root / "landing", events_per_file=400)
    return root, *_stream(spark, root, {}, stream={"max_files_per_trigger": 1})


def test_online_state_and_delta_equal_a_batch_recompute(spark, tmp_path, redis_url):
    """On Redis; the default store (SQLite) is reconciled the same way after kill -9 (test_stream.py)."""
    write_dataset(GENERATED, tmp_path / "landing", events_per_file=2500)
    state = {"backend": "redis", "redis_url": redis_url, "redis_prefix": f"t-{uuid.uuid4().hex}"}
    settings, lake, run = _stream(spark, tmp_path, state)
    online = _online(settings, lake)

    result = reconcile(lake, online, GENERATED.end)

    assert run.events > 1000 and result.customers > GENERATED.customers // 2
    assert [str(d) for d in result.differences] == []
    # Delta caught up at the end of the run: one profile per customer with events, members as in the state.
    states = dict(online.store.scan())
    assert lake.read("profile_features").count() == sum(1 for s in states.values() if s["n"])
    members = {(name, key) for key, s in states.items() for name in s["seg"]}
    assert members and {(r.segment, r.customer_id) for r in lake.read("segment_membership").collect()} == members
    entered = {(r.segment, r.customer_id) for r in lake.read("segment_transitions").filter("transition = 'entered'").collect()}
    assert members <= entered


def test_every_batch_lands_in_stream_metrics_and_the_heartbeat_says_stopped(streamed):
    import os

    root, _, lake, run = streamed
    metrics = sorted(lake.read("stream_metrics").collect(), key=lambda r: r.batch_id)
    assert len(run.batches) > 1
    assert [r.batch_id for r in metrics] == [b["batch_id"] for b in run.batches]
    for row, batch in zip(metrics, run.batches):
        assert (row.lines, row.events, row.quarantined, row.duplicates) == (
            batch["lines"],
            batch["events"],
            batch["quarantined"],
            batch["duplicates"],
        )
        assert row.path in {"live", "spark"} and row.ended_at >= row.started_at and row.duration_s >= 0
        assert row.lag_s is not None and row.lag_s >= 0  # every batch kept events, each with a receivedAt
        assert set(json.loads(row.steps)) >= {"state", "batch"}
    assert len({r.stream for r in metrics}) == 1
    heartbeat = json.loads((root / "lake" / "_stream" / "heartbeat.json").read_text())
    assert heartbeat["state"] == "stopped" and heartbeat["pid"] == os.getpid()
    assert heartbeat["last_batch_id"] == run.batches[-1]["batch_id"] and heartbeat["stream"] == metrics[0].stream


def test_content_api_serves_live_profile_and_segments_from_the_state_store(streamed):
    from lakecdp.content.service import open_content_service

    _, settings, lake, _ = streamed
    service = open_content_service(settings, lake_root=lake.root, clock=FrozenClock(GENERATED.end))
    snapshot = service.store.snapshot
    store = service.live.store
    key, state = next((k, s) for k, s in store.scan() if snapshot.get(k) is not None and s["seg"])
    assert service.context(snapshot, key).segments == frozenset(state["seg"]) == snapshot.get(key).segments

    # A micro-batch commits a new membership: the API serves it before any flush or snapshot reload.
    changed = {**state, "seg": {**state["seg"], "brand_new_segment": [state["as_of"], "v1", "{}"]}}
    store.commit(Commit(stream="live", batch_id=1, states={key: changed}))
    try:
        assert "brand_new_segment" in service.context(snapshot, key).segments
        assert "brand_new_segment" not in snapshot.get(key).segments
    finally:
        store.commit(Commit(stream="live", batch_id=2, states={key: state}))  # the next test reconciles this store


def test_resent_message_on_another_date_is_a_duplicate_and_tampered_state_is_repaired(spark, streamed):
    root, settings, lake, _ = streamed
    bronze = lake.read("events").count()
    # An at-least-once sender retries a message with its timestamp moved to the previous day.
    line = json.loads((root / "landing" / "events" / "part-00000.jsonl").open().readline())
    moved = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")) - timedelta(days=1)
    line["timestamp"] = moved.isoformat().replace("+00:00", "Z")
    (root / "landing" / "events" / "retry.jsonl").write_text(json.dumps(line) + "\n")

    _, _, second = _stream(spark, root, {}, stream={"max_files_per_trigger": 1})

    assert lake.read("events").count() == bronze
    assert [b["duplicates"] for b in second.batches] == [1]
    online = _online(settings, lake)
    key, state = next((k, s) for k, s in online.store.scan() if s["n"] > 3)
    state["n"] += 5
    online.store.commit(Commit(stream="tamper", batch_id=1, states={key: state}))

    found = reconcile(lake, online, GENERATED.end, fix=True)
    after = reconcile(lake, online, GENERATED.end)

    assert [(d.customer_id, d.what) for d in found.differences] == [(key, "events_total")] and found.fixed
    assert after.differences == [] and after.customers == found.customers


def test_a_failing_batch_stops_the_stream_naming_the_batch_and_the_fix(spark, tmp_path, monkeypatch):
    from lakecdp.stream.job import BatchFailed

    write_dataset(GENERATED, tmp_path / "landing", events_per_file=2500)

    def out_of_memory(self, *args, **kwargs):
        raise MemoryError("the batch did not fit")  # what Python raises when the driver runs out

    monkeypatch.setattr(OnlineState, "prepare", out_of_memory)
    with pytest.raises(BatchFailed) as failed:
        _stream(spark, tmp_path, {})

    assert failed.value.batch_id == 0
    assert "micro-batch 0 failed: MemoryError" in str(failed.value) and "spark.driver_memory" in str(failed.value)
    heartbeat = json.loads((tmp_path / "lake" / "_stream" / "heartbeat.json").read_text())
    assert heartbeat["state"] == "failed" and heartbeat["last_batch_id"] is None


def test_a_stuck_batch_stops_the_stream_naming_the_batch_instead_of_hanging(spark, tmp_path, monkeypatch):
    from lakecdp.stream.job import BatchFailed

    write_dataset(GENERATED, tmp_path / "landing", events_per_file=2500)
    settings = load_settings(overrides={"stream": {"batch_timeout": "10m", "stop_grace": "1s"}})
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    clock, watch = FrozenClock(GENERATED.end), FrozenClock(GENERATED.end)
    released = threading.Event()

    def stuck(self, *args, **kwargs):
        watch.advance(timedelta(minutes=11))  # on the watch, the batch has now run past stream.batch_timeout
        released.wait(120)
        raise RuntimeError("released by the test")

    monkeypatch.setattr(OnlineState, "prepare", stuck)
    try:
        with pytest.raises(BatchFailed) as failed:
            run_stream(
                spark,
                lake,
                settings,
                source=str(tmp_path / "landing" / "events"),
                checkpoint=str(tmp_path / "ckpt"),
                clock=clock,
                watch=watch,
            )
    finally:
        released.set()

    assert failed.value.batch_id == 0
    assert "micro-batch 0 was still running after stream.batch_timeout (0:10:00)" in str(failed.value)
    assert "replayed on the next start" in str(failed.value)
    heartbeat = json.loads((tmp_path / "lake" / "_stream" / "heartbeat.json").read_text())
    assert heartbeat["state"] == "failed"


def test_processed_landing_files_are_deleted_once_committed_and_past_retention(spark, tmp_path):
    # #22 item 5: processed landing files keep raw contact data; landing.retention bounds how long.
    source = tmp_path / "landing" / "events"
    source.mkdir(parents=True)
    at = (GENERATED.end - timedelta(hours=1)).isoformat().replace("+00:00", "Z")

    def landing_file(name: str, message_id: str) -> None:
        line = {"type": "identify", "messageId": message_id, "userId": "c1", "timestamp": at, "traits": {"email": "c1@example.com"}}
        (source / name).write_text(json.dumps(line) + "\n")

    def stream(retention: str):
        settings = load_settings(overrides={"landing": {"retention": retention}})
        lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
        run_stream(spark, lake, settings, source=str(source), checkpoint=str(tmp_path / "ckpt"), clock=FrozenClock(GENERATED.end))
        return lake

    landing_file("part-a.jsonl", "m-a")
    stream("7d")
    assert (source / "part-a.jsonl").exists()  # processed, within its retention

    landing_file("part-b.jsonl", "m-b")
    stream("0s")
    # part-a's batch was committed: gone at the start of the run. part-b's batch was still in flight
    # when the run expired files (Spark commits after the batch body): kept, so a replay can read it.
    assert not (source / "part-a.jsonl").exists() and (source / "part-b.jsonl").exists()

    lake = stream("0s")
    assert not (source / "part-b.jsonl").exists()
    assert sorted(r.message_id for r in lake.read("events").collect()) == ["m-a", "m-b"]
    assert (source / "_processed.log").read_text() == ""


def test_an_id_merged_as_a_device_and_then_used_as_a_user_id_in_the_same_batch_folds(spark, tmp_path):
    """Once its state was None after the merge, the fold raised TypeError, on every replay of the batch."""
    settings = load_settings(overrides={"state": {"path": str(tmp_path / "state.db")}})
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    online = _online(settings, lake)
    at = GENERATED.end - timedelta(hours=1)
    stamp = at.isoformat().replace("+00:00", "Z")
    lines = [
        {"type": "track", "messageId": "view", "anonymousId": "shared-1", "event": "Product Viewed", "timestamp": stamp},
        {"type": "identify", "messageId": "link", "anonymousId": "shared-1", "userId": "cust-1", "timestamp": stamp},
        {"type": "track", "messageId": "again", "userId": "shared-1", "event": "Product Viewed", "timestamp": stamp},
    ]
    prepared = online.prepare_live([json.dumps(x).encode() for x in lines], ["t.jsonl"] * 3, stream="s", batch_id=0, now=GENERATED.end)
    online.store.commit(prepared.commit)

    pseudonym = lake.pseudonyms.of
    states = online.store.load([pseudonym("cust-1"), pseudonym("shared-1")])
    assert set(states) == {pseudonym("cust-1"), pseudonym("shared-1")}


def test_live_batches_keep_the_crm_attributes_over_the_flushs_own_contact_upsert(spark, tmp_path, monkeypatch):
    """An identify's contact upsert (the flush's) leaves every column a rule reads: the attributes stay loaded,
    without reading `customers` again; a CRM import's commit is read again."""
    from lakecdp.importer.customers import import_customers

    settings = load_settings(overrides={"state": {"path": str(tmp_path / "state.db")}})
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    at = GENERATED.end - timedelta(hours=1)
    crm = tmp_path / "customers.csv"

    def crm_import(tier: str) -> None:
        crm.write_text(f"customer_id,email,city,loyalty_tier\ncust-1,old@example.com,Leeds,{tier}\n")
        assert import_customers(lake, crm, clock=FrozenClock(at), attributes=settings.customers.attributes).rejected_rows == 0

    crm_import("gold")
    online = _online(settings, lake)
    customer = lake.pseudonyms.of("cust-1")
    loaded = online.customer_attributes()
    assert loaded[customer]["loyalty_tier"] == "gold"

    identify = {"type": "identify", "messageId": "id-1", "userId": "cust-1", "traits": {"email": "new@example.com"}}
    raw = json.dumps({**identify, "timestamp": at.isoformat().replace("+00:00", "Z")}).encode()
    online.store.commit(online.prepare_live([raw], ["t.jsonl"], stream="s", batch_id=0, now=GENERATED.end).commit)
    before = lake.version("customers")
    assert online.flush_landing(GENERATED.end) == 1
    assert online.landing_parts["spark_rows"] == 0  # the contacts were folded on the driver
    assert lake.version("customers") == before + 1  # the flush's upsert committed
    assert lake.with_plain_contacts(lake.read("customers")).first().email == "new@example.com"
    read = lake.read
    monkeypatch.setattr(lake, "read", lambda name, **kw: pytest.fail(f"read {name}") if name == "customers" else read(name, **kw))
    assert online.customer_attributes() is loaded
    monkeypatch.undo()

    crm_import("silver")
    assert online.customer_attributes()[customer]["loyalty_tier"] == "silver"


def test_a_flush_writes_contacts_and_consent_facts_without_spark_and_leaves_spark_what_it_refuses(spark, tmp_path, monkeypatch):
    """Identifies and consent events get their bronze rows, contacts and ledger entries from Python; an identify whose
    contacts Python refuses sends every identify of the flush to Spark, which folds them as one; a replay adds nothing."""
    settings = load_settings(overrides={"state": {"path": str(tmp_path / "state.db")}})
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    online = _online(settings, lake)
    stamp = (GENERATED.end - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    later = (GENERATED.end - timedelta(minutes=30)).isoformat().replace("+00:00", "Z")

    def flush(batch_id: int, *messages: dict, crash: bool = False) -> None:
        raws = [json.dumps({"timestamp": stamp} | m).encode() for m in messages]
        online.store.commit(online.prepare_live(raws, ["t.jsonl"] * len(raws), stream="s", batch_id=batch_id, now=GENERATED.end).commit)
        if crash:  # every table written, the store not told: the next flush writes the same lines again
            monkeypatch.setattr(online.store, "landing_flushed", lambda pending: pytest.fail("crash"))
            with pytest.raises(pytest.fail.Exception):
                online.flush_landing(GENERATED.end)
            monkeypatch.undo()
        assert online.flush_landing(GENERATED.end) == len(raws)

    def contacts() -> dict:
        rows = lake.with_plain_contacts(lake.read("customers")).collect()
        return {r.external_id: (r.email, r.first_name, r.last_name) for r in rows}

    identify = {"type": "identify", "userId": "cust-1"}
    flush(
        0,
        identify | {"messageId": "i1", "traits": {"email": " Ada@Example.com", "firstName": "Ada", "consent": {"profiling": False}}},
        identify | {"messageId": "i2", "timestamp": later, "context": {"traits": {"lastName": "Lovelace"}}},
        {"type": "track", "messageId": "s1", "userId": "cust-1", "event": "Subscribed"},
        {
            "type": "track",
            "messageId": "c1",
            "userId": "cust-1",
            "event": "Consent Updated",
            "properties": {"purpose": "personalization", "granted": True},
        },
        crash=True,
    )
    assert online.landing_parts["python_rows"] == 4 and online.landing_parts["spark_rows"] == 0
    assert contacts() == {"cust-1": ("ada@example.com", "Ada", "Lovelace")}
    assert [h["operation"] for h in lake.history("customers")].count("MERGE") == 1  # the replay merged nothing
    ledger = {(r.purpose, r.status, r.source) for r in lake.read("consent_ledger").collect()}
    assert ledger == {
        ("profiling", "withdrawn", "identify traits"),
        ("email_marketing", "granted", "event:Subscribed"),
        ("personalization", "granted", "event:Consent Updated"),
    }

    # A non-ASCII email is Spark's to lower-case: both identifies of this flush go to Spark, newest wins.
    flush(
        1,
        identify | {"messageId": "i3", "userId": "cust-2", "traits": {"email": "ÉVA@example.com"}},
        identify | {"messageId": "i4", "timestamp": later, "traits": {"firstName": "Augusta"}},
        {"type": "track", "messageId": "s2", "userId": "cust-2", "event": "Unsubscribed"},
    )
    assert online.landing_parts["python_rows"] == 1 and online.landing_parts["spark_rows"] == 2
    assert contacts() == {"cust-1": ("ada@example.com", "Augusta", "Lovelace"), "cust-2": ("éva@example.com", None, None)}
    assert lake.read("consent_ledger").count() == 4
    assert sorted(r.message_id for r in lake.read("events").collect()) == ["c1", "i1", "i2", "i3", "i4", "s1", "s2"]
    online.close()


def test_a_flush_whose_bronze_worker_died_builds_the_rows_itself(spark, tmp_path):
    """The flush's child process builds plain lines' bronze rows; if it dies, the flush builds them and loses none."""
    settings = load_settings(overrides={"state": {"path": str(tmp_path / "state.db")}})
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    online = _online(settings, lake)
    stamp = (GENERATED.end - timedelta(hours=1)).isoformat().replace("+00:00", "Z")

    def live_batch(batch_id: int, message_ids: list[str]) -> None:
        raws = [
            json.dumps({"type": "track", "messageId": m, "userId": "cust-1", "event": "Product Viewed", "timestamp": stamp}).encode()
            for m in message_ids
        ]
        prepared = online.prepare_live(raws, ["t.jsonl"] * len(raws), stream="s", batch_id=batch_id, now=GENERATED.end)
        online.store.commit(prepared.commit)

    live_batch(0, ["a", "b"])
    assert online.flush_landing(GENERATED.end) == 2
    assert online.landing_parts["python_rows"] == 2 and online._bronze_worker is not None
    online._bronze_worker._process.kill()
    online._bronze_worker._process.wait()
    live_batch(1, ["c"])
    assert online.flush_landing(GENERATED.end) == 1
    assert online.landing_parts == {**online.landing_parts, "python_rows": 1, "spark_rows": 0}
    assert sorted(r.message_id for r in lake.read("events").select("message_id").collect()) == ["a", "b", "c"]
    online.close()
