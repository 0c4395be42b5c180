"""`infra/airflow.sh start|status|stop`: the one command that gives a new user the Airflow UI.

Runs the real script (metadata DB migration, API server, scheduler, DAG processor, triggerer) in a
temporary AIRFLOW_HOME on a free port, then checks what a user would: healthy, the lakecdp DAGs
listed by the REST API behind the login, nothing listening beyond 127.0.0.1, and nothing left running
after stop.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "infra" / "airflow.sh"
DAG_IDS = {"lakecdp_retrain", "lakecdp_score", "lakecdp_export", "lakecdp_maintenance"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_processes(pgid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid:
                found.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def listening_addresses(processes: list[psutil.Process]) -> set[tuple[str, int]]:
    addresses = set()
    for process in processes:
        try:
            connections = process.net_connections(kind="inet")
        except psutil.Error:
            continue
        addresses |= {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}
    return addresses


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    home, port = tmp_path_factory.mktemp("airflow_home"), free_port()
    env = {**os.environ, "AIRFLOW_HOME": str(home), "LAKECDP_AIRFLOW_PORT": str(port), "VENV": str(Path(sys.executable).parents[1])}

    def script(action: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=300)

    started = script("start")
    try:
        yield {"home": home, "port": port, "script": script, "started": started}
    finally:
        script("stop")


def test_start_brings_up_every_component_on_loopback_with_the_dags(airflow):
    started, port, home = airflow["started"], airflow["port"], airflow["home"]
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"airflow is up: http://127.0.0.1:{port}" in started.stdout
    health = httpx.get(f"http://127.0.0.1:{port}/api/v2/monitor/health").json()
    assert {c: health[c]["status"] for c in ("metadatabase", "scheduler", "dag_processor", "triggerer")} == dict.fromkeys(
        ("metadatabase", "scheduler", "dag_processor", "triggerer"), "healthy"
    )

    password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    token = httpx.post(f"http://127.0.0.1:{port}/auth/token", json={"username": "admin", "password": password}).json()["access_token"]
    assert httpx.get(f"http://127.0.0.1:{port}/api/v2/dags").status_code == 401
    dag_ids: set[str] = set()
    for _ in range(60):  # the DAG processor parses ./dags a few seconds after it first heartbeats
        listed = httpx.get(f"http://127.0.0.1:{port}/api/v2/dags", headers={"Authorization": f"Bearer {token}"}).json()
        dag_ids = {d["dag_id"] for d in listed["dags"]}
        if dag_ids >= DAG_IDS:
            break
        time.sleep(1)
    assert dag_ids >= DAG_IDS
    errors = httpx.get(f"http://127.0.0.1:{port}/api/v2/importErrors", headers={"Authorization": f"Bearer {token}"}).json()
    assert errors["total_entries"] == 0, errors

    pgid = int((home / "standalone.pgid").read_text())
    listening = listening_addresses(group_processes(pgid))
    assert ("127.0.0.1", port) in listening
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, f"listening beyond loopback: {sorted(listening)}"
    assert airflow["script"]("status").returncode == 0


def test_stop_leaves_no_process_behind(airflow):
    pgid = int((airflow["home"] / "standalone.pgid").read_text())
    assert group_processes(pgid)
    stopped = airflow["script"]("stop")
    assert stopped.returncode == 0 and "airflow stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    assert group_processes(pgid) == []
    assert airflow["script"]("status").returncode == 3
