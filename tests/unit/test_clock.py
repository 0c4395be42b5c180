from datetime import datetime, timedelta, timezone

import pytest

from lakecdp.clock import FrozenClock, SystemClock


def test_frozen_clock_moves_only_when_told():
    clock = FrozenClock(datetime(2026, 11, 1, tzinfo=timezone.utc))
    assert clock.now() == clock.now()
    assert clock.advance(timedelta(hours=48)) == datetime(2026, 11, 3, tzinfo=timezone.utc)


def test_clocks_refuse_naive_times_and_return_utc():
    with pytest.raises(ValueError, match="timezone-aware"):
        FrozenClock(datetime(2026, 11, 1))
    assert SystemClock().now().tzinfo is not None
