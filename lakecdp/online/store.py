"""The online state store: per-customer state, seen message ids, identity links and timers, committed atomically with a batch id.

Two adapters behind one interface:
  SqliteStore  the embedded default: one file, no server (standard library `sqlite3`, WAL journal).
  RedisStore   for collector, stream, content API and trigger dispatcher on different hosts.
A commit writes everything a micro-batch changed plus the batch id in one transaction; a
replayed batch (id <= the stored one) is skipped, so it changes nothing.

Besides state, the store holds what Delta (the system of record) has not received yet: the
customers changed since the last flush, the transitions and outbox rows to append, and the live
batches' landing lines bronze and quarantine still need. The stream flushes them to Delta with
application transactions numbered by `flush_seq` and `landing_seq`. Until a flush, those lines
exist only here (the landing file may be gone, the Kafka offset committed): SQLite runs with
synchronous=FULL, so a committed batch survives a power cut, not only a killed process.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

_BATCH = 500  # keys per SQL statement / Redis round trip


@dataclass
class Commit:
    """Everything one micro-batch (or timer tick) changes in the store."""

    stream: str
    batch_id: int
    states: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # None: delete (merged into another key)
    messages: dict[str, int] = field(default_factory=dict)  # message id -> received (µs)
    links: dict[str, str] = field(default_factory=dict)  # anonymous id -> customer id
    link_rows: list[dict[str, Any]] = field(default_factory=list)  # identity_links rows for Delta
    rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (table, row) to append to Delta
    dues: dict[str, int | None] = field(default_factory=dict)  # customer -> next timer (µs) or None
    # The batch's messages an earlier batch brought: kept with the batch id, so that a replay after a
    # crash between this commit and bronze's append leaves the same messages out of bronze.
    seen_ids: list[str] = field(default_factory=list)
    # Live batches: the landing lines bronze and quarantine still need ({raw, source_file, received_at,
    # ids}); the flush turns them into rows with Spark's prepare_batch (lakecdp.online.flow).
    landing: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PendingLanding:
    """Landing lines bronze has not received yet: the first of them, under one flush number."""

    seq: int
    rows: list[dict[str, Any]]
    upto: int  # the store's position of the last row read (what `landing_flushed` forgets)


@dataclass
class Pending:
    """What Delta has not received yet, as of one flush number."""

    seq: int
    customers: list[str]
    rows: list[tuple[str, dict[str, Any]]]
    # The change number of the newest change read: a customer changed again after `pending()` stays dirty.
    changed: int = 0


class StateStore(Protocol):
    def applied(self, stream: str) -> int: ...
    def meta(self, key: str) -> str | None: ...
    def seen_by_last_batch(self, stream: str) -> list[str]: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def load(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]: ...
    def scan(self) -> Iterator[tuple[str, dict[str, Any]]]: ...
    def seen(self, message_ids: Iterable[str], since: int) -> set[str]: ...
    def links(self, anonymous_ids: Iterable[str]) -> dict[str, str]: ...
    def commit(self, commit: Commit) -> bool: ...
    def due(self, until: int) -> list[str]: ...
    def next_due(self) -> int | None: ...
    def pending(self) -> Pending: ...
    def unflushed(self, table: str) -> list[dict[str, Any]]: ...
    def flushed(self, pending: Pending) -> None: ...
    def landing_pending(self, limit: int) -> PendingLanding: ...
    def landing_flushed(self, pending: PendingLanding) -> None: ...
    def forget_messages(self, before: int) -> int: ...
    def replace_all(self, states: dict[str, dict[str, Any]], dues: dict[str, int | None], fingerprint: str) -> None: ...
    def erase(self, ids: set[str]) -> int: ...
    def close(self) -> None: ...


def _mentions(row: dict[str, Any], ids: set[str]) -> bool:
    return any(row.get(column) in ids for column in ("customer_id", "anonymous_id"))


def _message_hash(message_id: str) -> int:
    """A messageId as a 64-bit key: the SQLite table stays an integer B-tree (a 2.4M-event backfill
    spent 50 s inserting text keys). Two ids collide with odds ~n²/2⁶⁵: 1 in 6 million at 2.4M ids."""
    return int.from_bytes(hashlib.blake2b(message_id.encode(), digest_size=8).digest(), "big", signed=True)


# B608, accepted below: those SQL f-strings add `?` placeholders only; every value is bound.
def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class SqliteStore:
    """The embedded store: a SQLite file beside the lake (or wherever `state.path` says)."""

    def __init__(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # One connection shared by the stream's threads: every call holds the lock, so a read never
        # sees another thread's transaction half done.
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.executescript(
            """
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=FULL;
            PRAGMA secure_delete=ON;
            CREATE TABLE IF NOT EXISTS state (id TEXT PRIMARY KEY, body TEXT NOT NULL, due INTEGER);
            CREATE INDEX IF NOT EXISTS state_due ON state(due) WHERE due IS NOT NULL;
            CREATE TABLE IF NOT EXISTS applied (stream TEXT PRIMARY KEY, batch_id INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS messages (h INTEGER PRIMARY KEY, at INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS links (anonymous_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS dirty (id TEXT PRIMARY KEY, changed INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE IF NOT EXISTS outbound (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, body TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS outbound_tbl ON outbound(tbl);
            CREATE TABLE IF NOT EXISTS landing (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            """
        )

    def _one(self, sql: str, params: tuple) -> Any:
        with self._lock:
            row = self._db.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _all(self, sql: str, params: Any = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def applied(self, stream: str) -> int:
        batch_id = self._one("SELECT batch_id FROM applied WHERE stream = ?", (stream,))
        return -1 if batch_id is None else batch_id

    def meta(self, key: str) -> str | None:
        return self._one("SELECT value FROM meta WHERE key = ?", (key,))

    def seen_by_last_batch(self, stream: str) -> list[str]:
        """The ids the last committed batch of `stream` found already seen (for its bronze append on a replay)."""
        return json.loads(self.meta(f"seen:{stream}") or "[]")

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def load(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            for key, body in self._all(f"SELECT id, body FROM state WHERE id IN ({marks})", chunk):  # nosec B608
                found[key] = json.loads(body)
        return found

    def scan(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key, body in self._all("SELECT id, body FROM state ORDER BY id"):
            yield key, json.loads(body)

    def seen(self, message_ids: Iterable[str], since: int) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sorted(set(message_ids))):  # a batch may repeat an id: one placeholder per distinct id
            marks = ",".join("?" * len(chunk))
            by_hash = {_message_hash(i): i for i in chunk}
            found.update(by_hash[r[0]] for r in self._all(f"SELECT h FROM messages WHERE at >= ? AND h IN ({marks})", [since, *by_hash]))  # nosec B608
        return found

    def links(self, anonymous_ids: Iterable[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in _chunks(list(anonymous_ids)):
            marks = ",".join("?" * len(chunk))
            found.update(self._all(f"SELECT anonymous_id, customer_id FROM links WHERE anonymous_id IN ({marks})", chunk))  # nosec B608
        return found

    def commit(self, commit: Commit) -> bool:
        """Apply a batch's changes atomically; False (and nothing written) when the batch was applied before."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if self.applied(commit.stream) >= commit.batch_id:
                    db.execute("ROLLBACK")
                    return False
                for key, state in commit.states.items():
                    if state is None:
                        db.execute("DELETE FROM state WHERE id = ?", (key,))
                    else:
                        due = commit.dues.get(key, state.get("due"))
                        db.execute("INSERT OR REPLACE INTO state VALUES (?, ?, ?)", (key, _dumps(state), due))
                db.executemany(
                    "INSERT OR REPLACE INTO messages VALUES (?, ?)", ((_message_hash(i), at) for i, at in commit.messages.items())
                )
                db.executemany("INSERT OR IGNORE INTO links VALUES (?, ?)", commit.links.items())
                changed = self._next_change()
                db.executemany("INSERT OR REPLACE INTO dirty VALUES (?, ?)", [(k, changed) for k in commit.states])
                rows = [("identity_links", row) for row in commit.link_rows] + commit.rows
                db.executemany("INSERT INTO outbound (tbl, body) VALUES (?, ?)", [(t, _dumps(r)) for t, r in rows])
                db.executemany("INSERT INTO landing (body) VALUES (?)", [(_dumps(r),) for r in commit.landing])
                db.execute("INSERT OR REPLACE INTO applied VALUES (?, ?)", (commit.stream, commit.batch_id))
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"seen:{commit.stream}", _dumps(commit.seen_ids)))
                db.execute("COMMIT")
                return True
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def due(self, until: int) -> list[str]:
        return [r[0] for r in self._all("SELECT id FROM state WHERE due IS NOT NULL AND due <= ? ORDER BY id", (until,))]

    def next_due(self) -> int | None:
        return self._one("SELECT min(due) FROM state WHERE due IS NOT NULL", ())

    def _next_change(self) -> int:
        changed = int(self.meta("changed") or 0) + 1
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('changed', ?)", (str(changed),))
        return changed

    def pending(self) -> Pending:
        with self._lock:
            seq = int(self.meta("flush_seq") or 0)
            customers = [r[0] for r in self._db.execute("SELECT id FROM dirty ORDER BY id")]
            rows = [(t, json.loads(b)) for t, b in self._db.execute("SELECT tbl, body FROM outbound ORDER BY seq")]
            return Pending(seq, customers, rows, int(self.meta("changed") or 0))

    def unflushed(self, table: str) -> list[dict[str, Any]]:
        """The rows for Delta's `table` that no flush has written yet, oldest first (read only)."""
        return [json.loads(body) for (body,) in self._all("SELECT body FROM outbound WHERE tbl = ? ORDER BY seq", (table,))]

    def flushed(self, pending: Pending) -> None:
        """Delta has `pending`: forget it and number the next flush."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for chunk in _chunks(pending.customers):
                    db.execute(f"DELETE FROM dirty WHERE changed <= ? AND id IN ({','.join('?' * len(chunk))})", [pending.changed, *chunk])  # nosec B608
                db.execute("DELETE FROM outbound WHERE seq IN (SELECT seq FROM outbound ORDER BY seq LIMIT ?)", (len(pending.rows),))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('flush_seq', ?)", (str(pending.seq + 1),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def landing_pending(self, limit: int) -> PendingLanding:
        """The oldest landing lines (at most `limit`); a flush cut short reads exactly its rows again."""
        with self._lock:
            seq = int(self.meta("landing_seq") or 0)
            upto = self.meta("landing_upto")
            if upto is None:
                last = self._one("SELECT max(seq) FROM (SELECT seq FROM landing ORDER BY seq LIMIT ?)", (limit,))
                if last is None:
                    return PendingLanding(seq, [], 0)
                upto = str(last)
                self.set_meta("landing_upto", upto)
            rows = [json.loads(b) for (b,) in self._db.execute("SELECT body FROM landing WHERE seq <= ? ORDER BY seq", (int(upto),))]
            return PendingLanding(seq, rows, int(upto))

    def landing_flushed(self, pending: PendingLanding) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM landing WHERE seq <= ?", (pending.upto,))
                db.execute("DELETE FROM meta WHERE key = 'landing_upto'")
                db.execute("INSERT OR REPLACE INTO meta VALUES ('landing_seq', ?)", (str(pending.seq + 1),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def forget_messages(self, before: int) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM messages WHERE at < ?", (before,)).rowcount

    def replace_all(self, states: dict[str, dict[str, Any]], dues: dict[str, int | None], fingerprint: str) -> None:
        """A rebuild from bronze: every state at once, and the declarations it was built for."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                gone = [r[0] for r in db.execute("SELECT id FROM state") if r[0] not in states]
                db.execute("DELETE FROM state")
                db.executemany("INSERT INTO state VALUES (?, ?, ?)", [(k, _dumps(s), dues.get(k, s.get("due"))) for k, s in states.items()])
                changed = self._next_change()
                db.executemany("INSERT OR REPLACE INTO dirty VALUES (?, ?)", [(k, changed) for k in [*states, *gone]])
                db.execute("INSERT OR REPLACE INTO meta VALUES ('fingerprint', ?)", (fingerprint,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def erase(self, ids: set[str]) -> int:
        """Right to erasure: the customers' states, links and not-yet-flushed rows; returns the states deleted."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                deleted = 0
                for chunk in _chunks(sorted(ids)):
                    marks = ",".join("?" * len(chunk))
                    deleted += db.execute(f"DELETE FROM state WHERE id IN ({marks})", chunk).rowcount  # nosec B608
                    db.execute(f"DELETE FROM dirty WHERE id IN ({marks})", chunk)  # nosec B608
                    db.execute(f"DELETE FROM links WHERE anonymous_id IN ({marks}) OR customer_id IN ({marks})", chunk + chunk)  # nosec B608
                doomed = [seq for seq, body in db.execute("SELECT seq, body FROM outbound") if _mentions(json.loads(body), ids)]
                db.executemany("DELETE FROM outbound WHERE seq = ?", [(seq,) for seq in doomed])
                lines = [seq for seq, body in db.execute("SELECT seq, body FROM landing") if _mentions(json.loads(body), ids)]
                db.executemany("DELETE FROM landing WHERE seq = ?", [(seq,) for seq in lines])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            # secure_delete zeroes the freed pages; the checkpoint moves them out of the WAL and empties it,
            # so no copy of the erased state is left in either file.
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return deleted

    def close(self) -> None:
        self._db.close()


class RedisStore:
    """The shared store: redis-py against a Redis server; one MULTI/EXEC per commit.

    Keys live under `prefix`: <p>:s:<id> state, <p>:due (sorted set), <p>:m:<id> seen message
    ids (expiring after the dedupe window), <p>:l (hash of links), <p>:dirty (sorted set: customer ->
    change number), <p>:changed (counter), <p>:out (list), <p>:land (sorted set of live landing lines by
    number, numbered by the counter <p>:landn), <p>:applied (hash stream -> batch id), <p>:meta (hash).
    The client decodes every reply to str; redis-py types replies bytes | str whatever the client, hence the casts.
    """

    def __init__(self, url: str, prefix: str = "lakecdp", message_ttl_s: int = 7 * 86_400) -> None:
        import redis

        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.p, self.ttl = prefix, message_ttl_s
        self.client.ping()

    def applied(self, stream: str) -> int:
        value = self.client.hget(f"{self.p}:applied", stream)
        return -1 if value is None else int(value)

    def meta(self, key: str) -> str | None:
        return cast("str | None", self.client.hget(f"{self.p}:meta", key))

    def seen_by_last_batch(self, stream: str) -> list[str]:
        """The ids the last committed batch of `stream` found already seen (for its bronze append on a replay)."""
        return json.loads(self.meta(f"seen:{stream}") or "[]")

    def set_meta(self, key: str, value: str) -> None:
        self.client.hset(f"{self.p}:meta", key, value)

    def load(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(ids)):
            for key, body in zip(chunk, self.client.mget([f"{self.p}:s:{k}" for k in chunk])):
                if body is not None:
                    found[key] = json.loads(body)
        return found

    def scan(self) -> Iterator[tuple[str, dict[str, Any]]]:
        prefix = f"{self.p}:s:"
        keys = sorted(k[len(prefix) :] for k in self.client.scan_iter(f"{prefix}*", count=1000))
        for chunk in _chunks(keys):
            yield from self.load(chunk).items()

    def seen(self, message_ids: Iterable[str], since: int) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(list(message_ids)):
            for key, at in zip(chunk, self.client.mget([f"{self.p}:m:{k}" for k in chunk])):
                if at is not None and int(at) >= since:
                    found.add(key)
        return found

    def links(self, anonymous_ids: Iterable[str]) -> dict[str, str]:
        ids = list(anonymous_ids)
        if not ids:
            return {}
        values = cast("list[str | None]", self.client.hmget(f"{self.p}:l", ids))
        return {k: v for k, v in zip(ids, values) if v is not None}

    def commit(self, commit: Commit) -> bool:
        import redis

        applied_key = f"{self.p}:applied"
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    # WATCH makes the check and the writes one atomic step against a concurrent committer.
                    pipe.watch(applied_key)
                    current = pipe.hget(applied_key, commit.stream)
                    if current is not None and int(current) >= commit.batch_id:
                        pipe.unwatch()
                        return False
                    changed = self.client.incr(f"{self.p}:changed")  # before MULTI: the writes need its value
                    first = self.client.incrby(f"{self.p}:landn", len(commit.landing)) - len(commit.landing) + 1
                    pipe.multi()
                    self._write(pipe, commit, changed, first)
                    pipe.hset(applied_key, commit.stream, commit.batch_id)
                    pipe.hset(f"{self.p}:meta", f"seen:{commit.stream}", _dumps(commit.seen_ids))
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def _write(self, pipe, commit: Commit, changed: int, landing_first: int = 0) -> None:
        for key, state in commit.states.items():
            if state is None:
                pipe.delete(f"{self.p}:s:{key}")
                pipe.zrem(f"{self.p}:due", key)
                continue
            pipe.set(f"{self.p}:s:{key}", _dumps(state))
            due = commit.dues.get(key, state.get("due"))
            if due is None:
                pipe.zrem(f"{self.p}:due", key)
            else:
                pipe.zadd(f"{self.p}:due", {key: due})
        for message_id, at in commit.messages.items():
            pipe.set(f"{self.p}:m:{message_id}", at, ex=self.ttl)
        for anonymous_id, customer_id in commit.links.items():
            pipe.hsetnx(f"{self.p}:l", anonymous_id, customer_id)
        if commit.states:
            pipe.zadd(f"{self.p}:dirty", {key: changed for key in commit.states})
        rows = [("identity_links", row) for row in commit.link_rows] + commit.rows
        if rows:
            pipe.rpush(f"{self.p}:out", *[_dumps([t, r]) for t, r in rows])
        if commit.landing:  # a sorted set by number: a flush and an erasure each remove exactly their rows
            pipe.zadd(f"{self.p}:land", {_dumps({**r, "_n": landing_first + i}): landing_first + i for i, r in enumerate(commit.landing)})

    def due(self, until: int) -> list[str]:
        return sorted(cast("list[str]", self.client.zrangebyscore(f"{self.p}:due", "-inf", until)))

    def next_due(self) -> int | None:
        first = self.client.zrange(f"{self.p}:due", 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    def pending(self) -> Pending:
        seq = int(self.meta("flush_seq") or 0)
        dirty = cast("list[tuple[str, float]]", self.client.zrange(f"{self.p}:dirty", 0, -1, withscores=True))
        rows = [tuple(json.loads(item)) for item in self.client.lrange(f"{self.p}:out", 0, -1)]
        return Pending(seq, sorted(key for key, _ in dirty), rows, int(max((score for _, score in dirty), default=0)))

    def unflushed(self, table: str) -> list[dict[str, Any]]:
        rows = (json.loads(item) for item in self.client.lrange(f"{self.p}:out", 0, -1))
        return [row for name, row in rows if name == table]

    def flushed(self, pending: Pending) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            # Only what the flush read: a customer changed since has a higher change number and stays.
            pipe.zremrangebyscore(f"{self.p}:dirty", "-inf", pending.changed)
            pipe.ltrim(f"{self.p}:out", len(pending.rows), -1)
            pipe.hset(f"{self.p}:meta", "flush_seq", pending.seq + 1)
            pipe.execute()

    def landing_pending(self, limit: int) -> PendingLanding:
        """The oldest landing lines (at most `limit`); a flush cut short reads exactly its rows again."""
        seq = int(self.meta("landing_seq") or 0)
        upto = self.meta("landing_upto")
        if upto is None:
            first = self.client.zrange(f"{self.p}:land", 0, limit - 1, withscores=True)
            if not first:
                return PendingLanding(seq, [], 0)
            upto = str(int(first[-1][1]))
            self.set_meta("landing_upto", upto)
        lines = cast("list[str]", self.client.zrangebyscore(f"{self.p}:land", "-inf", int(upto)))
        rows = [json.loads(item) for item in lines]
        return PendingLanding(seq, [{k: v for k, v in r.items() if k != "_n"} for r in rows], int(upto))

    def landing_flushed(self, pending: PendingLanding) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(f"{self.p}:land", "-inf", pending.upto)
            pipe.hdel(f"{self.p}:meta", "landing_upto")
            pipe.hset(f"{self.p}:meta", "landing_seq", pending.seq + 1)
            pipe.execute()

    def forget_messages(self, before: int) -> int:
        return 0  # message ids expire on their own (TTL = the dedupe window)

    def replace_all(self, states: dict[str, dict[str, Any]], dues: dict[str, int | None], fingerprint: str) -> None:
        old = {k for k, _ in self.scan()}
        with self.client.pipeline(transaction=True) as pipe:
            for key in old - set(states):
                pipe.delete(f"{self.p}:s:{key}")
            pipe.delete(f"{self.p}:due")
            changed = self.client.incr(f"{self.p}:changed")
            self._write(pipe, Commit(stream="", batch_id=0, states=dict(states), dues=dues), changed)
            if old - set(states):
                pipe.zadd(f"{self.p}:dirty", {key: changed for key in old - set(states)})
            pipe.hset(f"{self.p}:meta", "fingerprint", fingerprint)
            pipe.execute()

    def erase(self, ids: set[str]) -> int:
        links = self.client.hgetall(f"{self.p}:l")
        gone_links = [a for a, c in links.items() if a in ids or c in ids]
        outbound = cast("list[str]", self.client.lrange(f"{self.p}:out", 0, -1))
        landing = cast("list[str]", self.client.zrange(f"{self.p}:land", 0, -1))
        with self.client.pipeline(transaction=True) as pipe:
            for key in sorted(ids):
                pipe.delete(f"{self.p}:s:{key}")
                pipe.zrem(f"{self.p}:due", key)
                pipe.zrem(f"{self.p}:dirty", key)
            if gone_links:
                pipe.hdel(f"{self.p}:l", *gone_links)
            for item in outbound:
                if _mentions(json.loads(item)[1], ids):
                    pipe.lrem(f"{self.p}:out", 0, item)
            for item in landing:
                if _mentions(json.loads(item), ids):
                    pipe.zrem(f"{self.p}:land", item)
            results = pipe.execute()
        return sum(results[0 : 3 * len(ids) : 3])

    def close(self) -> None:
        self.client.close()


def open_store(settings: Any, lake_root: str) -> StateStore:
    """The store `state:` in conf names: sqlite (default, <lake root>/_state/online.sqlite) or redis."""
    if settings.backend == "redis":
        return RedisStore(settings.redis_url, prefix=settings.redis_prefix, message_ttl_s=int(settings.dedupe_window.total_seconds()))
    if settings.path is None and "://" in lake_root and not lake_root.startswith("file://"):
        raise ValueError(
            f"state.path: the lake is at {lake_root}, and the embedded state store needs a local file. "
            "Fix: set state.path to a local file (e.g. /var/lib/lakecdp/online.sqlite) or use state.backend: redis."
        )
    path = settings.path or f"{lake_root.removeprefix('file://').rstrip('/')}/_state/online.sqlite"
    return SqliteStore(path)


def open_store_if_online(settings: Any, lake_root: str) -> StateStore | None:
    """The state store when the stream keeps one (state.mode: online), else None."""
    return open_store(settings.state, lake_root) if settings.state.mode == "online" else None
