"""The DAGs end to end with dag.test() on small generated data: retrain -> score (and the nightly
recommendations) -> export, maintenance, and planted quality violations that stop everything
downstream (nothing reaches the destination).

One lake is built per module (generated events -> bronze -> identities -> profiles -> segments,
CRM customers imported) and a signed-webhook contract server on 127.0.0.1 is the ESP. Tasks run
in-process and reuse the session's SparkSession through lakecdp.spark.build_session.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable

from lakecdp.sandbox import WebhookServer
from tests.integration.airflow_conftest import DAGS, REPO, airflow_db, airflow_home, dag_bag  # noqa: F401

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
RUN_KEY = "20261101T000000Z"
SECRET = "dag-test-webhook-secret"
PREDICTIVE = "likely_buyers"
STALE_CUSTOMER = "planted_stale_recommendation"
# Small enough to train in seconds: 2-day label window and snapshot step, one candidate per model family.
MODEL_SETTINGS = {
    "label_window": "2d",
    "snapshot_step": "2d",
    "min_history": "3d",
    "train_snapshots": 2,
    "clustering": {"k_max": 4, "n_init": 1},
    "intent": {"cv_folds": 2, "logistic_c": [1.0], "gbm_learning_rate": [0.1], "gbm_max_leaf_nodes": [15], "gbm_max_iter": 30},
}


def write_conf(root: Path, webhook_url: str) -> Path:
    """conf/base as committed, plus a local override: the lake here, small models, a score-based segment, the webhook."""
    conf = root / "conf"
    shutil.copytree(REPO / "conf" / "base", conf / "base")
    segments = yaml.safe_load((REPO / "conf" / "base" / "segments.yaml").read_text())["segments"]
    segments.append(
        {"name": PREDICTIVE, "description": "top three intent deciles", "rule": {"profile": "intent_decile", "op": "<=", "value": 3}}
    )
    local = {
        "lake": {"root": str(root / "lake")},
        "landing": {"root": str(root / "landing")},
        "spark": {"shuffle_partitions": 2},
        "segments": segments,
        "models": MODEL_SETTINGS,
        "content": {"recommendations": {"catalog": str(root / "generated" / "catalog" / "products.csv")}},
        "esp": {
            "destinations": {
                "webhook": {
                    "enabled": True,
                    "url": f"{webhook_url}/lakecdp",
                    "segments": [PREDICTIVE, "viewed_shoes_24h"],
                }
            }
        },
    }
    (conf / "local").mkdir()
    (conf / "local" / "test.yaml").write_text(yaml.safe_dump(local))
    return conf


def build_lake(spark, settings, root: Path) -> None:
    """Generated shop data through the batch path of the stream: bronze, identities, profiles, CRM customers.

    Segment membership is left to the DAGs (the predictive segment is the one exported), which
    keeps this fixture to the minimum the DAGs read.
    """
    from lakecdp.clock import FrozenClock
    from lakecdp.events.ingest import ingest_lines, read_landing_lines
    from lakecdp.flows.micro_batch import refresh_profiles, update_identity_links
    from lakecdp.generate import GeneratorSettings, write_dataset
    from lakecdp.importer.customers import import_customers
    from lakecdp.lake import open_lake

    dataset = write_dataset(GeneratorSettings(customers=100, days=10, seed=7, end=AS_OF), root / "generated")
    lake = open_lake(spark, settings.lake)
    ingest_lines(lake, read_landing_lines(spark, [str(p) for p in dataset.files]), received_at=AS_OF, settings=settings.events)
    update_identity_links(lake, lake.read("events"))
    refresh_profiles(lake, AS_OF)
    import_customers(lake, root / "generated" / "crm" / "customers.csv", clock=FrozenClock(AS_OF), report_path=root / "crm-rejects.csv")
    # Yesterday's build, which the score DAG must replace: one planted row no rebuild can produce.
    stale = [
        {
            **dict.fromkeys(lake.spec("recommendations").columns),
            "customer_id": STALE_CUSTOMER,
            "rank": 1,
            "product_id": "prod_9999",
            "score": 1.0,
            "source": "popular",
            "generated_at": AS_OF - timedelta(days=1),
        }
    ]
    lake.append("recommendations", spark.createDataFrame(stale, lake.spec("recommendations").schema))


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookServer]:
    with WebhookServer(secret=SECRET, rate_limit=None) as server:
        yield server


@pytest.fixture(scope="module")
def env(spark, airflow_db, tmp_path_factory, webhook) -> Iterator[Path]:  # noqa: F811
    """A built lake and the environment the DAG tasks read their settings from."""
    from lakecdp.config import load_settings

    root = tmp_path_factory.mktemp("dags")
    conf = write_conf(root, webhook.url)
    patch = pytest.MonkeyPatch()
    patch.setenv("LAKECDP_CONF_DIR", str(conf))
    patch.setenv("LAKECDP_WEBHOOK_SECRET", SECRET)
    patch.delenv("LAKECDP_SPARK_SUBMIT", raising=False)
    patch.delenv("LAKECDP__LAKE__ROOT", raising=False)
    build_lake(spark, load_settings(), root)
    yield root
    patch.undo()


@pytest.fixture(scope="module")
def dags(dag_bag):  # noqa: F811
    """The parsed DAGs with retries off: a broken task fails the test now instead of after back-off."""
    from airflow.dag_processing.dagbag import BundleDagBag

    fresh = BundleDagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder").dags
    for dag in fresh.values():
        for task in dag.tasks:
            task.retries = 0
    return fresh


def states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def rows(lake_root: Path, table: str) -> list[dict]:
    return DeltaTable(str(lake_root / table)).to_pyarrow_table().to_pylist()


def version(lake_root: Path, table: str) -> int:
    return DeltaTable(str(lake_root / table)).version()


def asset_events(name: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.settings import Session

    with Session() as session:
        found = session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id).filter(AssetModel.name == name).all()
        return [dict(e.extra or {}) for e in found]


@pytest.fixture(scope="module")
def pipeline(env, dags, webhook):
    """retrain -> score -> export, each with dag.test() on the same data interval."""
    lake = env / "lake"
    recommendations_version = version(lake, "recommendations")
    runs = {dag_id: dags[dag_id].test(logical_date=AS_OF) for dag_id in ("lakecdp_retrain", "lakecdp_score", "lakecdp_export")}
    return {"runs": runs, "lake": lake, "requests": len(webhook.requests), "recommendations_version": recommendations_version}


def test_retrain_trains_gates_and_publishes_cards(pipeline):
    run, lake = pipeline["runs"]["lakecdp_retrain"], pipeline["lake"]
    assert run.state == "success", states(run)
    assert set(states(run).values()) == {"success"}
    for model in ("purchase_intent", "behaviour_clusters"):
        assert (lake / "_models" / model / "champion").read_text().strip() == "v0001"
        assert "<html" in (lake / "_model_cards" / f"{model}.html").read_text().lower()
    index = json.loads((lake / "_model_cards" / "index.json").read_text())
    assert index["as_of"] == AS_OF.isoformat() and index["models"]["purchase_intent"]["promoted"] is True
    for suite in ("events", "profile_features"):
        assert json.loads((lake / "_quality" / suite / f"{RUN_KEY}.json").read_text())["success"] is True
    assert [e["as_of"] for e in asset_events("lakecdp_models")] == [AS_OF.isoformat()]


def test_score_writes_every_profile_and_refreshes_the_predictive_segment(pipeline):
    run, lake = pipeline["runs"]["lakecdp_score"], pipeline["lake"]
    assert run.state == "success", states(run)
    assert states(run)["flag_drift"] in {"skipped", "success"}
    scores = rows(lake, "profile_scores")
    assert {r["customer_id"] for r in scores} == {r["customer_id"] for r in rows(lake, "profile_features")}
    assert all(0.0 <= r["intent_probability"] <= 1.0 for r in scores)
    assert {r["scored_at"].replace(tzinfo=UTC) for r in scores} == {AS_OF}  # the interval's as-of, not now()
    top = {r["customer_id"] for r in scores if r["intent_decile"] <= 3}
    members = {r["customer_id"] for r in rows(lake, "segment_membership") if r["segment"] == PREDICTIVE}
    assert top and members == top
    published = asset_events("lakecdp_profile_scores")
    assert published[-1]["as_of"] == AS_OF.isoformat()
    assert published[-1]["segment_membership_version"] == version(lake, "segment_membership")


def test_score_rebuilds_recommendations_with_no_bought_or_out_of_stock_product(pipeline, env):
    run, lake = pipeline["runs"]["lakecdp_score"], pipeline["lake"]
    assert states(run)["build_recommendations"] == "success"
    assert version(lake, "recommendations") > pipeline["recommendations_version"]
    recs = rows(lake, "recommendations")
    assert STALE_CUSTOMER not in {r["customer_id"] for r in recs}  # replaced, not appended to
    assert {r["generated_at"].replace(tzinfo=UTC) for r in recs} == {AS_OF}
    profiles = {r["customer_id"] for r in rows(lake, "profile_features")}
    by_customer: dict[str, list[int]] = {}
    for r in recs:
        by_customer.setdefault(r["customer_id"], []).append(r["rank"])
    assert set(by_customer) <= profiles and len(by_customer) >= len(profiles) // 2
    assert all(sorted(ranks) == list(range(1, len(ranks) + 1)) and len(ranks) <= 8 for ranks in by_customer.values())
    catalog = list(csv.DictReader((env / "generated" / "catalog" / "products.csv").open()))
    out_of_stock = {p["product_id"] for p in catalog if p["in_stock"] == "false"}
    assert out_of_stock and not out_of_stock & {r["product_id"] for r in recs}
    orders = [r for r in rows(lake, "events") if r["event"] == "Order Completed" and r["timestamp"].replace(tzinfo=UTC) < AS_OF]
    bought = {(o["customer_id"], line["product_id"]) for o in orders for line in json.loads(o["properties_json"])["products"]}
    assert bought and not bought & {(r["customer_id"], r["product_id"]) for r in recs}
    sources = {r["source"] for r in recs}
    assert "cf" in sources and sources <= {"rule", "cf", "content", "category", "popular"}
    assert all(r["product_name"] for r in recs)


def test_export_gates_then_sends_only_consented_members(pipeline, webhook):
    run, lake = pipeline["runs"]["lakecdp_export"], pipeline["lake"]
    assert run.state == "success", states(run)
    assert not webhook.violations
    sent = [r for r in rows(lake, "export_log") if r["state"] == "sent"]
    assert sent and {r["segment"] for r in sent} <= {PREDICTIVE, "viewed_shoes_24h"}
    assert sum(webhook.raw_deliveries.values()) == len(sent)
    opted_in = {r["customer_id"] for r in rows(lake, "customers") if r["marketing_opt_in"]}
    assert {r["customer_id"] for r in sent} <= opted_in
    reports = list((lake / "_export_reports").glob("*.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["errors"] == {}
    batches = json.loads((lake / "_quality" / "export_batches" / f"{RUN_KEY}.json").read_text())
    assert batches["success"] is True and batches["row_count"] == len(sent)


def copy_lake(env: Path, name: str, patch: pytest.MonkeyPatch) -> Path:
    """A copy of the built lake (tables, registry, quality history) that the DAG tasks then use."""
    copy = env / name
    shutil.copytree(env / "lake", copy)
    patch.setenv("LAKECDP__LAKE__ROOT", str(copy))
    return copy


def test_planted_probability_fails_the_score_gate_without_retries(pipeline, env, dags, spark, monkeypatch):
    """The score DAG's gate task on a planted probability of 1.5: a failure naming the expectation, no retry.

    (That a failed gate stops everything downstream, so nothing is published or sent, is what the
    planted-duplicate test below runs end to end with dag.test().)
    """
    from airflow.sdk.exceptions import AirflowFailException

    from lakecdp.config import load_settings
    from lakecdp.lake import open_lake

    lake_root = copy_lake(env, "lake-bad-scores", monkeypatch)
    lake = open_lake(spark, load_settings().lake)
    row = {**rows(lake_root, "profile_scores")[0], "customer_id": "planted_customer", "intent_probability": 1.5}
    lake.append("profile_scores", spark.createDataFrame([row], lake.spec("profile_scores").schema))
    gate = dags["lakecdp_score"].get_task("quality_gate")

    with pytest.raises(AirflowFailException) as failure:
        gate.python_callable({"as_of": AS_OF.isoformat(), "profile_scores_version": version(lake_root, "profile_scores")})

    assert "expect_column_values_to_be_between(intent_probability): 1 of" in str(failure.value)
    assert "e.g. [1.5]" in str(failure.value)
    result = json.loads((lake_root / "_quality" / "profile_scores" / "latest.json").read_text())
    assert [(o["expectation"], o["columns"]) for o in result["outcomes"] if not o["success"]] == [
        ("expect_column_values_to_be_between", ["intent_probability"])
    ]


def test_planted_duplicate_membership_stops_the_export_before_anything_is_sent(pipeline, env, dags, spark, webhook, monkeypatch):
    from lakecdp.config import load_settings
    from lakecdp.lake import open_lake

    lake_root = copy_lake(env, "lake-bad-membership", monkeypatch)
    lake = open_lake(spark, load_settings().lake)
    duplicate = next(r for r in rows(lake_root, "segment_membership") if r["segment"] == PREDICTIVE)
    lake.append("segment_membership", spark.createDataFrame([duplicate], lake.spec("segment_membership").schema))
    requests, log_version = len(webhook.requests), version(lake_root, "export_log")

    run = dags["lakecdp_export"].test(logical_date=AS_OF)

    assert run.state == "failed"
    assert states(run) == {"quality_gate": "failed", "export_to_destinations": "upstream_failed", "export_report": "upstream_failed"}
    assert len(webhook.requests) == requests
    assert version(lake_root, "export_log") == log_version
    result = json.loads((lake_root / "_quality" / "segment_membership" / "latest.json").read_text())
    assert [o["expectation"] for o in result["outcomes"] if not o["success"]] == ["expect_compound_columns_to_be_unique"]


def test_maintenance_erases_queued_customers_compacts_and_checkpoints(pipeline, env, dags, spark, monkeypatch):
    from lakecdp.config import load_settings
    from lakecdp.lake import open_lake

    lake_root = copy_lake(env, "lake-maintenance", monkeypatch)
    # This lake was built without an online state: reconcile would rebuild it for every customer from bronze
    # (what test_online_stream.py's repair test checks) and double this test's time. With batch, it skips.
    monkeypatch.setenv("LAKECDP__STATE__MODE", "batch")
    # On delta-rs, which writes the checkpoints itself (checkpoint_tables runs, not skipped) and compacts and
    # vacuums a small table in 0.3 s against 3 s on delta-spark (test_lake_contract.py runs both engines).
    monkeypatch.setenv("LAKECDP__LAKE__ENGINE", "delta-rs")
    lake = open_lake(spark, load_settings().lake)
    erased = rows(lake_root, "profile_scores")[0]["customer_id"]
    try:
        from lakecdp.privacy.erasure import request_erasure
    except ImportError:
        request_erasure = None
    if request_erasure is not None:
        request_erasure(lake, erased, AS_OF)

    run = dags["lakecdp_maintenance"].test(logical_date=AS_OF)

    assert run.state == "success", states(run)
    for table in ("events", "profile_scores", "segment_membership"):
        assert list((lake_root / table / "_delta_log").glob("*.checkpoint.parquet"))
    if request_erasure is not None:
        assert rows(lake_root, "erasure_requests") == []
        assert len(rows(lake_root, "erasure_log")) == 1
        assert erased not in {r["customer_id"] for r in rows(lake_root, "profile_scores")}


# ---- the real scheduler on a lake whose data does not reach the run's as-of (#23 item 6) --------------
LATE = datetime(2026, 12, 1, tzinfo=UTC)  # 30 days after the generated data ends


def test_retrain_as_of_past_the_data_skips_with_the_reason(pipeline, env, dags, monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    lake_root = copy_lake(env, "lake-retrain-late", monkeypatch)
    versions = len(list((lake_root / "_models" / "purchase_intent").glob("v*")))
    announced = len(asset_events("lakecdp_models"))

    run = dags["lakecdp_retrain"].test(logical_date=LATE)

    assert run.state == "success", states(run)
    assert set(states(run).values()) == {"skipped"}
    assert len(list((lake_root / "_models" / "purchase_intent").glob("v*"))) == versions
    assert len(asset_events("lakecdp_models")) == announced
    with pytest.raises(AirflowSkipException) as skipped:
        dags["lakecdp_retrain"].get_task("point_in_time_training_set").python_callable(data_interval_end=LATE)
    reason = str(skipped.value)
    assert f"as-of {LATE.isoformat()}" in reason and "days earlier" in reason and "Fix: run with an as-of inside the data" in reason


def test_score_before_any_champion_skips_with_the_reason(pipeline, env, dags, monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    lake_root = copy_lake(env, "lake-no-champion", monkeypatch)
    shutil.rmtree(lake_root / "_models")
    scores_version, recommendations_version = version(lake_root, "profile_scores"), version(lake_root, "recommendations")

    run = dags["lakecdp_score"].test(logical_date=AS_OF)

    assert run.state == "success", states(run)
    # Recommendations need no model: they are rebuilt; everything that reads scores skips.
    task_states = states(run)
    assert task_states.pop("build_recommendations") == "success"
    assert set(task_states.values()) == {"skipped"}
    assert version(lake_root, "profile_scores") == scores_version
    assert version(lake_root, "recommendations") == recommendations_version + 1
    with pytest.raises(AirflowSkipException, match="no champion model yet for purchase_intent, behaviour_clusters.*run lakecdp_retrain"):
        dags["lakecdp_score"].get_task("check_inputs").python_callable(data_interval_end=AS_OF)


def test_score_as_of_long_after_the_newest_event_is_refused_before_profile_scores_changes(pipeline, env, dags, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    lake_root = copy_lake(env, "lake-stale-score", monkeypatch)
    scores_version, recommendations_version = version(lake_root, "profile_scores"), version(lake_root, "recommendations")
    drift_flags = len(asset_events("lakecdp_model_drift"))

    run = dags["lakecdp_score"].test(logical_date=LATE)

    assert run.state == "failed"
    assert states(run) == {
        "check_inputs": "failed",
        "score_profiles": "upstream_failed",
        "quality_gate": "upstream_failed",
        "flag_drift": "upstream_failed",
        "build_recommendations": "skipped",  # the events do not reach the as-of: the last build stays
        "refresh_predictive_segments": "skipped",  # Airflow weighs a skipped upstream before a failed one
    }
    assert version(lake_root, "profile_scores") == scores_version
    assert version(lake_root, "recommendations") == recommendations_version
    assert {r["scored_at"].replace(tzinfo=UTC) for r in rows(lake_root, "profile_scores")} == {AS_OF}
    assert len(asset_events("lakecdp_model_drift")) == drift_flags
    with pytest.raises(AirflowFailException) as refused:
        dags["lakecdp_score"].get_task("check_inputs").python_callable(data_interval_end=LATE)
    newest = max(r["timestamp"] for r in rows(lake_root, "events")).replace(tzinfo=UTC)
    message = str(refused.value)
    assert f"as-of {LATE.isoformat()}" in message and f"is at {newest.isoformat()}" in message
    assert "Fix: run with an as-of inside the data" in message and "profile_scores was not changed" in message


def scenario_conf(env: Path, name: str, esp: dict, patch: pytest.MonkeyPatch) -> None:
    """The module's conf plus one more local file (read last) replacing the ESP destinations."""
    conf = env / f"conf-{name}"
    shutil.copytree(env / "conf", conf)
    (conf / "local" / "zz-scenario.yaml").write_text(yaml.safe_dump({"esp": {"destinations": esp}}))
    patch.setenv("LAKECDP_CONF_DIR", str(conf))


