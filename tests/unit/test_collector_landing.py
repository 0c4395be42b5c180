"""The landing writer: durable before the ack, group commit, atomic publish, crash recovery."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lakecdp.clock import FrozenClock
from lakecdp.collector.landing import LandingUnavailable, LandingWriter, published_name, recover_in_progress


def line(n: int, pad: int = 0) -> bytes:
    return (json.dumps({"messageId": f"m-{n}", "pad": "x" * pad}) + "\n").encode()


def parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.jsonl"))


def ids_in(folder: Path) -> list[str]:
    return [json.loads(text)["messageId"] for path in parts(folder) for text in path.read_text().splitlines()]


def test_lines_are_in_the_in_progress_file_when_submit_resolves(tmp_path):
    writer = LandingWriter(tmp_path, roll_bytes=1 << 20, roll_seconds=3600)
    writer.start()
    writer.submit([line(1), line(2)]).result(timeout=5)
    (in_progress,) = tmp_path.glob(".inprogress-*.tmp")
    assert in_progress.read_bytes() == line(1) + line(2)
    assert parts(tmp_path) == [], "nothing is published before a roll"
    writer.close()
    assert ids_in(tmp_path) == ["m-1", "m-2"] and not list(tmp_path.glob(".inprogress-*"))


def test_files_roll_by_size(tmp_path):
    writer = LandingWriter(tmp_path, roll_bytes=2_000, roll_seconds=3600)
    writer.start()
    for n in range(10):
        writer.submit([line(n, pad=400)]).result(timeout=5)
    writer.close()
    # ~430-byte lines: a file rolls at the commit that takes it past 2,000 bytes.
    assert [len(path.read_text().splitlines()) for path in parts(tmp_path)] == [5, 5]
    assert ids_in(tmp_path) == [f"m-{n}" for n in range(10)]


def test_an_idle_file_is_published_once_the_clock_passes_roll_seconds(tmp_path):
    clock = FrozenClock(datetime(2026, 11, 2, 10, 0, tzinfo=UTC))
    writer = LandingWriter(tmp_path, roll_bytes=1 << 20, roll_seconds=60, clock=clock)
    writer.start()
    writer.submit([line(1)]).result(timeout=5)
    clock.advance(timedelta(seconds=59))
    writer.submit([line(2)]).result(timeout=5)  # the writer has looked at the clock at 59 s
    assert parts(tmp_path) == [], "not before roll_seconds of the writer's clock"
    clock.advance(timedelta(seconds=1))
    give_up = time.monotonic() + 30  # only keeps a broken writer from hanging the suite
    while not parts(tmp_path):
        assert time.monotonic() < give_up, "the writer did not wake up when its clock reached the roll"
        time.sleep(0.01)
    assert ids_in(tmp_path) == ["m-1", "m-2"], "no new request needed: the writer wakes up to roll"
    assert not list(tmp_path.glob(".inprogress-*"))
    writer.close()


def test_no_partial_file_is_ever_visible_under_a_final_name(tmp_path):
    """A reader polling the folder while the writer rolls must only see complete, final files."""
    writer = LandingWriter(tmp_path, roll_bytes=3_000, roll_seconds=3600)
    writer.start()
    seen: dict[str, bytes] = {}
    stop = threading.Event()
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            for path in parts(tmp_path):
                data = path.read_bytes()
                if not data.endswith(b"\n"):
                    problems.append(f"{path.name} ends mid-line")
                if path.name in seen and seen[path.name] != data:
                    problems.append(f"{path.name} changed after it was published")
                seen.setdefault(path.name, data)

    watcher = threading.Thread(target=reader)
    watcher.start()
    for n in range(300):
        writer.submit([line(n, pad=50)]).result(timeout=5)
    writer.close()
    stop.set()
    watcher.join()
    assert problems == []
    assert len(seen) >= 5 and len(parts(tmp_path)) == len(list(tmp_path.iterdir()))
    assert ids_in(tmp_path) == [f"m-{n}" for n in range(300)]


def test_concurrent_requests_share_one_fsync(tmp_path):
    calls = []

    def slow_fsync(fd: int) -> None:
        calls.append(fd)
        time.sleep(0.02)
        os.fsync(fd)

    writer = LandingWriter(tmp_path, roll_bytes=1 << 20, roll_seconds=3600, fsync=slow_fsync)
    writer.start()
    barrier = threading.Barrier(40)

    def request(n: int) -> None:
        barrier.wait()
        writer.submit([line(n)]).result(timeout=10)

    threads = [threading.Thread(target=request, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    assert writer.stats.lines == 40
    assert writer.stats.fsyncs <= 10, f"{writer.stats.fsyncs} fsyncs for 40 requests: no group commit"
    assert sorted(ids_in(tmp_path)) == sorted(f"m-{n}" for n in range(40))


def test_a_failed_fsync_fails_the_request_and_keeps_acknowledged_lines(tmp_path):
    fail = [0]

    def flaky_fsync(fd: int) -> None:
        if fail[0]:
            fail[0] -= 1
            raise OSError(5, "Input/output error")
        os.fsync(fd)

    writer = LandingWriter(tmp_path, roll_bytes=1 << 20, roll_seconds=3600, fsync=flaky_fsync)
    writer.start()
    writer.submit([line(1)]).result(timeout=5)
    fail[0] = 1
    with pytest.raises(LandingUnavailable):
        writer.submit([line(2)]).result(timeout=5)
    writer.submit([line(3)]).result(timeout=5)
    fail[0] = 2  # the write fails, and so does trimming the file afterwards
    with pytest.raises(LandingUnavailable):
        writer.submit([line(4)]).result(timeout=5)
    writer.close()
    assert sorted(ids_in(tmp_path)) == ["m-1", "m-3"], "acknowledged lines survive, failed ones are cut off"
    assert not list(tmp_path.glob(".inprogress-*")), "close publishes a file it could not trim earlier"


def test_submit_after_close_is_refused(tmp_path):
    writer = LandingWriter(tmp_path, roll_bytes=1 << 20, roll_seconds=3600)
    writer.start()
    writer.close()
    with pytest.raises(LandingUnavailable):
        writer.submit([line(1)])


def test_recovery_publishes_a_dead_writers_file_cut_to_complete_lines(tmp_path):
    dead = tmp_path / ".inprogress-20261101T000000000Z-dead.tmp"
    dead.write_bytes(line(1) + line(2) + b'{"messageId": "m-3", "pa')
    empty = tmp_path / ".inprogress-20261101T000000001Z-empty.tmp"
    empty.write_bytes(b"")
    writer = LandingWriter(tmp_path, roll_bytes=1 << 20, roll_seconds=3600)
    recovered = writer.start()
    writer.close()
    assert recovered == [published_name(dead)]
    assert published_name(dead).read_bytes() == line(1) + line(2)
    assert not empty.exists() and not list(tmp_path.glob(".inprogress-*"))


def test_recovery_leaves_a_live_writers_file_alone(tmp_path):
    live = tmp_path / ".inprogress-20261101T000000000Z-live.tmp"
    live.write_bytes(line(1))
    fd = os.open(live, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as the other collector holding it would
    try:
        assert recover_in_progress(tmp_path) == []
        assert live.exists() and parts(tmp_path) == []
    finally:
        os.close(fd)
    assert recover_in_progress(tmp_path) == [published_name(live)]
