"""lakecdp_export: quality gate on membership and export batches -> export to every ESP destination -> report."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowSkipException
from lakecdp_airflow.common import SCORES, as_of_instant, lakecdp_dag, run_gate, skip_when_inputs_missing

from lakecdp.flows import nightly  # light: its lakecdp and models imports sit inside its functions

DOC_MD = """
### lakecdp_export
Runs whenever `lakecdp_score` publishes asset `lakecdp_profile_scores` (scores passed their gate and
predictive segments were refreshed).

The run SKIPS (reason in the log, nothing sent) when no destination is enabled in esp.yaml, when there
is no segment_membership table yet, and when the validated plan is empty (no member entered or left an
exported segment since the last export).

1. **quality_gate** - checkpoint `export` (expectations/segment_membership.yaml, export_batches.yaml):
   membership, and every planned batch of the dry-run plan (ids, duplicates, addresses, batch sizes, and
   consent re-derived independently: no consent-withdrawn customer may be in an upsert). A failure names
   the failed expectations; nothing is sent. The gate pins the segment_membership version it validated.
2. **export_to_destinations** - `lakecdp.export.runner.ExportRunner.run`, as `lakecdp export run` runs it:
   the diff since the last export, planned from the pinned membership version, to every enabled destination in conf esp.yaml, write-ahead logged in
   `export_log`; a retry resumes unfinished batches under their own idempotency keys.
3. **export_report** - counts (and requests made) per destination from the run report kept under `<lake root>/_export_reports/`.

`LAKECDP_SPARK_SUBMIT` set: the export runs through `jobs/export.py`. XCom carries run ids, versions, paths.
"""


@lakecdp_dag(
    "lakecdp_export",
    schedule=[SCORES],
    tags=["export", "quality"],
    doc_md=DOC_MD,
)
def lakecdp_export() -> None:
    @task
    def quality_gate(**context: Any) -> dict[str, Any]:
        as_of = as_of_instant(context, SCORES)
        with skip_when_inputs_missing():
            destinations = nightly.export_inputs(nightly.open_nightly())
        # Pinned: the gate validates this version and the export sends from it, whatever the stream
        # writes to segment_membership in between.
        membership_version = nightly.open_nightly().lake.version("segment_membership")
        suites = run_gate("export", as_of, {"segment_membership": membership_version})
        planned = next(s["row_count"] for s in suites if s["suite"] == "export_batches")
        return {
            "as_of": nightly.iso(as_of),
            "segment_membership_version": membership_version,
            "suites": suites,
            "destinations": destinations,
            "planned_members": planned,
        }

    @task(execution_timeout=timedelta(hours=3))
    def export_to_destinations(gate: dict[str, Any], **context: Any) -> dict[str, Any]:
        if gate["planned_members"] == 0:
            raise AirflowSkipException(
                f"nothing to export to {', '.join(gate['destinations'])}: the plan the gate validated is empty "
                "(no member entered or left an exported segment since the last export, and no batch is unfinished)"
            )

        attempt = f"{context['dag_run'].run_id}-try{context['ti'].try_number}"
        report_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", attempt)
        return nightly.export(nightly.open_nightly(), report_name, membership_version=gate["segment_membership_version"])

    @task
    def export_report(exported: dict[str, Any]) -> dict[str, Any]:
        return nightly.export_report(nightly.open_nightly(), exported)

    export_report(export_to_destinations(quality_gate()))


lakecdp_export()
