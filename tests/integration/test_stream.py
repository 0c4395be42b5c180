"""The events stream: exactly once through kill -9 inside a micro-batch."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.testing import assertDataFrameEqual

from lakecdp.clock import FrozenClock
from lakecdp.config import load_settings
from lakecdp.generate import GeneratorSettings, write_dataset
from lakecdp.identity.resolved import resolved_events
from lakecdp.lake import open_lake
from lakecdp.profiles import build_profile_features
from lakecdp.segments import evaluate_segments, segments_of
from lakecdp.stream import run_stream
from tests.topics import create_topic, produce_lines

pytestmark = pytest.mark.integration

GENERATED = GeneratorSettings(customers=40, days=5, seed=11)
BAD_LINES = (
    '{"type": "track", "messageId": "bad-1"\n{"type": "track", "event": "X", "messageId": "bad-2", "timestamp": "soon", "userId": "u"}\n'
)


def stream_command(lake: Path, source: Path | None) -> list[str]:
    """The stream CLI on `source` (None: the Kafka topic its settings name)."""
    return [
        sys.executable,
        "-m",
        "lakecdp.cli",
        "stream",
        "run",
        "--until-idle",
        "--lake",
        str(lake),
        *(["--source", str(source)] if source is not None else []),
        "--checkpoint",
        str(lake / "_checkpoints" / "events"),
        "--as-of",
        GENERATED.end.isoformat(),
    ]


def run_and_kill(command: list[str], env: dict[str, str], lake: Path, commits: int, log: Path) -> int:
    """Run the stream in its own process group and SIGKILL the whole group (JVM included) as soon as
    `commits` Delta commits have landed in `lake` after the first micro-batch: a point of the work, not of
    the clock, so the kill lands in the same place on any machine. Returns the exit code, -9 when killed."""

    def landed() -> int:
        return sum(1 for _ in lake.glob("*/_delta_log/*.json"))

    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        baseline = None
        while process.poll() is None:
            if baseline is None and (lake / "_checkpoints" / "events" / "commits" / "0").exists():
                baseline = landed()
            if baseline is not None and landed() >= baseline + commits:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return -9
            time.sleep(0.01)
        return process.returncode  # it ended first: the caller's assert says no run was killed


@pytest.fixture(scope="module", params=["files", pytest.param("kafka", marks=pytest.mark.extended)])
def crashed_and_restarted(request, spark, tmp_path_factory):
    """The stream CLI killed inside a batch, then run to the end: from landing files, and from a Kafka topic.

    The restart runs in this process (run_stream on the same settings, lake and checkpoint, as the CLI
    does): a second CLI process would only add a cold JVM's start-up to the test."""
    root = tmp_path_factory.mktemp(f"stream-{request.param}")
    summary = write_dataset(GENERATED, root / "landing", events_per_file=500)
    (root / "landing" / "events" / "zz-bad.jsonl").write_text(BAD_LINES)
    env = {**os.environ, "LAKECDP__STREAM__MAX_FILES_PER_TRIGGER": "1", "LAKECDP__SPARK__SHUFFLE_PARTITIONS": "2"}
    source: Path | None = root / "landing" / "events"
    if request.param == "kafka":
        # The same lines as records of a 2-partition topic; batches of 500 records, as of one file above.
        bootstrap, topic = request.getfixturevalue("kafka_bootstrap"), "events-kill-test"
        create_topic(bootstrap, topic)
        produce_lines(bootstrap, topic, [line for path in sorted(source.glob("*.jsonl")) for line in path.read_bytes().splitlines()])
        env |= {
            "LAKECDP__STREAM__SOURCE": "kafka",
            "LAKECDP__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "LAKECDP__KAFKA__TOPIC": topic,
            "LAKECDP__KAFKA__MAX_OFFSETS_PER_TRIGGER": "500",
        }
        source = None
    command = stream_command(root / "lake", source)
    # The micro-batches decide in the state store in well under a second; the Delta writes (bronze, customers,
    # profiles, membership, timers, outbox...) come with the flush, about 20 commits. The kill lands after a
    # seeded random number of them, in the middle of the flush, where a crash can leave Delta behind the store.
    rng = random.Random(20261123)
    outcomes = [run_and_kill(command, env, root / "lake", rng.randint(2, 16), root / "stream.log")]
    if source is not None:
        add_old_backlog(source)
    settings = load_settings(env={key: value for key, value in env.items() if key.startswith("LAKECDP__")})
    lake = open_lake(spark, settings.lake, root=str(root / "lake"))
    checkpoint = str(root / "lake" / "_checkpoints" / "events")
    run_stream(
        spark, lake, settings, source=None if source is None else str(source), checkpoint=checkpoint, clock=FrozenClock(GENERATED.end)
    )
    return root, summary, outcomes, request.param


