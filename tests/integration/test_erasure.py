"""Erasure: plant a customer, run the pipeline, erase, then find no trace in any file."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lakecdp.clock import FrozenClock
from lakecdp.config import load_settings
from lakecdp.demo import run_demo
from lakecdp.lake import open_lake
from lakecdp.online.store import open_store_if_online
from lakecdp.privacy.erasure import process_erasures, request_erasure
from lakecdp.stream import run_stream
from lakecdp.stream.job import default_checkpoint
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

USER, DEVICE, EMAIL = "zz_erase_user_7f3a", "zz_erase_device_7f3a", "zz.erase.7f3a@example.com"


def planted_lines(end) -> str:
    at = (end - timedelta(hours=60)).isoformat().replace("+00:00", "Z")
    events = [
        {
            "type": "track",
            "event": "Product Viewed",
            "messageId": "erase-1",
            "anonymousId": DEVICE,
            "timestamp": at,
            "properties": {"category": "shoes"},
        },
        {
            "type": "identify",
            "messageId": "erase-2",
            "userId": USER,
            "anonymousId": DEVICE,
            "timestamp": at,
            "traits": {"email": EMAIL, "first_name": "Zed"},
        },
        {
            "type": "track",
            "event": "Product Added",
            "messageId": "erase-3",
            "userId": USER,
            "timestamp": at,
            "properties": {"category": "shoes", "price": 90},
        },
    ]
    bad = '{"type": "track", "userId": "' + USER + '", "timestamp": "broken"'
    return "\n".join(json.dumps(e) for e in events) + "\n" + bad + "\n"


def traces(root: Path, needles: list[str]) -> list[str]:
    """Every file under root whose bytes, or decoded Parquet values, contain a needle."""
    hits = []
    for path in (p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found = [n for n in needles if n.encode() in data]
        if path.suffix == ".parquet":
            text = str(pq.read_table(path).to_pylist())
            found += [n for n in needles if n in text]
        if found:
            hits.append(f"{path.relative_to(root)}: {sorted(set(found))}")
    return hits


def test_erased_customer_leaves_no_trace(spark, tmp_path):
    settings = load_settings(env={})
    lake_root, landing_root = tmp_path / "lake", tmp_path / "landing"
    end = datetime(2026, 11, 1, tzinfo=UTC)
    run_demo(
        settings,
        lake_root=str(lake_root),
        landing_root=str(landing_root),
        out_dir=tmp_path / "out",
        customers=30,
        days=4,
        clock=FrozenClock(end),
        out=io.StringIO(),
        stop_after="stream",
    )
    lake = open_lake(spark, settings.lake, root=str(lake_root))
    (landing_root / "demo" / "events" / "planted.jsonl").write_text(planted_lines(end))
    run_stream(
        spark,
        lake,
        settings,
        source=str(landing_root / "demo" / "events"),
        checkpoint=default_checkpoint(settings, lake.root, "demo"),
        clock=FrozenClock(end),
    )
    lake.merge(
        "customers",
        spark.createDataFrame(
            [
                {
                    "customer_id": pid(USER),
                    "external_id": USER,
                    "email": EMAIL,
                    "first_name": "Zed",
                    "marketing_opt_in": True,
                    "source": "test",
                    "updated_at": end,
                }
            ],
            lake.spec("customers").schema,
        ),
    )
    # The lake knows them by pseudonyms; the raw ids stay in `customers`, landing and quarantine.
    # Pseudonyms by their first 32 characters: Delta keeps string column statistics (min/max in each
    # add action of _delta_log) truncated to 32 characters, and that prefix still names the person.
    needles = [USER, DEVICE, EMAIL, pid(USER)[:32], pid(DEVICE)[:32]]
    assert len(traces(tmp_path, needles)) >= 5, "the planted customer must be everywhere before erasure"
    others_before = lake.read("events").count() - 3

    request_id = request_erasure(lake, pid(USER), end)
    state = open_store_if_online(settings, lake.root)  # the stream's online state holds the customer too
    assert state is not None and state.load([pid(USER)])
    [proof] = process_erasures(lake, str(landing_root), end + timedelta(minutes=1), state=state)

    assert traces(tmp_path, needles) == []
    assert lake.read("events").count() == others_before, "other customers' data is untouched"
    assert proof.request_id == request_id and proof.rows_deleted["events"] == 3 and proof.landing_lines_deleted == 4
    [record] = lake.read("erasure_log").collect()
    assert not any(n in str(record.asDict()) for n in needles)
    assert lake.read("erasure_requests").count() == 0
