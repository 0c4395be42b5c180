import io

import pytest

from lakecdp.progress import ENV_VAR, Progress


class FakeClock:
    def __init__(self) -> None:
        self.at = 100.0

    def __call__(self) -> float:
        return self.at


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_progress_setting(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_terminal_line_is_redrawn_in_place_with_rate_and_eta():
    clock, out = FakeClock(), FakeTerminal()
    with Progress("score", 100_000, out=out, clock=clock) as progress:
        clock.at += 1.5
        progress.advance(12_345)
        clock.at += 0.5
        progress.update(16_000)
    lines = out.getvalue().split("\r")
    assert lines[1] == "score: 12,345 / 100,000 rows  8,230 rows/s  ETA 11 s"
    assert lines[2].startswith("score: 16,000 / 100,000 rows  8,000 rows/s  ETA 10 s")
    assert lines[3].endswith("\n")
    assert lines[3].rstrip() == "score: 16,000 / 100,000 rows  8,000 rows/s  in 2 s"


def test_redraws_at_most_every_interval():
    clock, out = FakeClock(), FakeTerminal()
    progress = Progress("import", out=out, clock=clock, every=0.5)
    for _ in range(8):
        clock.at += 0.125
        progress.advance(100)
    assert out.getvalue().count("\r") == 2  # at 0.5 s and 1.0 s (binary-exact steps)
    assert progress.done == 800


def test_without_total_there_is_no_eta_and_a_shorter_line_wipes_the_longer_one():
    clock, out = FakeClock(), FakeTerminal()
    progress = Progress("export", unit="batches", out=out, clock=clock, every=0)
    clock.at += 1
    progress.update(1_000_000)
    clock.at += 1_000_000
    progress.update(1_000_001)
    first, second = out.getvalue().split("\r")[1:]
    assert first == "export: 1,000,000 batches  1,000,000 batches/s"
    assert "ETA" not in second
    assert len(second) == len(first) and second.rstrip() == "export: 1,000,001 batches  1 batches/s"


def test_quiet_when_not_a_terminal():
    clock, out = FakeClock(), io.StringIO()
    with Progress("train", 10, out=out, clock=clock, every=0) as progress:
        clock.at += 1
        progress.advance(5)
    assert out.getvalue() == ""


def test_setting_zero_silences_a_terminal(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "0")
    clock, out = FakeClock(), FakeTerminal()
    with Progress("train", 10, out=out, clock=clock, every=0) as progress:
        clock.at += 1
        progress.advance(5)
    assert out.getvalue() == ""


def test_setting_one_writes_a_line_per_redraw_where_there_is_no_terminal(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "1")
    clock, out = FakeClock(), io.StringIO()
    with Progress("backfill", 4, unit="events", out=out, clock=clock, every=0) as progress:
        clock.at += 1
        progress.advance(2)
        clock.at += 1
        progress.advance(2)
    assert out.getvalue().splitlines() == [
        "backfill: 2 / 4 events  2 events/s  ETA 1 s",
        "backfill: 4 / 4 events  2 events/s  ETA 0 s",
        "backfill: 4 / 4 events  2 events/s  in 2 s",
    ]


def test_explicit_enabled_wins_over_the_terminal_check():
    clock, out = FakeClock(), FakeTerminal()
    with Progress("x", out=out, clock=clock, enabled=False) as progress:
        clock.at += 10
        progress.advance()
    assert out.getvalue() == ""


def test_long_etas_read_in_minutes_and_hours():
    clock = FakeClock()
    progress = Progress("x", 10_000, out=io.StringIO(), clock=clock)
    clock.at += 1
    progress.update(1)
    assert progress.line(clock()).endswith("ETA 2 h 46 min")
    progress.update(50)
    assert progress.line(clock()).endswith("ETA 3 min 19 s")


def test_following_reads_the_count_once_more_when_the_work_ends():
    clock, out, done = FakeClock(), FakeTerminal(), [0]
    with Progress("score", 30, out=out, clock=clock, every=3600) as progress:
        with progress.following(lambda: done[0]):
            done[0] = 30  # counted elsewhere (executors): no poll falls due in the test
            clock.at += 3
        assert progress.done == 30
    assert out.getvalue().rstrip().endswith("score: 30 / 30 rows  10 rows/s  in 3 s")


def test_following_starts_no_thread_when_disabled(monkeypatch):
    import threading

    started = []
    monkeypatch.setattr(threading.Thread, "start", lambda self: started.append(self))
    progress = Progress("score", out=io.StringIO(), clock=FakeClock())
    with progress.following(lambda: 7):
        pass
    assert started == [] and progress.done == 7
