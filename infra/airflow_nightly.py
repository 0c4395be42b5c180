"""`infra/airflow.sh nightly [AS_OF]`: the nightly chain now, run by the local Airflow's own scheduler.

Through the REST API of the Airflow `infra/airflow.sh start` runs: unpauses the three DAGs, triggers
lakecdp_retrain with a data interval ending at AS_OF (default: the lake's newest event), then follows
the chain the assets drive (a promotion triggers lakecdp_score as of the same instant, which
triggers lakecdp_export). When retrain promotes nothing, lakecdp_score is triggered the same way.
Prints each run's task states and, from the task logs, why a task skipped or failed.

Environment (set by infra/airflow.sh): AIRFLOW_HOME, LAKECDP_AIRFLOW_PORT; lakecdp's own settings
(LAKECDP_CONF_DIR, LAKECDP__*) for the lake.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

CHAIN = ("lakecdp_retrain", "lakecdp_score", "lakecdp_export")
DONE = {"success", "failed"}
# Training on 2 cores takes minutes; an asset-triggered run appears within a few scheduler loops.
RUN_TIMEOUT_S = 3 * 3600
FOLLOW_TIMEOUT_S = 180


def newest_event() -> datetime:
    """The lake's newest event time, rounded up to the whole second (from Delta's file statistics)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    from lakecdp.config import load_settings

    lake = load_settings().lake
    path, options = f"{lake.root.rstrip('/')}/events", lake.storage_options or None
    if not DeltaTable.is_deltatable(path, storage_options=options):
        sys.exit(f"no events table at {path}: run `make demo` (or the stream) first, or give AS_OF")
    table = DeltaTable(path, storage_options=options)
    newest = pc.max(pa.table(table.get_add_actions(flatten=True))["max.timestamp"]).as_py()
    if newest is None:  # files written without statistics: read the column
        newest = pc.max(pa.table(table.to_pyarrow_dataset().to_table(columns=["timestamp"]))["timestamp"]).as_py()
    if newest is None:
        sys.exit(f"the events table at {path} is empty: load events first, or give AS_OF")
    newest = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
    # Delta's statistics keep milliseconds: the next whole second is at or after every event.
    return newest.replace(microsecond=0) + timedelta(seconds=1)


