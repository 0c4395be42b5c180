"""lakecdp_retrain: point-in-time training set -> quality gate -> train K-Means + intent -> evaluate -> publish cards."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, task
from airflow.sdk.exceptions import AirflowSkipException
from lakecdp_airflow.common import (
    MODEL_DRIFT,
    MODELS,
    as_of_instant,
    lakecdp_dag,
    run_gate,
    skip_when_inputs_missing,
)

from lakecdp.flows import nightly  # light: its lakecdp and models imports sit inside its functions

DOC_MD = """
### lakecdp_retrain
Weekly (Sunday 02:00 UTC) and whenever `lakecdp_score` flags score or feature drift
(asset `lakecdp_model_drift`).

1. **point_in_time_training_set** - the training snapshots counting back from the as-of
   (`data_interval_end`, or the drift event's as-of) and the bronze versions they read. The run
   SKIPS (with the reason in the log; the champions stay) when the events do not reach the as-of
   (none within `models.freshness` before it: the lake's data ended earlier) or the history is too
   short for one snapshot.
2. **quality_gate** - checkpoint `training_inputs` (expectations/events.yaml, profile_features.yaml);
   a failure names the failed expectations and stops the run.
3. **train_models** - `models.training.train_models`, as `lakecdp train --as-of` runs it: K-Means
   and the purchase-intent classifier, each evaluated against its champion on the same window and
   promoted only if better. A rerun of the interval on the same bronze version reuses that run's models.
4. **evaluate** - validation metric vs champion per model, from the cards.
5. **publish_model_card** - cards to `<lake root>/_model_cards/` (`<model>.html`, `index.json`).
6. **announce_champions** - emits asset `lakecdp_models` (which runs `lakecdp_score`) only when a model was promoted.

Set `LAKECDP_SPARK_SUBMIT` (e.g. `spark-submit --master spark://127.0.0.1:7077`) to train through
`jobs/train.py` instead of in-process. XCom carries versions and paths only.
"""


@lakecdp_dag(
    "lakecdp_retrain",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 2 * * 0", timezone="UTC"), assets=MODEL_DRIFT),
    tags=["models", "quality"],
    doc_md=DOC_MD,
)
def lakecdp_retrain() -> None:
    @task
    def point_in_time_training_set(**context: Any) -> dict[str, Any]:
        with skip_when_inputs_missing():
            return nightly.training_set(nightly.open_nightly(), as_of_instant(context, MODEL_DRIFT))

    @task
    def quality_gate(training_set: dict[str, Any]) -> list[dict[str, Any]]:
        return run_gate("training_inputs", nightly.instant(training_set["as_of"]), training_set["versions"])

    @task(execution_timeout=timedelta(hours=3))
    def train_models(training_set: dict[str, Any]) -> dict[str, Any]:
        return nightly.train(nightly.open_nightly(), nightly.instant(training_set["as_of"]), training_set["versions"]["events"])

    @task
    def evaluate(trained: dict[str, Any]) -> dict[str, Any]:
        return nightly.evaluate(nightly.open_nightly(), trained)

    @task
    def publish_model_card(trained: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
        return nightly.publish_model_cards(nightly.open_nightly(), trained, evaluation)

    @task(outlets=[MODELS])
    def announce_champions(trained: dict[str, Any], **context: Any) -> dict[str, Any]:
        promoted = {name: m["ref"] for name, m in trained["models"].items() if m["promoted"]}
        if not promoted:
            raise AirflowSkipException("no model was promoted: the champions stay, lakecdp_score is not triggered")
        context["outlet_events"][MODELS].extra = {"as_of": trained["as_of"], **promoted}
        return promoted

    training_set = point_in_time_training_set()
    trained = train_models(training_set)
    quality_gate(training_set) >> trained
    evaluation = evaluate(trained)
    publish_model_card(trained, evaluation) >> announce_champions(trained)


lakecdp_retrain()
