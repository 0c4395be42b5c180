"""DAG files: import cleanly and fast with no work at import, follow the policies, are wired as designed."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from tests.integration.airflow_conftest import DAG_IDS, DAGS, airflow_home, dag_bag  # noqa: F401

HEAVY_MODULES = ("pyspark", "great_expectations", "sklearn", "deltalake", "pandas", "lakecdp.lake", "models")


def test_dag_files_import_without_errors(dag_bag):  # noqa: F811
    assert dag_bag.import_errors == {}
    assert sorted(dag_bag.dags) == sorted(DAG_IDS)


def test_dag_files_parse_fast(dag_bag):  # noqa: F811
    # Airflow re-parses every file every few seconds; its own timeout is 30 s. Ours take milliseconds.
    slow = {stat.file: stat.duration for stat in dag_bag.dagbag_stats if stat.duration > timedelta(seconds=2)}
    assert not slow


def test_dag_files_do_no_work_at_import(airflow_home):  # noqa: F811
    """Parsing imports neither Spark, Great Expectations, sklearn, delta-rs nor lakecdp's lake (fresh interpreter)."""
    probe = (
        "import runpy, sys, glob\n"
        f"sys.path.insert(0, {str(DAGS)!r})\n"
        f"for path in sorted(glob.glob({str(DAGS / 'lakecdp_*.py')!r})):\n"
        "    runpy.run_path(path)\n"
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(airflow_home)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120, cwd=DAGS.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1:] in ([], [""]), f"imported at parse time: {done.stdout.strip()}"


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_policies(dag_bag, dag_id):  # noqa: F811
    dag = dag_bag.dags[dag_id]
    assert "lakecdp" in dag.tags and len(dag.tags) >= 2
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.doc_md and dag_id in dag.doc_md
    assert dag.start_date == datetime(2026, 11, 1, tzinfo=UTC)
    for task in dag.tasks:
        assert task.retries >= 2, task.task_id
        assert task.retry_exponential_backoff >= 2, task.task_id
        assert task.max_retry_delay is not None and task.execution_timeout is not None, task.task_id
        assert task.owner == "lakecdp"


def upstream(dag, task_id: str) -> set[str]:
    return {t.task_id for t in dag.get_task(task_id).get_flat_relatives(upstream=True)}


def test_every_writer_runs_after_its_quality_gate(dag_bag):  # noqa: F811
    dags = dag_bag.dags
    assert "quality_gate" in upstream(dags["lakecdp_retrain"], "train_models")
    assert "quality_gate" in upstream(dags["lakecdp_score"], "refresh_predictive_segments")
    assert "quality_gate" in upstream(dags["lakecdp_export"], "export_to_destinations")
    assert upstream(dags["lakecdp_export"], "quality_gate") == set()


def test_recommendations_are_rebuilt_before_the_export_is_announced_without_waiting_for_models(dag_bag):  # noqa: F811
    dag = dag_bag.dags["lakecdp_score"]
    assert [t.task_id for t in dag.tasks if "recommendations" in t.task_id] == ["build_recommendations"]
    assert "build_recommendations" in upstream(dag, "refresh_predictive_segments")
    assert upstream(dag, "build_recommendations") == set()  # a lake with no champion yet still gets recommendations
    assert "build_recommendations" not in upstream(dag, "flag_drift")
    assert "build_recommendations" in dag.doc_md and "jobs/recs.py" in dag.doc_md


def test_assets_chain_retrain_score_export(dag_bag):  # noqa: F811
    from lakecdp_airflow.common import MODEL_DRIFT, MODELS, SCORES

    dags = dag_bag.dags
    assert dags["lakecdp_retrain"].get_task("announce_champions").outlets == [MODELS]
    assert dags["lakecdp_score"].get_task("refresh_predictive_segments").outlets == [SCORES]
    assert dags["lakecdp_score"].get_task("flag_drift").outlets == [MODEL_DRIFT]
    assert dags["lakecdp_score"].timetable.asset_condition == MODELS
    assert dags["lakecdp_retrain"].timetable.asset_condition == MODEL_DRIFT
    assert list(dags["lakecdp_export"].timetable.asset_condition.objects) == [SCORES]


def test_time_schedules(dag_bag):  # noqa: F811
    expressions = {
        "lakecdp_retrain": "0 2 * * 0",  # weekly (and on drift)
        "lakecdp_score": "0 4 * * *",  # daily (and after retrain)
        "lakecdp_maintenance": "30 1 * * *",
    }
    for dag_id, expression in expressions.items():
        timetable = dag_bag.dags[dag_id].timetable
        cron = getattr(timetable, "timetable", timetable)  # AssetOrTimeSchedule wraps the cron timetable
        assert (cron.expression, str(cron.timezone)) == (expression, "UTC")


def test_vacuum_retention_cannot_go_below_delta_default(dag_bag):  # noqa: F811
    from airflow.sdk.definitions.param import ParamValidationError

    param = dag_bag.dags["lakecdp_maintenance"].params.get_param("vacuum_retention_hours")
    assert param.resolve(168) == 168
    with pytest.raises(ParamValidationError):
        param.resolve(24)


def context(*, interval_end=None, run_after=None, events=None) -> dict:
    return {"data_interval_end": interval_end, "dag_run": SimpleNamespace(run_after=run_after), "triggering_asset_events": events or {}}


def test_as_of_comes_from_the_producer_then_the_interval_then_run_after(dag_bag):  # noqa: F811
    from lakecdp_airflow.common import MODELS, as_of_instant

    end, stated, created = (datetime(2026, 11, d, 4, tzinfo=UTC) for d in (1, 2, 3))
    event = SimpleNamespace(extra={"as_of": stated.isoformat()})
    assert as_of_instant(context(interval_end=end, run_after=created, events={MODELS: [event]}), MODELS) == stated
    assert as_of_instant(context(interval_end=end, run_after=created, events={MODELS: [SimpleNamespace(extra=None)]}), MODELS) == end
    assert as_of_instant(context(interval_end=None, run_after=created)) == created


def test_spark_submit_path_builds_the_job_command():
    from lakecdp.flows import nightly as steps

    assert steps.spark_submit_command({}) is None
    submit = steps.spark_submit_command({steps.SPARK_SUBMIT_ENV: "spark-submit --master 'spark://127.0.0.1:7077'"})
    assert submit == ["spark-submit", "--master", "spark://127.0.0.1:7077"]
    command = steps.job_command(submit, "score", ["--as-of", "2026-11-01T00:00:00+00:00"])
    assert command[:3] == submit and command[3] == str(DAGS.parent / "jobs" / "score.py") and command[-1].startswith("2026")
    with pytest.raises(FileNotFoundError):
        steps.job_command(submit, "no_such_job", [])


@pytest.mark.parametrize("job", ["train", "score", "recs", "export"])
def test_job_entry_points_are_the_cli(job):
    done = subprocess.run([sys.executable, str(DAGS.parent / "jobs" / f"{job}.py"), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--lake" in done.stdout
