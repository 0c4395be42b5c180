"""What the lakecdp DAGs share: default args, the assets that chain them, the as-of instant, the gate.

Only constants and small functions: importing this does no work (no Spark, DB or config).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, dag
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from lakecdp.flows import nightly  # light: its lakecdp and models imports sit inside its functions

START_DATE = datetime(2026, 11, 1, tzinfo=UTC)
TAGS = ["lakecdp"]

# Retries are for flaky infrastructure (a Spark executor lost, an object store hiccup); a failed
# quality gate fails at once instead (AirflowFailException), since retrying cannot fix the data.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "lakecdp",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=1),
}

# Champion models changed (lakecdp_retrain promoted at least one): lakecdp_score runs on it.
MODELS = Asset(name="lakecdp_models", uri="lakecdp://models/champions", group="lakecdp")
# Score drift above models.drift.psi_threshold (lakecdp_score): lakecdp_retrain runs on it.
MODEL_DRIFT = Asset(name="lakecdp_model_drift", uri="lakecdp://models/drift", group="lakecdp")
# profile_scores passed its gate and predictive segments were refreshed: lakecdp_export runs on it.
SCORES = Asset(name="lakecdp_profile_scores", uri="lakecdp://lake/profile_scores", group="lakecdp")


def lakecdp_dag(dag_id: str, *, schedule: Any, tags: list[str], doc_md: str, **extra: Any) -> Any:
    """`@dag` with what every lakecdp DAG shares: the start date, no catch-up, one run at a time, retries, the tag."""
    return dag(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=[*TAGS, *tags],
        doc_md=doc_md,
        **extra,
    )


def as_of_instant(context: Mapping[str, Any], *assets: Asset) -> datetime:
    """The run's as-of: the producer's as-of when an asset event triggered it, else data_interval_end.

    Never now(): a rerun of a run sees the same instant. Runs without a data interval (asset-
    triggered ones whose producer stated no as-of) use the run's own run_after, fixed at creation.
    """
    events = context.get("triggering_asset_events") or {}
    for asset in assets:
        for event in reversed(list(events.get(asset) or [])):
            stated = (event.extra or {}).get("as_of")
            if stated:
                return datetime.fromisoformat(stated).astimezone(UTC)
    end = context.get("data_interval_end")
    if end is None:
        end = context["dag_run"].run_after
    return datetime.fromtimestamp(end.timestamp(), tz=UTC)


@contextmanager
def skip_when_inputs_missing() -> Iterator[None]:
    """A step's MissingInput skips the task (and so everything downstream) with its reason, instead of failing."""
    try:
        yield
    except nightly.MissingInput as exc:
        raise AirflowSkipException(str(exc)) from exc


def run_gate(checkpoint: str, as_of: datetime, versions: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Run a quality checkpoint; a failed gate fails the task without retries and stops everything downstream."""
    from lakecdp.quality.runner import QualityGateFailed

    try:
        return nightly.quality_gate(nightly.open_nightly(), checkpoint, as_of, versions)
    except QualityGateFailed as exc:
        raise AirflowFailException(str(exc)) from exc
