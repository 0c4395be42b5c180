from datetime import UTC, datetime, timedelta

import pytest

from lakecdp.clock import FrozenClock, SystemClock


def test_frozen_clock_moves_only_when_told():
    clock = FrozenClock(datetime(2026, 11, 1, tzinfo=UTC))
    assert clock.now() == clock.now()
    assert clock.advance(timedelta(hours=48)) == datetime(2026, 11, 3, tzinfo=UTC)


def test_clocks_refuse_naive_times_and_return_utc():
    with pytest.raises(ValueError, match="timezone-aware"):
        FrozenClock(datetime(2026, 11, 1))
    assert SystemClock().now().tzinfo is not None


T0 = datetime(2026, 11, 1, tzinfo=UTC)


def waiter(target, *args):
    """Run target(*args) on a thread; (thread, results list)."""
    import threading

    results: list = []
    thread = threading.Thread(target=lambda: results.append(target(*args)), daemon=True)
    thread.start()
    return thread, results


def test_a_wait_on_a_frozen_clock_ends_when_another_thread_moves_it_past_the_instant():
    clock = FrozenClock(T0)
    thread, results = waiter(clock.wait_until, T0 + timedelta(minutes=10))
    clock.advance(timedelta(minutes=9))
    thread.join(0.3)
    assert thread.is_alive() and results == []  # 9 of 10 minutes: still waiting
    clock.set(T0 + timedelta(minutes=10))
    thread.join(10)
    assert not thread.is_alive() and results == [False]  # reached, not interrupted


def test_a_wait_ends_early_when_its_event_is_set_and_says_so():
    import threading

    clock, event = FrozenClock(T0), threading.Event()
    thread, results = waiter(clock.wait, 3600.0, event)
    event.set()
    thread.join(10)
    assert results == [True] and clock.now() == T0
    assert clock.wait(0.0) is False and SystemClock().wait(0.0, event) is True


def test_sleeping_on_a_frozen_clock_moves_it_and_a_pickled_copy_keeps_its_instant():
    import pickle

    clock = FrozenClock(T0)
    clock.sleep(90)
    assert clock.now() == T0 + timedelta(seconds=90)
    copy = pickle.loads(pickle.dumps(clock))
    assert copy.now() == clock.now()
    copy.advance(timedelta(seconds=1))  # the copy's own condition works
    assert clock.now() == T0 + timedelta(seconds=90)


def test_monotonic_seconds_move_with_the_frozen_clock_only():
    clock = FrozenClock(datetime(2026, 11, 2, tzinfo=UTC))
    start = clock.monotonic()
    assert clock.monotonic() == start
    clock.advance(timedelta(seconds=90))
    assert clock.monotonic() - start == 90
    system = SystemClock()
    assert system.monotonic() <= system.monotonic()
