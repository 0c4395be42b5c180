"""One customer's profile over time: what changed in `profile_features`, when, under which writer's
batch, and which of their events arrived in between.

Delta keeps every version of the table, and each commit names its operation and, for the stream and
the jobs, its application transaction (`txn`: the query or flush id and the batch number), so the
history needs no change feed: the customer's row is read at each of the table's recent versions,
consecutive rows are compared column by column (`as_of`, the evaluation instant, is shown, not
compared), and the customer's bronze events taken between two rows' evaluation instants are the ones
that changed it (or time did, for windowed counts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import functions as F

from lakecdp.lake import Lake
from lakecdp.lake.files import read_text

TABLE = "profile_features"
NOT_COMPARED = ("customer_id", "as_of")
EVENTS_PER_CHANGE = 10


@dataclass(frozen=True)
class Commit:
    version: int
    committed_at: datetime
    operation: str
    batch: str | None  # "<app id>#<version>" of the writer's transaction, when it had one


@dataclass
class ProfileChange:
    commit: Commit
    as_of: datetime | None
    changes: dict[str, tuple[Any, Any]]  # column -> (before, after); before is None for the first row seen
    events: list[tuple[datetime, str]] = field(default_factory=list)  # (event time, name) received since the previous change
    more_events: int = 0


def commit_of(lake: Lake, version: int) -> Commit:
    """A profile_features commit as its log entry states it (engine-neutral: the JSON of the Delta log)."""
    text = read_text(f"{lake.path(TABLE)}/_delta_log/{version:020d}.json", lake.storage_options)
    actions = [json.loads(line) for line in text.splitlines() if line.strip()]
    info: dict[str, Any] = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
    txn = next((a["txn"] for a in actions if "txn" in a), None)
    return Commit(
        version=version,
        committed_at=datetime.fromtimestamp(info.get("timestamp", 0) / 1000, tz=UTC),
        operation=str(info.get("operation", "?")),
        batch=f"{txn['appId']}#{txn['version']}" if txn else None,
    )


def profile_history(lake: Lake, customer_id: str, *, versions: int = 20) -> list[ProfileChange]:
    """The customer's profile changes over the table's last `versions` versions, oldest first."""
    if not lake.exists(TABLE):
        return []
    newest = lake.version(TABLE)
    changes: list[ProfileChange] = []
    previous: dict[str, Any] | None = None
    for version in range(max(0, newest - versions + 1), newest + 1):
        row = lake.read(TABLE, version=version).filter(F.col("customer_id") == customer_id).first()
        current = None if row is None else row.asDict(recursive=True)
        if current is None or (previous is not None and _compared(current) == _compared(previous)):
            previous = current if current is not None else previous
            continue
        changed = {c: (None if previous is None else previous.get(c), v) for c, v in _compared(current).items()}
        if previous is not None:
            changed = {c: pair for c, pair in changed.items() if pair[0] != pair[1]}
        changes.append(ProfileChange(commit_of(lake, version), current.get("as_of"), changed))
        previous = current
    _attach_events(lake, customer_id, changes)
    return changes


def _compared(row: dict[str, Any]) -> dict[str, Any]:
    return {c: v for c, v in row.items() if c not in NOT_COMPARED}


def _attach_events(lake: Lake, customer_id: str, changes: list[ProfileChange]) -> None:
    """Each change gets the customer's events taken after the previous change's evaluation instant
    (`as_of`) and up to its own: the events that row was computed from and the previous one was not."""
    if not changes or not lake.exists("events"):
        return
    instants = [change.as_of or change.commit.committed_at for change in changes]
    theirs = (F.col("customer_id") == customer_id) | (F.col("user_id") == customer_id)
    rows = (
        lake.read("events")
        .filter(theirs & (F.col("received_at") <= F.lit(max(instants)).cast("timestamp")))
        .select("received_at", "timestamp", "event", "type")
        .orderBy("received_at", "timestamp")
        .collect()
    )
    start: datetime | None = None
    for change, instant in zip(changes, instants):
        end = _utc(instant)
        inside = [r for r in rows if (start is None or _utc(r.received_at) > start) and _utc(r.received_at) <= end]
        change.events = [(_utc(r.timestamp), r.event or r.type) for r in inside[-EVENTS_PER_CHANGE:]]
        change.more_events = max(len(inside) - EVENTS_PER_CHANGE, 0)
        start = end


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
