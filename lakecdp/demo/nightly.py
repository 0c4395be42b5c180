"""The nightly chain through the real DAGs in dags/, run in-process with Airflow's `dag.test()`.

Airflow reads its configuration once per process: when it is not loaded yet, the demo gives it a
home of its own (a fresh SQLite metadata DB under the demo's output folder). The tasks load
lakecdp's settings from LAKECDP_CONF_DIR and reuse this process's SparkSession.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

DAGS = Path(__file__).resolve().parents[2] / "dags"
CHAIN = ("lakecdp_retrain", "lakecdp_score", "lakecdp_export")


@dataclass(frozen=True)
class DagResult:
    dag_id: str
    state: str
    tasks: dict[str, str]  # task id -> final state


class DagFailed(RuntimeError):
    pass


def prepare_airflow(home: Path) -> bool:
    """An Airflow home with a fresh metadata DB; False when Airflow is already configured in this process."""
    if "airflow.settings" in sys.modules:
        return False
    home.mkdir(parents=True, exist_ok=True)
    (home / "airflow.db").unlink(missing_ok=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
    )
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    _quiet_dependency_warnings()
    from airflow.utils.db import resetdb

    resetdb()
    return True


def _quiet_dependency_warnings() -> None:
    """Airflow's imports warn about its own dependencies' deprecations: nothing a demo user can act on."""
    warnings.filterwarnings("ignore", message=".*GitWildMatchPattern.*")
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")


def load_dags() -> dict[str, Any]:
    """The DAG files parsed as Airflow's DAG processor parses them; retries off (a broken task fails the demo now)."""
    if not DAGS.is_dir():
        raise DagFailed(f"no dags/ folder at {DAGS}: run the demo from a checkout of the repository")
    from airflow.dag_processing.dagbag import BundleDagBag

    _quiet_dependency_warnings()  # again: loading Airflow resets the warning filters
    bag = BundleDagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")
    if bag.import_errors:
        raise DagFailed(
            "DAG import errors: " + "; ".join(f"{path}: {error.strip().splitlines()[-1]}" for path, error in bag.import_errors.items())
        )
    for dag in bag.dags.values():
        for task in dag.tasks:
            task.retries = 0
    return bag.dags


def run_dag(dags: dict[str, Any], dag_id: str, as_of: datetime) -> DagResult:
    """One `dag.test()` run whose data interval ends at `as_of`; a failed task raises DagFailed naming it."""
    run = dags[dag_id].test(logical_date=as_of)
    tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    result = DagResult(dag_id, str(run.state), tasks)
    if result.state != "success":
        failed = [task for task, state in tasks.items() if state in ("failed", "upstream_failed")]
        raise DagFailed(f"{dag_id} ended {result.state}: tasks {', '.join(failed) or '?'} failed (the reason is in the log above)")
    return result