class Airflow:
    def __init__(self, home: Path, port: str) -> None:
        base = f"http://127.0.0.1:{port}"
        users = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        user, password = next(iter(users.items()))
        token = httpx.post(f"{base}/auth/token", json={"username": user, "password": password}, timeout=30)
        token.raise_for_status()
        self.home = home
        self.api = httpx.Client(base_url=f"{base}/api/v2", headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=30)

    def get(self, path: str, **params: Any) -> Any:
        response = self.api.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def unpause(self, dag_id: str) -> None:
        for _ in range(60):  # the DAG processor registers the DAGs a few seconds after start
            response = self.api.get(f"/dags/{dag_id}")
            if response.status_code == 200:
                break
            time.sleep(2)
        else:
            sys.exit(f"{dag_id} is not registered with Airflow: check `infra/airflow.sh status` and the DAG processor's log")
        if response.json()["is_paused"]:
            self.api.patch(f"/dags/{dag_id}", params={"update_mask": "is_paused"}, json={"is_paused": False}).raise_for_status()
            print(f"unpaused {dag_id} (the scheduler also runs its latest missed slot, as of that slot's time)")

    def trigger(self, dag_id: str, as_of: datetime) -> str:
        """A run whose data interval ends at `as_of`; the existing one is cleared (run again) when there is one."""
        stamp = as_of.isoformat()
        body = {
            "dag_run_id": f"nightly__{stamp}",
            "logical_date": stamp,
            "data_interval_start": stamp,
            "data_interval_end": stamp,
            "note": "infra/airflow.sh nightly",
        }
        response = self.api.post(f"/dags/{dag_id}/dagRuns", json=body)
        if response.status_code != 409:
            response.raise_for_status()
            return response.json()["dag_run_id"]
        # Airflow keeps one run per logical date (and drops the data interval of a run without one).
        [existing] = self.get(f"/dags/{dag_id}/dagRuns", logical_date_gte=stamp, logical_date_lte=stamp)["dag_runs"]
        run_id = existing["dag_run_id"]
        self.api.post(f"/dags/{dag_id}/dagRuns/{run_id}/clear", json={"dry_run": False}).raise_for_status()
        print(f"{dag_id}: run {run_id} is as of {stamp} already: cleared, so it runs again")
        return run_id

    def wait(self, dag_id: str, run_id: str) -> str:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            state = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in DONE:
                return state
            time.sleep(5)
        sys.exit(f"{dag_id} run {run_id} did not finish in {RUN_TIMEOUT_S} s; see the UI")

    def follower(self, dag_id: str, as_of: datetime) -> str | None:
        """The asset-triggered run of `dag_id` whose triggering event states `as_of`, once the scheduler made it."""
        deadline = time.monotonic() + FOLLOW_TIMEOUT_S
        while time.monotonic() < deadline:
            for run in self.get(f"/dags/{dag_id}/dagRuns", run_type="asset_triggered", order_by="-run_after", limit=5)["dag_runs"]:
                events = self.get(f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")["asset_events"]
                if any(_same_instant((e.get("extra") or {}).get("as_of"), as_of) for e in events):
                    return run["dag_run_id"]
            time.sleep(3)
        return None

    def tasks(self, dag_id: str, run_id: str) -> dict[str, str]:
        found = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"]: t["state"] for t in found}

    def why(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        """The skip reason or the failure of a task, from its local log file (the worker writes it here)."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        for log in sorted(folder.glob("attempt=*.log"), reverse=True):
            for line in reversed(log.read_text(errors="replace").splitlines()):
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("event") == "Skipping task." and entry.get("reason"):
                    return entry["reason"]
                for detail in entry.get("error_detail") or []:
                    if detail.get("exc_value"):
                        return f"{detail.get('exc_type')}: {detail['exc_value']}"
        return None


def _same_instant(text: str | None, as_of: datetime) -> bool:
    return bool(text) and datetime.fromisoformat(text).astimezone(UTC) == as_of


def report(airflow: Airflow, dag_id: str, run_id: str, state: str) -> dict[str, str]:
    print(f"== {dag_id} {run_id}: {state}")
    tasks = airflow.tasks(dag_id, run_id)
    for task_id, task_state in tasks.items():
        print(f"  {task_id:<28} {task_state}")
    for task_id, task_state in tasks.items():
        if task_state in ("skipped", "failed"):
            reason = airflow.why(dag_id, run_id, task_id)
            if reason and reason != "no drift above models.drift.psi_threshold":
                print(f"  why ({task_id}): {reason}")
    return tasks


def run_or_follow(airflow: Airflow, dag_id: str, as_of: datetime, triggered_by_asset: bool) -> tuple[str, dict[str, str]]:
    run_id = airflow.follower(dag_id, as_of) if triggered_by_asset else None
    if run_id is None:
        if triggered_by_asset:
            print(f"no asset-triggered {dag_id} run appeared in {FOLLOW_TIMEOUT_S} s: triggering it")
        run_id = airflow.trigger(dag_id, as_of)
    print(f"{dag_id}: run {run_id} as of {as_of.isoformat()}, waiting ...", flush=True)
    state = airflow.wait(dag_id, run_id)
    return state, report(airflow, dag_id, run_id, state)


def main(argv: list[str]) -> int:
    as_of = datetime.fromisoformat(argv[1]) if len(argv) > 1 and argv[1] else newest_event()
    as_of = (as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)).astimezone(UTC)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dags"))
    from lakecdp_airflow.common import START_DATE

    if as_of < START_DATE:
        sys.exit(
            f"as-of {as_of.isoformat()} is before the DAGs' start_date {START_DATE.isoformat()}: Airflow would run no task. Give a later AS_OF."
        )
    airflow = Airflow(Path(os.environ["AIRFLOW_HOME"]), os.environ["LAKECDP_AIRFLOW_PORT"])
    print(f"nightly chain as of {as_of.isoformat()}")
    for dag_id in CHAIN:
        airflow.unpause(dag_id)

    state, tasks = run_or_follow(airflow, "lakecdp_retrain", as_of, triggered_by_asset=False)
    if state != "success":
        return 1
    state, tasks = run_or_follow(airflow, "lakecdp_score", as_of, triggered_by_asset=tasks.get("announce_champions") == "success")
    if state != "success":
        return 1
    if tasks.get("refresh_predictive_segments") != "success":
        print("lakecdp_score published no scores (see why above): lakecdp_export is not triggered")
        return 0
    state, _ = run_or_follow(airflow, "lakecdp_export", as_of, triggered_by_asset=True)
    return 0 if state == "success" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
