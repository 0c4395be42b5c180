"""Trigger settings in segments.yaml, quiet hours across DST, frequency caps."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from lakecdp.segments import RuleError, parse_segments
from lakecdp.segments.rules import TriggerSpec
from lakecdp.triggers.outbox import is_capped, quiet_until, too_late

QUIET = TriggerSpec("hook", quiet_start=time(21, 0), quiet_end=time(8, 0))


def test_trigger_block_is_parsed_and_validated():
    [segment] = parse_segments(
        [
            {
                "name": "s",
                "rule": {"event": "A"},
                "trigger": {
                    "destination": "hook",
                    "delay": "1h",
                    "frequency_cap": {"max": 1, "per": "7d"},
                    "quiet_hours": {"start": "21:00", "end": "08:00"},
                },
            }
        ]
    )
    assert segment.trigger == TriggerSpec("hook", timedelta(hours=1), 1, timedelta(days=7), time(21), time(8))
    with pytest.raises(RuleError, match="trigger.quiet_hours.start: '9pm' is not a time of day"):
        parse_segments(
            [{"name": "s", "rule": {"event": "A"}, "trigger": {"destination": "h", "quiet_hours": {"start": "9pm", "end": "08:00"}}}]
        )
    with pytest.raises(RuleError, match="trigger.destination: missing"):
        parse_segments([{"name": "s", "rule": {"event": "A"}, "trigger": {"delay": "1h"}}])


@pytest.mark.parametrize(
    ("now_utc", "zone", "expected_utc"),
    [
        (datetime(2026, 11, 2, 12, 0, tzinfo=UTC), "Europe/Berlin", None),  # 13:00 local: send
        (datetime(2026, 11, 2, 22, 0, tzinfo=UTC), "Europe/Berlin", datetime(2026, 11, 3, 7, 0, tzinfo=UTC)),  # 23:00 -> 08:00 CET
        (datetime(2026, 11, 3, 5, 0, tzinfo=UTC), "Europe/Berlin", datetime(2026, 11, 3, 7, 0, tzinfo=UTC)),  # 06:00 local
        # the night clocks go back (25 Oct 2026 in Berlin): 08:00 local is 07:00 UTC, not 06:00
        (datetime(2026, 10, 24, 21, 30, tzinfo=UTC), "Europe/Berlin", datetime(2026, 10, 25, 7, 0, tzinfo=UTC)),
        (datetime(2026, 11, 2, 3, 0, tzinfo=UTC), "America/New_York", datetime(2026, 11, 2, 13, 0, tzinfo=UTC)),
        (datetime(2026, 11, 2, 22, 0, tzinfo=UTC), None, datetime(2026, 11, 3, 8, 0, tzinfo=UTC)),  # unknown zone: UTC
    ],
)
def test_quiet_hours_follow_the_customers_clock(now_utc, zone, expected_utc):
    assert quiet_until(now_utc, QUIET, zone) == expected_utc


def test_frequency_cap_counts_sends_inside_the_window():
    spec = TriggerSpec("hook", cap_max=1, cap_per=timedelta(days=7))
    now = datetime(2026, 11, 10, tzinfo=UTC)
    assert is_capped([now - timedelta(days=6)], now, spec)
    assert not is_capped([now - timedelta(days=8)], now, spec)
    assert not is_capped([], now, TriggerSpec("hook"))


def test_dispatch_needs_exactly_one_way_to_recheck_membership():
    from lakecdp.triggers.dispatch import dispatch_due

    now = datetime(2026, 11, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="exactly one of `online`"):
        dispatch_due(None, None, [], now)  # neither: a send would go out on stale membership
    with pytest.raises(ValueError, match="exactly one of `online`"):
        dispatch_due(None, None, [], now, online=object(), refresh=lambda customers: None)


def test_max_lateness_defaults_to_a_day_and_none_turns_it_off():
    def trigger(**extra):
        [segment] = parse_segments([{"name": "s", "rule": {"event": "A"}, "trigger": {"destination": "hook", **extra}}])
        return segment.trigger

    assert trigger().max_lateness == timedelta(hours=24)
    assert trigger(max_lateness="6h").max_lateness == timedelta(hours=6)
    assert trigger(max_lateness="none").max_lateness is None
    assert trigger(max_lateness=None).max_lateness is None
    with pytest.raises(RuleError, match="trigger.max_lateness: 'soon'"):
        trigger(max_lateness="soon")


LATE_24H = "late: entered more than trigger.max_lateness (24.0 h) after its moment by event time"


def test_an_entry_is_late_only_past_max_lateness_after_its_moment():
    hour = 3_600_000_000
    spec = TriggerSpec("hook", max_lateness=timedelta(hours=24))
    assert too_late(spec, 100 * hour, 76 * hour) is None  # exactly 24 h: still on time
    assert too_late(spec, 100 * hour, 76 * hour - 1) == LATE_24H
    assert too_late(spec, 100 * hour, 48 * hour) == LATE_24H
    assert too_late(spec, 100 * hour, None) is None  # a rule reading profile, CRM or score values: no moment by event time
    assert too_late(TriggerSpec("hook", max_lateness=None), 100 * hour, 0) is None
