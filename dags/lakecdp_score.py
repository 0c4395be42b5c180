"""lakecdp_score: batch-score every profile -> quality gate on scores -> refresh predictive segments (asset); rebuild recommendations."""

from __future__ import annotations

from typing import Any

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from lakecdp_airflow.common import (
    MODEL_DRIFT,
    MODELS,
    SCORES,
    as_of_instant,
    lakecdp_dag,
    run_gate,
    skip_when_inputs_missing,
)

from lakecdp.flows import nightly  # light: its lakecdp and models imports sit inside its functions

DOC_MD = """
### lakecdp_score
Daily at 04:00 UTC, and right after `lakecdp_retrain` promoted new champions (asset `lakecdp_models`,
whose as-of it then uses).

1. **check_inputs** - before anything is written: SKIPS the run when there is no champion model yet
   (lakecdp_retrain promotes the first ones and then triggers this DAG); FAILS (no retry, profile_scores
   untouched) when the newest event at or before the as-of is older than `models.freshness`: scores of
   a lake whose events ended long before the as-of would be stale and read as drift.
2. **score_profiles** - `models.scoring.score_lake` as `lakecdp score --as-of` runs it: every profile's
   intent probability, decile and cluster as of `data_interval_end`, merged into `profile_scores`
   (scored_at = that instant, so a rerun writes the same rows); drift is measured on the way.
3. **quality_gate** - checkpoint `scores` (expectations/profile_scores.yaml) on the version step 2 wrote.
4. **build_recommendations** - beside steps 1-3, needing no model: `lakecdp.recs.jobs.build_and_write`
   as `lakecdp recs build --as-of` runs it: every customer's top-k products (rules, co-occurrence CF
   blended with content-based similarity, category and popularity fallbacks; never bought or out of
   stock) as of the same instant, replacing `recommendations` in one commit (generated_at = the as-of).
   SKIPS, keeping the last build, when the events do not reach the as-of (`models.freshness`).
   Why here: this is the daily run that precedes every export, and exports carry recommendations in
   their content merge fields (triggers and the content API read the same table), so a nightly build
   must land before step 5 announces the export; recommendations do not need scores, so they run in
   parallel with scoring rather than after it.
5. **refresh_predictive_segments** - after the gate and the recommendations: re-evaluates the segments
   whose rules read scores, then emits asset `lakecdp_profile_scores`, which runs `lakecdp_export`
   (a failed recommendations build holds the export back rather than send stale picks).
6. **flag_drift** - emits asset `lakecdp_model_drift` (which runs `lakecdp_retrain`) only when drift
   exceeds `models.drift.psi_threshold`.

`LAKECDP_SPARK_SUBMIT` set: scoring runs through `jobs/score.py`, recommendations through `jobs/recs.py`.
XCom carries versions only.
"""


@lakecdp_dag(
    "lakecdp_score",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 4 * * *", timezone="UTC"), assets=MODELS),
    tags=["models", "segments", "quality"],
    doc_md=DOC_MD,
)
def lakecdp_score() -> None:
    @task
    def check_inputs(**context: Any) -> dict[str, Any]:
        with skip_when_inputs_missing():
            try:
                return nightly.score_inputs(nightly.open_nightly(), as_of_instant(context, MODELS))
            except nightly.StaleInput as exc:  # the data, not the infrastructure: a retry cannot help
                raise AirflowFailException(str(exc)) from exc

    @task
    def score_profiles(inputs: dict[str, Any]) -> dict[str, Any]:
        return nightly.score(nightly.open_nightly(), nightly.instant(inputs["as_of"]))

    @task
    def quality_gate(scored: dict[str, Any]) -> list[dict[str, Any]]:
        return run_gate("scores", nightly.instant(scored["as_of"]), {"profile_scores": scored["profile_scores_version"]})

    @task
    def build_recommendations(**context: Any) -> dict[str, Any]:
        with skip_when_inputs_missing():
            return nightly.build_recommendations(nightly.open_nightly(), as_of_instant(context, MODELS))

    @task(outlets=[SCORES])
    def refresh_predictive_segments(scored: dict[str, Any], **context: Any) -> dict[str, Any]:
        refreshed = nightly.refresh_predictive_segments(nightly.open_nightly(), nightly.instant(scored["as_of"]))
        context["outlet_events"][SCORES].extra = {
            "as_of": scored["as_of"],
            "profile_scores_version": refreshed["profile_scores_version"],
            "segment_membership_version": refreshed["segment_membership_version"],
        }
        return refreshed

    @task(outlets=[MODEL_DRIFT])
    def flag_drift(scored: dict[str, Any], **context: Any) -> list[str]:
        if not scored["needs_retraining"]:
            raise AirflowSkipException("no drift above models.drift.psi_threshold")
        context["outlet_events"][MODEL_DRIFT].extra = {"as_of": scored["as_of"], "reasons": scored["drift_reasons"][:5]}
        return scored["drift_reasons"]

    scored = score_profiles(check_inputs())
    gate = quality_gate(scored)
    refreshed = refresh_predictive_segments(scored)
    gate >> refreshed
    build_recommendations() >> refreshed
    gate >> flag_drift(scored)


lakecdp_score()
