"""Quality suites as data: every committed suite is valid GX and reads real columns; bad files fail naming file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lakecdp.config import ConfigError
from lakecdp.lake.tables import TABLES
from lakecdp.quality.results import ResultStore, render_html, run_key_for
from lakecdp.quality.runner import row_count_range
from lakecdp.quality.sources import EXPORT_BATCH_SCHEMA, export_batch_rows, with_consent_withdrawn
from lakecdp.quality.suites import build_gx_suite, load_checkpoints, load_suite, suite_names

REPO = Path(__file__).resolve().parents[2]
EXPECTATIONS = REPO / "expectations"


def test_every_gate_has_its_suites():
    checkpoints = load_checkpoints(EXPECTATIONS)
    assert {name: cp.suites for name, cp in checkpoints.items()} == {
        "training_inputs": ["events", "profile_features"],
        "scores": ["profile_scores"],
        "export": ["segment_membership", "export_batches"],
    }
    assert set(suite_names(EXPECTATIONS)) == {s for cp in checkpoints.values() for s in cp.suites}


@pytest.mark.parametrize("name", suite_names(EXPECTATIONS))
def test_committed_suites_are_valid_and_read_existing_columns(name):
    spec = load_suite(name, EXPECTATIONS)
    suite = build_gx_suite(spec)
    assert len(suite.expectations) == len(spec.expectations) + 1  # + the row-count check
    source = TABLES[spec.source.table].columns if spec.source.table else EXPORT_BATCH_SCHEMA.fieldNames() + ["is_consent_withdrawn"]
    unknown = set(spec.columns()) - set(source) - set(spec.derive)
    assert not unknown, f"{name} reads columns its source lacks: {unknown}"


def write_suite(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(text)


GOOD = """
suite: {name}
source: {{table: profile_scores}}
expectations:
  - expect_column_values_to_not_be_null: {{column: customer_id}}
