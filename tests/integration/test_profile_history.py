"""`lakecdp profile show CUSTOMER --history`: the current profile, then what changed in each
profile_features version, under which commit, after which of the customer's events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lakecdp.cli import main
from lakecdp.config import load_settings
from lakecdp.lake import open_lake
from lakecdp.profiles.history import profile_history
from lakecdp.segments import segments_of
from tests.lakes import ingest_and_refresh
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
MIDDLE = NOW - timedelta(days=2)
REPO = Path(__file__).resolve().parents[2]


def _line(n: int, event: str, at: datetime, **properties) -> str:
    return json.dumps(
        {"messageId": f"m{n}", "type": "track", "event": event, "userId": "cust_1", "timestamp": at.isoformat(), "properties": properties}
    )


@pytest.fixture(scope="module")
def history(spark, tmp_path_factory):
    """Two batches through the batch path: generated shop traffic (40 customers, 4 days) split at its middle,
    with a hand-written customer, cust_1, in both."""
    from lakecdp.generate import GeneratorSettings, generate_dataset

    settings = load_settings(REPO / "conf", env={})
    lake = open_lake(spark, settings.lake, root=str(tmp_path_factory.mktemp("history") / "lake"))
    dataset = generate_dataset(GeneratorSettings(customers=40, days=4, seed=5, end=NOW))
    halves = [[e for e in dataset.events if (datetime.fromisoformat(e["timestamp"]) < MIDDLE) == early] for early in (True, False)]
    own = [
        [_line(1, "Product Viewed", MIDDLE - timedelta(minutes=5), category="shoes")],
        [
            _line(2, "Product Added to Wishlist", NOW - timedelta(minutes=3), product_id="p1"),
            _line(3, "Product Viewed", NOW - timedelta(minutes=2), category="shoes"),
        ],
    ]
    for instant, events, lines in zip((MIDDLE, NOW), halves, own):
        ingest_and_refresh(lake, settings, segments_of(settings), instant, [json.dumps(e) for e in events] + lines)
    return lake, halves


def test_profile_show_lists_each_change_with_its_commit_and_events(history, capsys):
    lake, _ = history
    changes = profile_history(lake, pid("cust_1"))
    assert len(changes) == 2
    assert changes[0].changes["product_views"] == (None, 1)
    assert changes[1].changes["product_views"] == (1, 2) and changes[1].changes["wishlist_adds"] == (0, 1)
    assert "events_total" in changes[1].changes and "as_of" not in changes[1].changes
    assert [name for _, name in changes[0].events] == ["Product Viewed"]
    assert [name for _, name in changes[1].events] == ["Product Added to Wishlist", "Product Viewed"]
    assert changes[0].commit.version < changes[1].commit.version

    assert main(["--conf", str(REPO / "conf"), "profile", "show", "cust_1", "--history", "--lake", lake.root]) == 0
    printed = capsys.readouterr().out
    assert f"profile of {pid('cust_1')} as of" in printed
    assert "wishlist_adds                         1" in printed
    assert "      product_views: 1 -> 2" in printed
    assert "      after events: Product Added to Wishlist at" in printed
    assert "history (the last 20 versions of profile_features): 2 changes" in printed
    assert main(["--conf", str(REPO / "conf"), "profile", "show", "nobody", "--lake", lake.root]) == 1


def test_history_of_a_generated_customer_names_the_events_of_each_batch(history):
    lake, halves = history
    own = {half: [e for e in events if e.get("userId")] for half, events in enumerate(halves)}
    busiest = max({e["userId"] for e in own[1]}, key=lambda c: sum(e.get("userId") == c for e in own[0] + own[1]))
    changes = profile_history(lake, pid(busiest))
    assert len(changes) == 2
    for change, events in zip(changes, (own[0], own[1])):
        theirs = sorted((datetime.fromisoformat(e["timestamp"]), _bronze_name(e)) for e in events if e["userId"] == busiest)
        assert change.more_events + len(change.events) == len(theirs)
        assert sorted(change.events) == theirs[len(theirs) - len(change.events) :]
    assert changes[1].changes["events_total"][1] > changes[1].changes["events_total"][0]


def _bronze_name(message: dict) -> str:
    """How bronze names a message: a page view without an event name is "Page Viewed"; an identify has its type."""
    if message.get("event"):
        return message["event"]
    return "Page Viewed" if message["type"] == "page" else message["type"]
