"""The online state store: SqliteStore and RedisStore pass the same contract (Redis is a real server)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from lakecdp.online.store import Commit, RedisStore, SqliteStore, open_store

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqliteStore(str(tmp_path / "online.sqlite"))
    else:
        # A prefix of its own per test: tests share the server, never keys.
        s = RedisStore(request.getfixturevalue("redis_url"), prefix=f"t-{uuid.uuid4().hex}")
    yield s
    s.close()


def test_commit_load_delete_and_replay(store):
    assert store.applied("events") == -1
    assert store.commit(Commit("events", 1, states={"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}}))
    assert store.applied("events") == 1
    assert store.load(["a", "b", "c", "x"]) == {"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}}

    assert store.commit(Commit("events", 2, states={"a": {"n": 10}, "c": None}))
    assert store.applied("events") == 2
    assert store.load(["a", "b", "c"]) == {"a": {"n": 10}, "b": {"n": 2}}
    assert [k for k, _ in store.scan()] == ["a", "b"]

    before = store.pending()
    for replayed in (2, 1):  # the same batch id, then a lower one
        replay = Commit(
            "events",
            replayed,
            states={"a": {"n": 99}, "b": None, "d": {"n": 4}},
            messages={"m-replay": 5},
            links={"anon-replay": "a"},
            link_rows=[{"anonymous_id": "anon-replay"}],
            rows=[("transitions", {"id": "r"})],
        )
        assert store.commit(replay) is False
        assert store.applied("events") == 2
        assert store.load(["a", "b", "c", "d"]) == {"a": {"n": 10}, "b": {"n": 2}}
        assert store.seen(["m-replay"], since=0) == set()
        assert store.links(["anon-replay"]) == {}
        assert store.pending() == before

    # Batch ids count per stream: another stream starts on its own.
    assert store.commit(Commit("timers", 1, states={"d": {"n": 4}}))
    assert store.applied("timers") == 1 and store.applied("events") == 2
    assert store.load(["d"]) == {"d": {"n": 4}}


def test_seen_and_links(store):
    assert store.commit(Commit("events", 1, messages={"m1": 1_000, "m2": 2_000}, links={"anon1": "c1"}))
    assert store.commit(Commit("events", 2, messages={"m3": 3_000}, links={"anon1": "c2", "anon2": "c3"}))

    assert store.seen(["m1", "m2", "m3", "never"], since=0) == {"m1", "m2", "m3"}
    assert store.seen(["m1", "m2", "m3", "never"], since=2_000) == {"m2", "m3"}  # at == since counts
    assert store.seen(["m1", "m2", "m3"], since=3_001) == set()
    assert store.seen([], since=0) == set()
    assert store.seen(["m1", "m1", "never", "never"], since=0) == {"m1"}  # a batch may carry an id twice

    assert store.links(["anon1", "anon2", "anon-unknown"]) == {"anon1": "c1", "anon2": "c3"}  # first link wins
    assert store.links([]) == {}


def test_due_and_next_due(store):
    assert store.next_due() is None
    assert store.due(10**18) == []
    assert store.commit(Commit("events", 1, states={"a": {"due": 300}, "b": {"due": 100}, "c": {"due": None}, "d": {}}))
    assert store.next_due() == 100
    assert store.due(99) == []
    assert store.due(100) == ["b"]  # due <= until
    assert store.due(300) == ["a", "b"]

    # a's timer moves, b's is cleared, c gets one.
    assert store.commit(Commit("events", 2, states={"a": {"due": 500}, "b": {"due": None}, "c": {"due": 200}}))
    assert store.next_due() == 200
    assert store.due(400) == ["c"]
    assert store.due(500) == ["a", "c"]

    # A deleted state leaves the timer index.
    assert store.commit(Commit("events", 3, states={"c": None}))
    assert store.due(10**18) == ["a"]
    assert store.next_due() == 500
    assert store.commit(Commit("events", 4, states={"a": None}))
    assert store.due(10**18) == []
    assert store.next_due() is None


def test_pending_and_flushed(store):
    assert store.pending().seq == 0
    assert store.pending().customers == [] and store.pending().rows == []
    assert store.commit(
        Commit(
            "events",
            1,
            states={"zed": {"n": 1}, "amy": {"n": 2}},
            link_rows=[{"anonymous_id": "anon1", "customer_id": "amy"}],
            rows=[("transitions", {"id": "t1"}), ("outbox", {"id": "o1"})],
        )
    )
    assert store.commit(Commit("events", 2, states={"bob": {"n": 3}, "amy": None}, rows=[("transitions", {"id": "t2"})]))

    pending = store.pending()
    assert pending.seq == 0
    assert pending.customers == ["amy", "bob", "zed"]  # sorted; a deleted customer is changed too
    assert pending.rows == [
        ("identity_links", {"anonymous_id": "anon1", "customer_id": "amy"}),
        ("transitions", {"id": "t1"}),
        ("outbox", {"id": "o1"}),
        ("transitions", {"id": "t2"}),
    ]
    assert store.unflushed("transitions") == [{"id": "t1"}, {"id": "t2"}]  # one table's rows, in order, left in place
    assert store.pending().rows == pending.rows

    # Committed after pending() but before flushed(): not in `pending`, so the flush must keep it.
    assert store.commit(
        Commit(
            "events",
            3,
            states={"cy": {"n": 4}},
            link_rows=[{"anonymous_id": "anon2", "customer_id": "cy"}],
            rows=[("outbox", {"id": "o2"})],
        )
    )
    store.flushed(pending)
    assert store.unflushed("outbox") == [{"id": "o2"}] and store.unflushed("transitions") == []

    after = store.pending()
    assert after.seq == 1
    assert after.customers == ["cy"]
    assert after.rows == [("identity_links", {"anonymous_id": "anon2", "customer_id": "cy"}), ("outbox", {"id": "o2"})]

    store.flushed(after)
    empty = store.pending()
    assert (empty.seq, empty.customers, empty.rows) == (2, [], [])


def test_replace_all(store):
    assert store.commit(Commit("events", 1, states={"a": {"n": 1, "due": 100}, "b": {"n": 2, "due": 200}}))
    store.flushed(store.pending())
    assert store.pending().customers == []
    assert store.meta("fingerprint") is None

    store.replace_all({"b": {"n": 20}, "c": {"n": 30}}, dues={"b": None, "c": 50}, fingerprint="fp-1")

    assert dict(store.scan()) == {"b": {"n": 20}, "c": {"n": 30}}
    assert store.load(["a", "b", "c"]) == {"b": {"n": 20}, "c": {"n": 30}}
    assert store.pending().customers == ["a", "b", "c"]  # removed, replaced and new keys
    assert store.meta("fingerprint") == "fp-1"
    assert store.due(10**18) == ["c"]  # the old timers went with the old states
    assert store.next_due() == 50
    assert store.applied("events") == 1  # a rebuild does not touch batch ids

    store.replace_all({}, dues={}, fingerprint="fp-2")
    assert dict(store.scan()) == {}
    assert store.meta("fingerprint") == "fp-2"


def test_open_store_needs_a_local_path_for_a_remote_lake(tmp_path):
    settings = SimpleNamespace(backend="sqlite", path=None)
    with pytest.raises(ValueError, match=r"state\.path"):
        open_store(settings, "s3://bucket/lake")

    # A local (file://) lake root gets the default file beside the lake.
    local = open_store(settings, f"file://{tmp_path}/lake")
    try:
        assert isinstance(local, SqliteStore)
        assert local.path == f"{tmp_path}/lake/_state/online.sqlite"
    finally:
        local.close()


def test_erase_removes_state_links_and_unflushed_rows_of_those_ids_only(store):
    store.commit(
        Commit(
            stream="s",
            batch_id=1,
            states={"gone": {"n": 1, "due": 5}, "kept": {"n": 2, "due": 6}},
            links={"gone-device": "gone", "other-device": "kept"},
            rows=[
                ("segment_transitions", {"customer_id": "gone", "segment": "a"}),
                ("segment_transitions", {"customer_id": "kept", "segment": "a"}),
            ],
        )
    )

    assert store.erase({"gone", "gone-device"}) == 1

    assert store.load(["gone", "kept"]) == {"kept": {"n": 2, "due": 6}}
    assert store.links(["gone-device", "other-device"]) == {"other-device": "kept"}
    assert store.due(100) == ["kept"]
    pending = store.pending()
    assert "gone" not in pending.customers and [r["customer_id"] for _, r in pending.rows] == ["kept"]


def test_landing_lines_are_read_in_order_and_a_cut_short_flush_reads_the_same_ones(store):
    def lines(*names: str) -> list[dict]:
        return [{"raw": f'{{"messageId": "{n}"}}', "source_file": "f", "received_at": 1, "customer_id": f"c-{n}"} for n in names]

    assert store.landing_pending(10).rows == []
    store.commit(Commit("s", 1, landing=lines("a", "b", "c")))
    store.commit(Commit("s", 2, landing=lines("d")))
    first = store.landing_pending(2)
    assert (first.seq, [r["customer_id"] for r in first.rows]) == (0, ["c-a", "c-b"])
    store.commit(Commit("s", 3, landing=lines("e")))
    # A crash before landing_flushed: the next flush reads exactly the rows its Delta transaction holds.
    again = store.landing_pending(10)
    assert (again.seq, again.rows, again.upto) == (first.seq, first.rows, first.upto)
    store.landing_flushed(again)
    rest = store.landing_pending(10)
    assert (rest.seq, [r["customer_id"] for r in rest.rows]) == (1, ["c-c", "c-d", "c-e"])
    store.landing_flushed(rest)
    assert store.landing_pending(10).rows == [] and store.landing_pending(10).seq == 2


def test_erase_removes_the_customers_unflushed_landing_lines(store):
    rows = [
        {"raw": "{}", "source_file": "f", "received_at": 1, "customer_id": c, "anonymous_id": a}
        for c, a in (("gone", None), ("kept", "gone-device"), ("kept", None), ("kept", "other"))
    ]
    store.commit(Commit("s", 1, landing=rows))
    store.erase({"gone", "gone-device"})
    assert store.landing_pending(10).rows == [rows[2], rows[3]]
