"""lakecdp_maintenance: erasure queue -> reconcile online state -> optimize/compact -> vacuum within retention -> Delta checkpoints."""

from __future__ import annotations

from typing import Any

from airflow.sdk import CronTriggerTimetable, Param, task
from lakecdp_airflow.common import as_of_instant, lakecdp_dag

from lakecdp.flows import nightly  # light: its lakecdp and models imports sit inside its functions

DOC_MD = """
### lakecdp_maintenance
Daily at 01:30 UTC, before scoring and retraining.

1. **process_erasure_queue** - erases every customer queued in `erasure_requests`
   (`lakecdp.privacy.erasure`, as `lakecdp privacy process-erasures`); skipped with a log line while
   that capability or its queue table does not exist. First, so the steps below compact and vacuum
   what it deleted.
2. **reconcile_online_state** - recomputes every profile and verdict from bronze with the batch
   executor, compares with the stream's online state (`lakecdp reconcile`), logs each difference and
   rebuilds the state from bronze when any exists; skipped with `state.mode: batch`.
3. **optimize_tables** - compacts small files of every existing table.
4. **vacuum_tables** - deletes files no version younger than `vacuum_retention_hours` needs
   (param, at least 168 h: Delta's default, which keeps a week of time travel and slow readers safe).
5. **checkpoint_tables** - writes a Delta checkpoint per table (delta-rs engine; delta-spark writes its own).

Every step is idempotent: a rerun finds nothing more to do.
"""


@lakecdp_dag(
    "lakecdp_maintenance",
    schedule=CronTriggerTimetable("30 1 * * *", timezone="UTC"),
    tags=["maintenance", "privacy"],
    doc_md=DOC_MD,
    params={"vacuum_retention_hours": Param(168, type="integer", minimum=168, description="VACUUM retention (>= 168 h)")},
)
def lakecdp_maintenance() -> None:
    @task
    def process_erasure_queue() -> dict[str, Any]:
        return nightly.process_erasure_queue(nightly.open_nightly())

    @task
    def reconcile_online_state(**context: Any) -> dict[str, Any]:
        return nightly.reconcile_online_state(nightly.open_nightly(), as_of_instant(context))

    @task
    def optimize_tables() -> dict[str, Any]:
        return nightly.optimize_tables(nightly.open_nightly())

    @task
    def vacuum_tables(**context: Any) -> dict[str, Any]:
        return nightly.vacuum_tables(nightly.open_nightly(), int(context["params"]["vacuum_retention_hours"]))

    @task
    def checkpoint_tables() -> dict[str, Any]:
        return nightly.checkpoint_tables(nightly.open_nightly())

    process_erasure_queue() >> reconcile_online_state() >> optimize_tables() >> vacuum_tables() >> checkpoint_tables()


lakecdp_maintenance()
