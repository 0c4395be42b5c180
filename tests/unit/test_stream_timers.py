from datetime import UTC, datetime, timedelta

from lakecdp.stream.job import tick_wait

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def test_the_timer_thread_sleeps_until_the_next_due_instant_within_the_interval():
    assert tick_wait(NOW + timedelta(seconds=7.5), NOW, longest=20) == 7.5
    assert tick_wait(NOW + timedelta(hours=48), NOW, longest=20) == 20  # far away: look again after the interval
    assert tick_wait(None, NOW, longest=20) == 20  # nothing pending
    assert tick_wait(NOW - timedelta(seconds=3), NOW, longest=20) == 0  # already due: fire now
