"""Landing writer: accepted events -> JSON-lines files in the landing zone, on disk before the ack.

A file's life:
  .inprogress-<ts>-<id>.tmp   appended to and fsynced once per commit group; flock'ed by its writer
  part-<ts>-<id>.jsonl        published by one atomic rename when big or old enough (or at shutdown)
Spark's file source skips names starting with "." and the stream globs *.jsonl only, so no
reader ever sees a file that is still growing under its final name.

Group commit: requests queue their lines; one thread writes everything queued and fsyncs
once, then acknowledges all of those requests together. While it fsyncs, new requests
queue up for the next round, so the fsync rate stays bounded however many requests arrive.

A writer killed at any instant leaves at most its in-progress file behind, holding every
acknowledged line (fsynced) and maybe an unacknowledged tail; the next writer to start on
the folder publishes it (cut to its last complete line). The flock tells a live writer's
file from a dead one's, so two collectors may share a folder.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lakecdp.clock import Clock, SystemClock

log = logging.getLogger(__name__)

IN_PROGRESS_PREFIX = ".inprogress-"
IN_PROGRESS_SUFFIX = ".tmp"
PART_PREFIX = "part-"
PART_SUFFIX = ".jsonl"
# Landing files hold customer data (identify traits): owner and group only.
FILE_MODE = 0o640
# With no open file nothing is due: the writer thread still looks again this often.
IDLE_CHECK_SECONDS = 3600.0


class Publisher(Protocol):
    """Where landed lines go next (Kafka), acknowledged before the senders are."""

    def publish(self, lines: Sequence[bytes]) -> None: ...

    def close(self) -> None: ...


class LandingUnavailable(RuntimeError):
    """The writer cannot take lines (closed, or the disk failed): the sender should retry later."""


@dataclass
class WriterStats:
    commits: int = 0
    fsyncs: int = 0
    lines: int = 0
    bytes: int = 0
    published: int = 0
    recovered: int = 0
    failed_commits: int = 0


class _OpenFile:
    def __init__(self, fd: int, path: Path, opened_at: float) -> None:
        self.fd, self.path, self.opened_at, self.size = fd, path, opened_at, 0


class LandingWriter:
    """Appends lines to the landing folder; `submit` resolves once they are fsynced."""

    def __init__(
        self,
        directory: str | Path,
        *,
        roll_bytes: int,
        roll_seconds: float,
        clock: Clock | None = None,
        fsync: Callable[[int], None] = os.fsync,
        publisher: Publisher | None = None,
    ) -> None:
        """`publisher.publish(lines)` runs once a commit group is fsynced, before its requests are
        acknowledged (Kafka: lakecdp.collector.publish); if it raises, those requests are told to retry.
        `clock` names the files and times the roll (a FrozenClock moved past roll_seconds rolls the file)."""
        self.directory = Path(directory)
        self._publisher = publisher
        self.roll_bytes, self.roll_seconds = roll_bytes, roll_seconds
        self.clock = clock or SystemClock()
        self._fsync = fsync
        self._cond = threading.Condition()
        self._wake = threading.Event()  # set by submit and close: the writer thread waits on it and on the clock
        self._pending: list[tuple[Sequence[bytes], Future]] = []
        self._state = "new"
        self._orphaned = False
        self._file: _OpenFile | None = None
        self._thread: threading.Thread | None = None
        self.stats = WriterStats()

    # -- public API -----------------------------------------------------------------------

    def start(self) -> list[Path]:
        """Publish what a dead writer left in progress, then start committing; returns the recovered files."""
        self.directory.mkdir(parents=True, exist_ok=True)
        recovered = recover_in_progress(self.directory, fsync=self._fsync)
        self.stats.recovered = len(recovered)
        with self._cond:
            if self._state != "new":
                raise RuntimeError("a LandingWriter starts once")
            self._state = "running"
        self._thread = threading.Thread(target=self._run, name="lakecdp-landing-writer", daemon=True)
        self._thread.start()
        return recovered

    def submit(self, lines: Sequence[bytes]) -> Future:
        """Queue newline-terminated lines; the future resolves when they are on disk."""
        future: Future = Future()
        # Running from the start: a request that goes away does not un-write its lines.
        future.set_running_or_notify_cancel()
        if not lines:
            future.set_result(None)
            return future
        with self._cond:
            if self._state != "running":
                raise LandingUnavailable(f"the landing writer is {self._state}")
            self._pending.append((lines, future))
            self._wake.set()
        return future

    async def write(self, lines: Sequence[bytes]) -> None:
        """Await `submit` from the event loop (the fsync happens on the writer thread)."""
        await asyncio.wrap_future(self.submit(lines))

    def close(self, timeout: float | None = 30.0) -> None:
        """Commit what is queued, publish the open file and stop."""
        with self._cond:
            if self._state == "running":
                self._state = "closing"
                self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise LandingUnavailable(f"the landing writer did not stop within {timeout} s")
        if self._publisher is not None:
            self._publisher.close()
        if self._orphaned:
            # Files this writer gave up on after a failed write: publish them now if the disk lets us.
            try:
                recover_in_progress(self.directory, fsync=self._fsync)
            except OSError as exc:
                log.error("could not publish abandoned landing files (%s); the next start will", type(exc).__name__)

    # -- the commit thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    ready = self._pending or self._state != "running" or self._roll_due()
                    if not ready:
                        self._wake.clear()  # under the lock: a submit after this sets it again
                        wait = self._seconds_to_roll()
                    else:
                        group, self._pending = self._pending, []
                        stopping = self._state == "closing"
                if not ready:
                    # Until a submit or close, or the clock reaches the open file's roll (re-checked hourly without one).
                    self.clock.wait(IDLE_CHECK_SECONDS if wait is None else wait, self._wake)
                    continue
                if group:
                    self._commit(group)
                if self._file is not None and (stopping or self._roll_due()):
                    self._publish()
                if stopping:
                    with self._cond:
                        self._state = "closed"
                    return
        except BaseException as exc:  # never leave a request waiting on a dead thread
            log.exception("landing writer stopped unexpectedly")
            with self._cond:
                self._state = "failed"
                group, self._pending = self._pending, []
                self._cond.notify_all()
            for _, future in group:
                future.set_exception(LandingUnavailable(f"landing writer failed: {type(exc).__name__}"))
            raise

    def _roll_due(self) -> bool:
        if self._file is None:
            return False
        return self._file.size >= self.roll_bytes or self.clock.monotonic() - self._file.opened_at >= self.roll_seconds

    def _seconds_to_roll(self) -> float | None:
        if self._file is None:
            return None
        return max(0.0, self._file.opened_at + self.roll_seconds - self.clock.monotonic())

    def _commit(self, group: list[tuple[Sequence[bytes], Future]]) -> None:
        data = b"".join(line for lines, _ in group for line in lines)
        try:
            if self._file is None:
                self._file = self._open()
            _write_all(self._file.fd, data)
            self._fsync(self._file.fd)
        except OSError as exc:
            self.stats.failed_commits += 1
            log.error("landing write failed (%s): %d requests told to retry", type(exc).__name__, len(group))
            for _, future in group:
                future.set_exception(LandingUnavailable(f"could not write the landing file: {exc.strerror or exc}"))
            self._salvage()
            return
        self._file.size += len(data)
        self.stats.commits += 1
        self.stats.fsyncs += 1
        self.stats.lines += sum(len(lines) for lines, _ in group)
        self.stats.bytes += len(data)
        if self._publisher is not None:
            try:
                self._publisher.publish([line for lines, _ in group for line in lines])
            except Exception as exc:  # noqa: BLE001 - on disk, but not where the stream reads: the senders retry
                self.stats.failed_commits += 1
                log.error("landed but not published (%s): %d requests told to retry", exc, len(group))
                for _, future in group:
                    future.set_exception(LandingUnavailable(f"stored but not published: {exc}"))
                return
        for _, future in group:
            future.set_result(None)

    def _open(self) -> _OpenFile:
        for _ in range(3):
            stamp = self.clock.now().strftime("%Y%m%dT%H%M%S%f")[:-3] + "Z"
            path = self.directory / f"{IN_PROGRESS_PREFIX}{stamp}-{uuid.uuid4().hex}{IN_PROGRESS_SUFFIX}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Between create and flock a recovering writer may have taken the (empty) file
            # away; only a file still at its name, under our lock, is ours.
            if _same_file(path, fd):
                _fsync_dir(self.directory)
                return _OpenFile(fd, path, self.clock.monotonic())
            os.close(fd)
        raise OSError(f"could not open an in-progress file in {self.directory}")

    def _publish(self) -> None:
        handle, self._file = self._file, None
        if handle is None:
            raise RuntimeError("_publish with no open landing file")
        try:
            if handle.size == 0:
                handle.path.unlink()
            else:
                final = published_name(handle.path)
                # Renamed while still locked, so no recovering writer can race us for it.
                os.rename(handle.path, final)
                self.stats.published += 1
            _fsync_dir(self.directory)
        except OSError as exc:
            log.error("could not publish a landing file (%s); it will be recovered at the next start", type(exc).__name__)
        finally:
            os.close(handle.fd)

    def _salvage(self) -> None:
        """After a failed write: cut the file back to its acknowledged lines and publish them."""
        if self._file is None:
            return
        try:
            os.ftruncate(self._file.fd, self._file.size)
            self._fsync(self._file.fd)
        except OSError:
            log.error("could not trim a failed landing file; it will be published at close or the next start")
            self._orphaned = True
            handle, self._file = self._file, None
            os.close(handle.fd)
            return
        self._publish()


def published_name(in_progress: Path) -> Path:
    """.inprogress-<ts>-<id>.tmp -> part-<ts>-<id>.jsonl, in the same folder."""
    core = in_progress.name[len(IN_PROGRESS_PREFIX) : -len(IN_PROGRESS_SUFFIX)]
    return in_progress.with_name(f"{PART_PREFIX}{core}{PART_SUFFIX}")


def recover_in_progress(directory: Path, *, fsync: Callable[[int], None] = os.fsync) -> list[Path]:
    """Publish in-progress files no live writer holds, cut to their last complete line."""
    published = []
    for path in sorted(directory.glob(f"{IN_PROGRESS_PREFIX}*{IN_PROGRESS_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer's file
            if not _same_file(path, fd):
                continue  # published by its writer meanwhile
            complete = _complete_lines_size(fd)
            os.ftruncate(fd, complete)
            fsync(fd)
            if complete == 0:
                path.unlink()
            else:
                final = published_name(path)
                os.rename(path, final)
                published.append(final)
            _fsync_dir(directory)
        finally:
            os.close(fd)
    if published:
        log.warning("published %d landing files a stopped collector left in progress", len(published))
    return published


def _complete_lines_size(fd: int) -> int:
    """Bytes up to and including the last newline (a torn last line was never acknowledged)."""
    end = os.fstat(fd).st_size
    chunk = 64 * 1024
    while end > 0:
        start = max(0, end - chunk)
        data = os.pread(fd, end - start, start)
        newline = data.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _fsync_dir(directory: Path) -> None:
    # A new name (created or renamed) is durable only once its folder is fsynced.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
