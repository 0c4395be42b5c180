"""One contract, run against every lake engine."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from lakecdp.lake import AppTxn, LakeError
from lakecdp.lake.files import read_delta

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def quarantine_rows(spark, lake, rows):
    """rows: (quarantine_id, message_id, raw, day)."""
    records = [
        {
            "quarantine_id": qid,
            "message_id": mid,
            "reason": "bad json",
            "raw": raw,
            "source_file": None,
            "quarantined_at": T0 + timedelta(minutes=i),
            "quarantine_date": day,
        }
        for i, (qid, mid, raw, day) in enumerate(rows)
    ]
    return spark.createDataFrame(records, lake.spec("quarantine").schema)


def member_rows(spark, lake, rows):
    """rows: (segment, customer_id, rule_version)."""
    records = [
        {"segment": s, "customer_id": c, "entered_at": T0, "rule_version": v, "reason": None, "evaluated_at": T0} for s, c, v in rows
    ]
    return spark.createDataFrame(records, lake.spec("segment_membership").schema)


def ids(df, column):
    return sorted(row[column] for row in df.select(column).collect())


def test_missing_table_reads_empty_with_declared_schema(lake):
    df = lake.read("quarantine")
    assert df.count() == 0
    assert df.schema.names == list(lake.spec("quarantine").columns)
    assert lake.version("quarantine") == -1


def test_append_round_trips_values_partitions_and_nulls(spark, lake):
    lake.append("quarantine", quarantine_rows(spark, lake, [("q1", "m1", "{x", date(2026, 11, 1)), ("q2", None, None, date(2026, 10, 31))]))
    rows = {r.quarantine_id: r for r in lake.read("quarantine").collect()}
    assert rows["q1"].quarantine_date == date(2026, 11, 1)
    assert rows["q2"].quarantine_date == date(2026, 10, 31)
    assert rows["q2"].message_id is None and rows["q2"].raw is None
    assert rows["q1"].quarantined_at.replace(tzinfo=UTC) == T0
    # the same table is readable by delta-rs directly (engine-neutral Delta)
    assert DeltaTable(lake.path("quarantine")).to_pyarrow_table().num_rows == 2


def test_app_transaction_commits_a_batch_exactly_once(spark, lake):
    batch0 = quarantine_rows(spark, lake, [("q1", "m1", "a", date(2026, 11, 1))])
    batch1 = quarantine_rows(spark, lake, [("q2", "m2", "b", date(2026, 11, 1))])
    lake.append("quarantine", batch0, txn=AppTxn("query-1", 0))
    lake.append("quarantine", batch0, txn=AppTxn("query-1", 0))  # replay after a crash
    lake.append("quarantine", batch1, txn=AppTxn("query-1", 1))
    lake.append("quarantine", batch1, txn=AppTxn("query-2", 0))  # another query is independent
    assert ids(lake.read("quarantine"), "quarantine_id") == ["q1", "q2", "q2"]
    assert lake.committed_version("quarantine", "query-1") == 1
    assert lake.committed_version("quarantine", "never") is None


def test_merge_upserts_on_keys_and_can_replace_a_scope(spark, lake):
    lake.merge("segment_membership", member_rows(spark, lake, [("a", "c1", "v1"), ("a", "c2", "v1"), ("b", "c1", "v1")]))
    lake.merge("segment_membership", member_rows(spark, lake, [("a", "c2", "v2"), ("a", "c3", "v2")]), delete_missing={"segment": ["a"]})
    rows = {(r.segment, r.customer_id): r.rule_version for r in lake.read("segment_membership").collect()}
    # c1 left segment a; segment b is outside the replaced scope and untouched
    assert rows == {("a", "c2"): "v2", ("a", "c3"): "v2", ("b", "c1"): "v1"}


def test_insert_rows_appends_the_keys_the_table_lacks_once_in_plain_strings(spark, lake):
    lake.append("quarantine", quarantine_rows(spark, lake, [("q1", "m1", "a", date(2026, 11, 1))]))
    new = [("q1", "m1", "changed", date(2026, 11, 1)), ("q2", "m2", "b", date(2026, 11, 2)), ("q2", "m2", "again", date(2026, 11, 2))]
    rows = quarantine_rows(spark, lake, new).toArrow()  # a key twice: its first row counts
    assert lake.insert_rows("quarantine", rows, txn=AppTxn("flush", 0)) == 1
    assert lake.insert_rows("quarantine", rows, txn=AppTxn("flush", 0)) == 0  # a replayed flush
    assert lake.insert_rows("quarantine", rows) == 0  # every key is there already
    assert {(r.quarantine_id, r.raw) for r in lake.read("quarantine").collect()} == {("q1", "a"), ("q2", "b")}
    # an append writes plain strings (pyarrow readers filter them pushed down)
    reasons = read_delta(DeltaTable(lake.path("quarantine")), ["quarantine_id"], pc.field("reason") == "bad json")
    assert sorted(reasons.column(0).to_pylist()) == ["q1", "q2"]


def test_merge_rows_replaces_a_scope_through_delta_rs_and_pyarrow_readers_still_filter(spark, lake):
    lake.append("segment_membership", member_rows(spark, lake, [("a", "c1", "v1"), ("a", "c2", "v1")]))
    lake.append("segment_membership", member_rows(spark, lake, [("b", "c1", "v1")]))  # a file of its own, outside the scope
    rows = member_rows(spark, lake, [("a", "c2", "v2"), ("a", "c3", "v2")]).toArrow()
    lake.merge_rows("segment_membership", rows, update_columns=["rule_version"], delete_missing={"segment": ["a"]}, txn=AppTxn("flush", 0))
    lake.merge_rows("segment_membership", rows.slice(0, 1), delete_missing={"segment": ["a"]}, txn=AppTxn("flush", 0))  # a replay
    expected = {("a", "c2", "v2"), ("a", "c3", "v2"), ("b", "c1", "v1")}
    assert {(r.segment, r.customer_id, r.rule_version) for r in lake.read("segment_membership").collect()} == expected
    table = DeltaTable(lake.path("segment_membership"))
    kinds = {str(pq.read_schema(uri).field("customer_id").type) for uri in table.file_uris()}
    assert kinds == {"string", "string_view"}  # delta-rs's MERGE rewrote the scope's files with string views
    # the content API's and preference centre's reads filter on strings, in both kinds of file
    found = read_delta(table, ["segment", "customer_id"], pc.field("customer_id").isin(["c1", "c3"]))
    assert sorted(zip(*found.to_pydict().values(), strict=True)) == [("a", "c3"), ("b", "c1")]


def test_rows_gives_the_matching_rows_as_dicts_with_naive_utc_timestamps(spark, lake):
    assert lake.rows("segment_membership") == []  # not created yet
    lake.append("segment_membership", member_rows(spark, lake, [("a", "c1", "v1"), ("a", "c2", "v1"), ("b", "c1", "v1")]))
    rows = lake.rows("segment_membership", ["segment", "customer_id", "entered_at"], {"customer_id": ["c1", "c9"], "segment": "a"})
    assert rows == [{"segment": "a", "customer_id": "c1", "entered_at": T0.replace(tzinfo=None)}]  # as Spark's rows give them
    assert lake.rows("segment_membership", ["segment"], {"customer_id": []}) == []
    with pytest.raises(LakeError, match="contact_rows"):
        lake.rows("customers")


def test_a_merge_scoped_to_customers_keeps_their_ids_out_of_the_log(spark, lake):
    """The scope's ids travel as data (tombstone rows), not in the commit's recorded predicates, which erasure cannot rewrite."""
    lake.merge("segment_membership", member_rows(spark, lake, [("a", "gone-1", "v1"), ("a", "kept-1", "v1")]))
    lake.merge(
        "segment_membership", member_rows(spark, lake, [("a", "kept-1", "v2")]), delete_missing={"customer_id": ["gone-1", "kept-1"]}
    )
    assert {(r.customer_id, r.rule_version) for r in lake.read("segment_membership").collect()} == {("kept-1", "v2")}
    last = max(Path(lake.path("segment_membership"), "_delta_log").glob("*.json"))
    (commit,) = [line for line in last.read_text().splitlines() if '"commitInfo"' in line]  # file stats are data, purged with it
    assert "MERGE" in commit and "gone-1" not in commit and "kept-1" not in commit


def test_merge_insert_only_keeps_existing_rows(spark, lake):
    lake.merge("segment_membership", member_rows(spark, lake, [("a", "c1", "v1")]))
    lake.merge("segment_membership", member_rows(spark, lake, [("a", "c1", "v2"), ("a", "c9", "v2")]), update_columns=[])
    rows = {r.customer_id: r.rule_version for r in lake.read("segment_membership").collect()}
    assert rows == {"c1": "v1", "c9": "v2"}


def test_merge_with_app_transaction_is_idempotent(spark, lake):
    df = member_rows(spark, lake, [("a", "c1", "v1")])
    lake.merge("segment_membership", df, txn=AppTxn("seg", 5))
    version = lake.version("segment_membership")
    lake.merge("segment_membership", df, txn=AppTxn("seg", 5))
    assert lake.version("segment_membership") == version


def test_delete_quotes_values(spark, lake):
    lake.append(
        "quarantine",
        quarantine_rows(
            spark,
            lake,
            [("q1", "o'brien", None, date(2026, 11, 1)), ("q2", "m2", None, date(2026, 11, 1)), ("q3", "m3", None, date(2026, 11, 1))],
        ),
    )
    assert lake.delete("quarantine", {"message_id": ["o'brien", "m3"]}) == 2
    assert ids(lake.read("quarantine"), "quarantine_id") == ["q2"]
    with pytest.raises(LakeError, match="no columns"):
        lake.delete("quarantine", {"nope": 1})


def test_overwrite_partition_replaces_only_that_partition(spark, lake):
    lake.append("quarantine", quarantine_rows(spark, lake, [("q1", "m1", None, date(2026, 11, 1)), ("q2", "m2", None, date(2026, 10, 31))]))
    replacement = quarantine_rows(spark, lake, [("q3", "m3", None, date(2026, 11, 1)), ("q4", "m4", None, date(2026, 11, 1))])
    lake.overwrite_partition("quarantine", replacement, {"quarantine_date": date(2026, 11, 1)})
    lake.overwrite_partition("quarantine", replacement, {"quarantine_date": date(2026, 11, 1)})  # rerun: same end state
    assert ids(lake.read("quarantine"), "quarantine_id") == ["q2", "q3", "q4"]


def test_history_and_time_travel(spark, lake):
    lake.append("quarantine", quarantine_rows(spark, lake, [("q1", "m1", None, date(2026, 11, 1))]))
    first_version = lake.version("quarantine")
    lake.append("quarantine", quarantine_rows(spark, lake, [("q2", "m2", None, date(2026, 11, 1))]))
    assert lake.version("quarantine") == first_version + 1
    assert len(lake.history("quarantine")) >= 2
    assert ids(lake.read("quarantine", version=first_version), "quarantine_id") == ["q1"]
    # Each commit's own instant (delta-rs keeps epoch ms, delta-spark a UTC datetime).
    instants = {
        entry["version"]: datetime.fromtimestamp(entry["timestamp"] / 1000, UTC)
        if isinstance(entry["timestamp"], int)
        else entry["timestamp"].replace(tzinfo=UTC)
        for entry in lake.history("quarantine")
    }
    first, last = instants[first_version], instants[first_version + 1]
    # A busy machine writes a commit's log file after the timestamp inside it (here, 2 s after): the
    # commit still counts from its own timestamp. (CI caught delta-rs reading the version before.)
    newest_log = Path(lake.path("quarantine")) / "_delta_log" / f"{first_version + 1:020d}.json"
    late = last.timestamp() + 2
    os.utime(newest_log, (late, late))
    assert ids(lake.read("quarantine", as_of=last), "quarantine_id") == ["q1", "q2"]
    assert ids(lake.read("quarantine", as_of=first), "quarantine_id") == ["q1"]


def test_optimize_compacts_and_vacuum_drops_unreferenced_files(spark, lake):
    for i in range(3):
        lake.append("quarantine", quarantine_rows(spark, lake, [(f"q{i}", f"m{i}", None, date(2026, 11, 1))]))
    files_before = len(DeltaTable(lake.path("quarantine")).file_uris())
    lake.optimize("quarantine")
    files_after = len(DeltaTable(lake.path("quarantine")).file_uris())
    assert files_after < files_before
    lake.vacuum("quarantine", retention_hours=0)
    table_dir = lake.path("quarantine")
    import pathlib

    on_disk = [p for p in pathlib.Path(table_dir).rglob("*.parquet")]
    assert len(on_disk) == files_after
    assert ids(lake.read("quarantine"), "quarantine_id") == ["q0", "q1", "q2"]


def test_checkpoint_writes_one_at_the_current_version_or_leaves_it_to_the_engine(spark, lake):
    for i in range(2):
        lake.append("quarantine", quarantine_rows(spark, lake, [(f"q{i}", f"m{i}", None, date(2026, 11, 1))]))
    log = Path(lake.path("quarantine")) / "_delta_log"
    version = lake.checkpoint("quarantine")
    if lake.engine.name == "delta-spark":
        assert version is None  # delta-spark writes its own every 10 commits
        return
    assert version == lake.version("quarantine")
    assert (log / f"{version:020d}.checkpoint.parquet").is_file()
    assert ids(lake.read("quarantine"), "quarantine_id") == ["q0", "q1"]


def test_writes_refuse_data_that_breaks_the_declaration(spark, lake):
    bad = quarantine_rows(spark, lake, [("q1", "m1", None, date(2026, 11, 1))])
    with pytest.raises(LakeError, match="lacks columns"):
        lake.append("quarantine", bad.drop("reason"))
    from pyspark.sql import functions as F

    if lake.engine.name == "delta-rs":
        with pytest.raises(LakeError, match="reason is declared non-null"):
            lake.append("quarantine", bad.withColumn("reason", F.lit(None).cast("string")))
    assert lake.read("quarantine").count() == 0


def test_overwrite_replaces_everything_and_keeps_history(spark, lake):
    lake.append("quarantine", quarantine_rows(spark, lake, [("q1", "m1", None, date(2026, 11, 1)), ("q2", "m2", None, date(2026, 10, 31))]))
    before = lake.version("quarantine")
    lake.overwrite("quarantine", quarantine_rows(spark, lake, [("q3", "m3", None, date(2026, 11, 2))]))
    assert ids(lake.read("quarantine"), "quarantine_id") == ["q3"]
    assert ids(lake.read("quarantine", version=before), "quarantine_id") == ["q1", "q2"]


def test_append_adds_a_nullable_column_declared_after_the_table_was_created(spark, lake):
    """Upgrading lakecdp may declare a new nullable column (erasure_log.esp_outcomes_json did): old rows read it as null."""
    import pyarrow as pa
    from deltalake import write_deltalake

    old = pa.table(
        {
            "request_id": ["r1"],
            "requested_at": pa.array([T0], pa.timestamp("us", tz="UTC")),
            "completed_at": pa.array([T0], pa.timestamp("us", tz="UTC")),
            "rows_deleted_json": ["{}"],
            "landing_lines_deleted": pa.array([0], pa.int64()),
        }
    )
    write_deltalake(lake.path("erasure_log"), old, mode="append")
    row = {
        "request_id": "r2",
        "requested_at": T0,
        "completed_at": T0,
        "rows_deleted_json": "{}",
        "landing_lines_deleted": 1,
        "esp_outcomes_json": '{"braze": "deletion requested"}',
    }
    lake.append("erasure_log", spark.createDataFrame([row], lake.spec("erasure_log").schema))
    rows = {r.request_id: r.esp_outcomes_json for r in lake.read("erasure_log").collect()}
    assert rows == {"r1": None, "r2": '{"braze": "deletion requested"}'}


@pytest.mark.parametrize("leftover", [[], [".00000000000000000000.json.tmp"]])
def test_a_table_whose_creation_was_cut_short_is_created_by_the_next_write(spark, lake, leftover):
    # A process killed while creating a table leaves an empty `_delta_log` (or one holding a temp
    # file); the restarted stream's next write must create the table, not fail on every restart.
    for name in ("segment_membership", "quarantine"):
        log = Path(lake.path(name)) / "_delta_log"
        log.mkdir(parents=True)
        for file in leftover:
            (log / file).write_text("")
    lake.merge("segment_membership", member_rows(spark, lake, [("a", "c1", "v1")]))
    lake.append("quarantine", quarantine_rows(spark, lake, [("q1", "m1", "{x", date(2026, 11, 1))]))
    assert ids(lake.read("segment_membership"), "customer_id") == ["c1"]
    assert ids(lake.read("quarantine"), "quarantine_id") == ["q1"]