def add_old_backlog(events_dir: Path) -> None:
    """A backlog moved in with its old modification time (cp -p, rsync -a), a month before the files the stream
    has seen. Spark's file source ignores files older than `maxFileAge` (7 days) before the newest file it has
    seen; the stream must read it like any other."""
    generated = write_dataset(GeneratorSettings(customers=8, days=2, seed=5), events_dir.parent / "backlog", events_per_file=10_000)
    [backlog] = generated.files
    moved = events_dir / "part-99999.jsonl"
    moved.write_bytes(backlog.read_bytes())
    month_ago = (events_dir / "part-00000.jsonl").stat().st_mtime - 30 * 86400
    os.utime(moved, (month_ago, month_ago))


def input_message_ids(events_dir: Path) -> list[str]:
    import json

    ids = []
    for path in sorted(events_dir.glob("part-*.jsonl")):
        ids += [json.loads(line)["messageId"] for line in path.read_text().splitlines()]
    return ids


def test_bronze_equals_input_exactly_after_kills(crashed_and_restarted):
    root, summary, outcomes, source = crashed_and_restarted
    assert -9 in outcomes, "no run was killed: the test did not exercise a crash"
    rows = DeltaTable(str(root / "lake" / "events")).to_pyarrow_table(columns=["message_id", "source_file"])
    bronze = rows.column("message_id").to_pylist()
    origins = {path.split(":")[0] for path in rows.column("source_file").to_pylist()}
    assert origins == ({"kafka"} if source == "kafka" else {"file"})
    expected = input_message_ids(root / "landing" / "events")
    assert len(bronze) == len(set(bronze)), "duplicates in bronze"
    assert sorted(bronze) == sorted(expected)
    quarantine = DeltaTable(str(root / "lake" / "quarantine")).to_pyarrow_table(columns=["reason"]).column(0).to_pylist()
    assert sorted(quarantine) == ["not a JSON object", "timestamp is not ISO-8601"]


def test_profiles_and_membership_equal_a_batch_recompute(crashed_and_restarted, spark):
    root, *_ = crashed_and_restarted
    settings = load_settings(env={})
    lake = open_lake(spark, settings.lake, root=str(root / "lake"))
    events = resolved_events(lake)
    expected_profiles = build_profile_features(events, GENERATED.end)
    assertDataFrameEqual(lake.read("profile_features"), expected_profiles, checkRowOrder=False)
    segments = segments_of(settings)
    expected_members = (
        evaluate_segments(events, expected_profiles, segments, GENERATED.end, customers=lake.read("customers"))
        .filter("is_member")
        .select("segment", "customer_id")
    )
    assertDataFrameEqual(lake.read("segment_membership").select("segment", "customer_id"), expected_members, checkRowOrder=False)


def test_online_state_equals_a_batch_recompute_after_kills(crashed_and_restarted, spark):
    from lakecdp.online.flow import OnlineState
    from lakecdp.online.reconcile import reconcile
    from lakecdp.online.store import open_store

    root, *_ = crashed_and_restarted
    settings = load_settings(env={})
    lake = open_lake(spark, settings.lake, root=str(root / "lake"))
    online = OnlineState(lake, settings, open_store(settings.state, lake.root), segments_of(settings))
    result = reconcile(lake, online, GENERATED.end)
    assert result.customers > 0 and [str(d) for d in result.differences] == []