@pytest.fixture
def s3_server(moto_server) -> str:
    return moto_server


def test_s3_export_reports_every_request_it_made_and_an_empty_diff_skips(pipeline, env, dags, monkeypatch, s3_server):
    import boto3

    lake_root = copy_lake(env, "lake-s3", monkeypatch)
    scenario_conf(
        env,
        "s3",
        {
            "webhook": {"enabled": False},
            "s3_drop": {"enabled": True, "bucket": "drop", "endpoint_url": s3_server, "format": "jsonl", "segments": [PREDICTIVE]},
        },
        monkeypatch,
    )
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="drop")
    before = set((lake_root / "_export_reports").glob("*.json"))

    run = dags["lakecdp_export"].test(logical_date=AS_OF)

    assert run.state == "success", states(run)
    [path] = set((lake_root / "_export_reports").glob("*.json")) - before
    report = json.loads(path.read_text())
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="drop")["Contents"]]
    parts = [k for k in keys if "/part-" in k]
    assert parts and len(keys) == len(parts) + 1  # and the manifest
    # A put per part, then the manifest: one list, a head per part, one put (no retry against a local server).
    assert report["requests"] == {"s3_drop": 2 * len(parts) + 2}
    assert sum(sum(c["sent"].values()) for c in report["destinations"]["s3_drop"].values()) > 0

    again = dags["lakecdp_export"].test(logical_date=AS_OF)

    assert again.state == "success", states(again)
    assert states(again) == {"quality_gate": "success", "export_to_destinations": "skipped", "export_report": "skipped"}
    assert len(s3.list_objects_v2(Bucket="drop")["Contents"]) == len(keys)


def test_export_with_no_destination_enabled_skips(pipeline, env, dags, webhook, monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    copy_lake(env, "lake-no-destination", monkeypatch)
    scenario_conf(env, "none", {"webhook": {"enabled": False}}, monkeypatch)
    requests = len(webhook.requests)

    run = dags["lakecdp_export"].test(logical_date=AS_OF)

    assert run.state == "success", states(run)
    assert set(states(run).values()) == {"skipped"}
    assert len(webhook.requests) == requests
    with pytest.raises(AirflowSkipException, match="no ESP destination is enabled.*enabled: true"):
        dags["lakecdp_export"].get_task("quality_gate").python_callable(data_interval_end=AS_OF)
