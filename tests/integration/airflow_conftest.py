"""Airflow for tests: a temp AIRFLOW_HOME and a SQLite metadata DB, migrated once per session.

Import the fixtures into a test module:
    from tests.integration.airflow_conftest import airflow_db, airflow_home, dag_bag  # noqa: F401

Airflow reads its configuration when it is first imported, so nothing may import airflow
before `airflow_home` has set the environment (test modules import it inside tests only).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAG_IDS = ("lakecdp_retrain", "lakecdp_score", "lakecdp_export", "lakecdp_maintenance")

# Each module importing these fixtures gets its own fixture definition (pytest registers them per
# module), but Airflow's configuration is per process: one home and one DB for the whole session.
_SESSION: dict[str, object] = {}


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    """AIRFLOW_HOME, the SQLite DB URL and the DAGs folder (this repo's dags/), set before airflow loads."""
    home = _SESSION.setdefault("home", tmp_path_factory.mktemp("airflow_home"))
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
    if "airflow.settings" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(home):
        pytest.fail("airflow was imported before the airflow_home fixture set AIRFLOW_HOME: import airflow inside tests only")
    patch = pytest.MonkeyPatch()
    for key, value in env.items():
        patch.setenv(key, value)
    yield home
    patch.undo()


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """The metadata DB, created from scratch (reset + migrate) once per test session."""
    from airflow.utils.db import resetdb

    if "db" not in _SESSION:
        resetdb()
        _SESSION["db"] = airflow_home / "airflow.db"
    return _SESSION["db"]


@pytest.fixture(scope="session")
def dag_bag(airflow_home: Path):
    """The DAG files parsed the way Airflow's DAG processor does (the bundle root goes on sys.path)."""
    from airflow.dag_processing.dagbag import BundleDagBag

    if "dag_bag" not in _SESSION:
        _SESSION["dag_bag"] = BundleDagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")
    return _SESSION["dag_bag"]
