"""Time-exact segments: a rule that becomes true by the passage of time alone flips on its timer.

An absence ("added to cart, no purchase within 48 h") flipping at hour 48 on its timer is
test_triggers.py's abandoned-cart test, which goes on to the trigger it fires.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import functions as F

from lakecdp.config.models import EventSettings, LakeSettings
from lakecdp.events.ingest import ingest_lines
from lakecdp.flows.micro_batch import refresh_membership, refresh_profiles, touched_customers, update_identity_links
from lakecdp.flows.timers import fire_due_timers
from lakecdp.lake import open_lake
from lakecdp.segments import parse_segments
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

T = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
H = timedelta(hours=1)
RULES = [
    {"name": "cart_abandoned_48h", "rule": {"did": {"event": "Product Added"}, "then_not": {"event": "Order Completed"}, "within": "48h"}},
    {"name": "viewed_shoes_24h", "rule": {"event": "Product Viewed", "where": {"category": "shoes"}, "within": "24h"}},
    {"name": "abandoners_who_browse_shoes", "rule": {"all": [{"in_segment": "cart_abandoned_48h"}, {"in_segment": "viewed_shoes_24h"}]}},
]


# Lines carry the retailer's ids; the lake names customers by pseudonym: read them back by name.
NAME = {pid(n): n for n in ("browser", "cust_a", "shared_tablet")}


def line(message_id, customer, event, at, **properties):
    return json.dumps(
        {
            "type": "track",
            "event": event,
            "messageId": message_id,
            "userId": customer,
            "timestamp": at.isoformat().replace("+00:00", "Z"),
            "properties": properties,
        }
    )


@pytest.fixture
def pipeline(spark, tmp_path):
    lake = open_lake(spark, LakeSettings(), root=str(tmp_path / "lake"))
    segments = parse_segments(RULES)

    def send(now, *lines):
        """Process lines as one stream batch would, with the clock at `now`."""
        df = spark.createDataFrame([(raw, "t.jsonl") for raw in lines], "raw string, source_file string")
        ingest_lines(lake, df, received_at=now, settings=EventSettings())
        batch = lake.read("events").filter(F.col("message_id").isin([json.loads(x)["messageId"] for x in lines]))
        customers = touched_customers(lake, batch, update_identity_links(lake, batch))
        refresh_profiles(lake, now, customers=customers)
        refresh_membership(lake, segments, now, customers=customers)

    def members(segment):
        return sorted(NAME[r.customer_id] for r in lake.read("segment_membership").filter(f"segment = '{segment}'").collect())

    return lake, segments, send, members


def test_a_window_sliding_past_exits_the_customer_and_a_late_event_corrects_membership(pipeline):
    lake, segments, send, members = pipeline
    send(T, line("v1", "browser", "Product Viewed", T - H, category="shoes"))
    assert members("viewed_shoes_24h") == ["browser"]
    fire_due_timers(lake, segments, T + 23 * H + timedelta(seconds=10))  # T - H + 24 h: the view slides out
    assert members("viewed_shoes_24h") == []
    exited = lake.read("segment_transitions").filter("transition = 'exited'").collect()
    assert [NAME[r.customer_id] for r in exited] == ["browser"]
    # a late event (sent 2 h after it happened) still counts by event time
    send(T + 25 * H, line("v2", "browser", "Product Viewed", T + 23 * H, category="shoes"))
    assert members("viewed_shoes_24h") == ["browser"]


def test_a_wrong_identity_merge_is_split_back_out(pipeline):
    from lakecdp.flows.micro_batch import unmerge_identity

    lake, segments, send, members = pipeline
    identify = json.dumps(
        {
            "type": "identify",
            "messageId": "i1",
            "userId": "cust_a",
            "anonymousId": "shared_tablet",
            "timestamp": (T - 2 * H).isoformat().replace("+00:00", "Z"),
            "traits": {"first_name": "A"},
        }
    )
    view = json.dumps(
        {
            "type": "track",
            "event": "Product Viewed",
            "messageId": "v1",
            "anonymousId": "shared_tablet",
            "timestamp": (T - H).isoformat().replace("+00:00", "Z"),
            "properties": {"category": "shoes"},
        }
    )
    send(T, identify, view)
    profiles = {NAME[r.customer_id]: r for r in lake.read("profile_features").collect()}
    assert "shared_tablet" not in profiles and profiles["cust_a"].product_views == 1
    assert members("viewed_shoes_24h") == ["cust_a"]

    assert unmerge_identity(lake, pid("shared_tablet"), pid("cust_a"), segments, T + H)
    profiles = {NAME[r.customer_id]: r for r in lake.read("profile_features").collect()}
    assert profiles["cust_a"].product_views == 0 and profiles["shared_tablet"].product_views == 1
    assert members("viewed_shoes_24h") == ["shared_tablet"]
    [link] = lake.read("identity_links").collect()
    assert link.is_active is False and link.unmerged_at is not None  # the merge log keeps the history
    assert not unmerge_identity(lake, pid("shared_tablet"), pid("cust_a"), segments, T + 2 * H)