"""


@pytest.mark.parametrize(
    "extra, message",
    [
        ("colour: blue\n", "colour"),
        ("row_count: {max_change: -1}\n", "row_count.max_change"),
        ('scope: "event_date > $yesterday"\n', "scope"),
        ("parameters: {as_of: {after: 5m}}\n", "built in"),
        ("parameters: {late: {after: 5m, before: 1d}}\n", "exactly one"),
    ],
)
def test_bad_suite_keys_name_the_file_and_key(tmp_path, extra, message):
    write_suite(tmp_path, "scores", GOOD.format(name="scores") + extra)
    with pytest.raises(ConfigError) as error:
        load_suite("scores", tmp_path)
    assert str(tmp_path / "scores.yaml") in str(error.value) and message in str(error.value)


def test_unknown_parameters_tables_and_expectations_are_refused(tmp_path):
    write_suite(
        tmp_path, "a", GOOD.format(name="a").replace("{column: customer_id}", "{column: scored_at, max_value: {$PARAMETER: tomorrow}}")
    )
    with pytest.raises(ConfigError, match="unknown parameters.*tomorrow"):
        load_suite("a", tmp_path)
    write_suite(tmp_path, "b", GOOD.format(name="b").replace("profile_scores", "profile_scroes"))
    with pytest.raises(ConfigError, match="profile_scroes.*not declared"):
        load_suite("b", tmp_path)
    write_suite(tmp_path, "c", GOOD.format(name="c").replace("expect_column_values_to_not_be_null", "expect_column_values_to_be_nice"))
    with pytest.raises(ConfigError, match="no such expectation"):
        build_gx_suite(load_suite("c", tmp_path))
    write_suite(tmp_path, "d", GOOD.format(name="d").replace("{column: customer_id}", "{colum: customer_id}"))
    with pytest.raises(ConfigError, match=r"expectations\[0\] expect_column_values_to_not_be_null.*Fix"):
        build_gx_suite(load_suite("d", tmp_path))
    with pytest.raises(ConfigError, match="no such suite.*a, b, c, d"):
        load_suite("e", tmp_path)


def test_checkpoints_must_name_existing_suites(tmp_path):
    write_suite(tmp_path, "scores", GOOD.format(name="scores"))
    (tmp_path / "checkpoints.yaml").write_text("checkpoints:\n  gate: {suites: [scores, typo]}\n")
    with pytest.raises(ConfigError, match=r"checkpoints.gate.suites: \['typo'\]"):
        load_checkpoints(tmp_path)


@pytest.mark.parametrize(
    "minimum, maximum, change, baseline, expected",
    [
        (1, None, None, 100, (1, None)),  # no relative rule
        (1, None, 0.25, None, (1, None)),  # first run: nothing to compare with
        (1, None, 0.25, 0, (1, None)),  # an empty previous run is no baseline
        (1, None, 0.25, 100, (75, 125)),
        (90, 110, 0.25, 100, (90, 110)),  # fixed bounds win where tighter
    ],
)
def test_row_count_range(minimum, maximum, change, baseline, expected):
    assert row_count_range(minimum, maximum, change, baseline) == expected


def result(run_key: str, success: bool, rows: int) -> dict:
    return {
        "suite": "profile_scores",
        "run_key": run_key,
        "as_of": "2026-11-01T00:00:00+00:00",
        "success": success,
        "row_count": rows,
        "source": {"table": "profile_scores", "version": 3},
        "parameters": {},
        "validated_at": "x",
        "outcomes": [{"expectation": "expect_x", "columns": ["c"], "success": success, "summary": "<script>", "sample": ["<b>"]}],
    }


def test_result_store_keeps_history_and_compares_with_the_last_passing_other_run(tmp_path):
    store = ResultStore(str(tmp_path / "_quality"))
    assert store.baseline_rows("profile_scores", "r1") is None
    store.record(result("r1", True, 100))
    store.record(result("r2", False, 10))  # a failed run is no baseline
    assert store.baseline_rows("profile_scores", "r3") == 100
    assert store.baseline_rows("profile_scores", "r1") is None  # a rerun never compares with itself
    paths = store.record(result("r2", True, 90))  # the rerun replaces its history line
    assert [e["run_key"] for e in store.history("profile_scores")] == ["r1", "r2"]
    assert store.baseline_rows("profile_scores", "r3") == 90
    assert json.loads(Path(paths["json"]).read_text())["row_count"] == 90
    assert json.loads((tmp_path / "_quality" / "profile_scores" / "latest.json").read_text())["run_key"] == "r2"
    assert "profile_scores/r2.html" in (tmp_path / "_quality" / "index.html").read_text()


def test_html_escapes_what_the_data_holds():
    page = render_html(result("r1", False, 1))
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;" in page


def test_run_keys_are_per_instant():
    from datetime import datetime, timedelta, timezone

    instant = datetime(2026, 11, 1, 5, tzinfo=timezone(timedelta(hours=1)))
    assert run_key_for(instant) == "20261101T040000Z"
    assert run_key_for(instant, "manual") == "20261101T040000Z-manual"


class _Member:
    def __init__(self, customer_id, action, email):
        self.customer_id, self.action, self.identifier, self.email = customer_id, action, f"h-{customer_id}", email


class _Batch:
    def __init__(self, seq, kind, members):
        self.segment, self.batch_id, self.seq, self.kind, self.members = "s", f"b{seq}", seq, kind, members


class _Plan:
    def __init__(self, resumed, batches):
        self.name, self.resumed, self.batches = "hook", resumed, batches


def test_export_batch_rows_and_consent_flags(spark):
    plan = _Plan(
        resumed=[_Batch(0, "upsert", [_Member("c1", "create", "a@x.io")])],
        batches=[
            _Batch(1, "upsert", [_Member("c2", "update", "b@x.io"), _Member("c3", "create", None)]),
            _Batch(2, "remove", [_Member("c4", "remove", None)]),
        ],
    )
    rows = export_batch_rows([plan], {"hook": 500})
    assert [(r[0], r[3], r[5], r[6], r[7], r[8]) for r in rows] == [
        ("hook", 0, 1, 500, True, "c1"),
        ("hook", 1, 2, 500, False, "c2"),
        ("hook", 1, 2, 500, False, "c3"),
        ("hook", 2, 1, 500, False, "c4"),
    ]
    members = spark.createDataFrame(rows, EXPORT_BATCH_SCHEMA)
    consent = spark.createDataFrame(
        [("c1", None), ("c2", "unsubscribed after latest opt-in"), ("c4", "no marketing opt-in")], "customer_id string, block_reason string"
    )
    flags = {r["customer_id"]: r["is_consent_withdrawn"] for r in with_consent_withdrawn(members, consent).collect()}
    # c3 has no consent row at all: no recorded consent counts as withdrawn; removes are never flagged.
    assert flags == {"c1": False, "c2": True, "c3": True, "c4": None}


def test_result_store_on_an_s3_lake_root():
    """An s3:// lake keeps its results beside it, through the same storage options delta-rs uses."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
        s3 = boto3.client(
            "s3", endpoint_url=options["AWS_ENDPOINT_URL"], region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
        )
        s3.create_bucket(Bucket="lake")
        store = ResultStore("s3://lake/prod/_quality", options)
        paths = store.record(result("r1", True, 7))
        assert paths["json"] == "s3://lake/prod/_quality/profile_scores/r1.json"
        assert store.baseline_rows("profile_scores", "r2") == 7 and store.read_text("nothing/here.json") is None
        body = s3.get_object(Bucket="lake", Key="prod/_quality/profile_scores/r1.json")["Body"].read()
        assert json.loads(body)["row_count"] == 7
    finally:
        server.stop()
