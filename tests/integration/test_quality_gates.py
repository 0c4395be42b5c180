"""Suites on real Spark + delta-rs: `lakecdp quality run` names what failed, keeps results, compares row counts
with the previous run, and never lets an address out of the results of the export-batch suite."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lakecdp.cli import main
from lakecdp.config import load_settings
from lakecdp.lake import open_lake

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def score_rows(n: int, *, planted: bool = False) -> list[dict]:
    rows = [
        {
            "customer_id": f"c{i:03d}",
            "intent_probability": i / n,
            "intent_decile": 1 + i % 10,
            "cluster_id": i % 3,
            "cluster_label": "x",
            "intent_model_version": "v0001",
            "cluster_model_version": "v0001",
            "scored_at": AS_OF,
        }
        for i in range(n)
    ]
    if planted:
        rows[1]["intent_probability"] = 1.5
        rows[2]["customer_id"] = rows[3]["customer_id"]
        rows[4]["intent_probability"] = None
    return rows


def test_cli_names_failed_expectations_and_compares_row_counts_with_the_previous_run(spark, tmp_path, capsys):
    from lakecdp.quality.results import ResultStore

    lake = open_lake(spark, load_settings(env={}).lake, root=str(tmp_path / "lake"))
    lake.overwrite("profile_scores", spark.createDataFrame(score_rows(20, planted=True), lake.spec("profile_scores").schema))
    # The previous day's run passed on 40 rows (its line in the history is what the row-count check reads).
    previous = {
        "suite": "profile_scores",
        "run_key": "20261101T000000Z",
        "as_of": AS_OF.isoformat(),
        "success": True,
        "row_count": 40,
        "source": {},
        "parameters": {},
        "validated_at": AS_OF.isoformat(),
        "outcomes": [],
    }
    ResultStore(str(tmp_path / "lake" / "_quality")).record(previous)

    next_day = AS_OF + timedelta(days=1)
    assert main(["quality", "run", "profile_scores", "--lake", str(tmp_path / "lake"), "--as-of", next_day.isoformat()]) == 1

    output = capsys.readouterr()
    assert "quality gate failed: profile_scores" in output.err
    result = json.loads((tmp_path / "lake" / "_quality" / "profile_scores" / "20261102T000000Z.json").read_text())
    failed = {(o["expectation"], tuple(o["columns"])): o for o in result["outcomes"] if not o["success"]}
    assert set(failed) == {
        ("expect_column_values_to_be_between", ("intent_probability",)),
        ("expect_column_values_to_be_unique", ("customer_id",)),
        ("expect_column_values_to_not_be_null", ("intent_probability",)),
        ("expect_table_row_count_to_be_between", ()),  # 20 rows after 40: beyond ±25%
    }
    assert failed[("expect_column_values_to_be_between", ("intent_probability",))]["sample"] == [1.5]
    assert result["source"] == {"table": "profile_scores", "version": 1, "baseline_rows": 40}
    assert failed[("expect_table_row_count_to_be_between", ())]["summary"] == "observed 20, expected 30..50 rows"
    assert "FAIL expect_column_values_to_be_unique(customer_id): 2 of 20 rows unexpected" in output.out
    assert (tmp_path / "lake" / "_quality" / "profile_scores" / "20261102T000000Z.html").is_file()


def test_export_batch_failures_never_carry_an_address(spark, tmp_path):
    from lakecdp.quality.runner import QualityGateFailed, SuiteResult, prepare_frame, suite_parameters, validate_frame
    from lakecdp.quality.sources import EXPORT_BATCH_SCHEMA, with_consent_withdrawn
    from lakecdp.quality.suites import load_suite

    settings = load_settings(env={})
    spec = load_suite("export_batches")
    members = spark.createDataFrame(
        [
            ("hook", "s", "b0", 0, "upsert", 2, 500, False, "c1", "create", "h1", "ok@example.com"),
            ("hook", "s", "b0", 0, "upsert", 2, 500, False, "c2", "create", "h2", "secret.person-at-example.com"),
            ("hook", "s", "b1", 1, "remove", 1, 500, False, "c3", "remove", "h3", None),
        ],
        EXPORT_BATCH_SCHEMA,
    )
    consent = spark.createDataFrame([("c1", "unsubscribed after latest opt-in"), ("c2", None)], "customer_id string, block_reason string")
    frame = prepare_frame(with_consent_withdrawn(members, consent), spec, AS_OF)

    success, outcomes, rows = validate_frame(frame, spec, suite_parameters(spec, settings, AS_OF, baseline_rows=None))

    failed = {o.label: o for o in outcomes if not o.success}
    assert not success and rows == 3
    assert set(failed) == {"expect_column_values_to_match_regex(upsert_email)", "expect_column_values_to_be_in_set(is_consent_withdrawn)"}
    assert failed["expect_column_values_to_match_regex(upsert_email)"].sample == ()  # PII column: no values kept
    assert failed["expect_column_values_to_be_in_set(is_consent_withdrawn)"].unexpected_count == 1
    error = str(QualityGateFailed([SuiteResult("export_batches", "k", AS_OF, False, rows, {}, {}, outcomes, AS_OF)]))
    assert "expect_column_values_to_match_regex(upsert_email): 1 of 2 rows unexpected (1 null, not checked)" in error
    assert "secret.person" not in error
