"""Erasure: plant a customer, run the pipeline, erase, then find no trace in any file."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lakecdp.config import load_settings
from lakecdp.lake import open_lake
from lakecdp.online.store import open_store_if_online
from lakecdp.privacy.erasure import process_erasures, request_erasure
from tests.pseudonyms import pid
from tests.worlds import END, copy_world, stream_planted

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


def test_erased_customer_leaves_no_trace(spark, demo_world, tmp_path):
    copy_world(demo_world, tmp_path)
    settings, landing_root, end = load_settings(env={}), tmp_path / "landing", END
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    stream_planted(spark, lake, settings, tmp_path, "planted.jsonl", planted_lines(end))
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
