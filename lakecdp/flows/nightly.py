"""The nightly flow: what each lakecdp DAG task does, as plain functions returning small dicts
(versions, paths, counts) that the DAGs in dags/ pass on as XCom.

No Airflow here. DAG files import this module inside their tasks, never at parse time, so the DAG
processor never loads Spark, Great Expectations or sklearn. Heavy steps run the functions behind
`lakecdp train|score|export run` in-process, or `spark-submit jobs/<job>.py` when
$LAKECDP_SPARK_SUBMIT names a spark-submit command (e.g. "spark-submit --master spark://127.0.0.1:7077").
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

log = logging.getLogger("lakecdp.airflow")

SPARK_SUBMIT_ENV = "LAKECDP_SPARK_SUBMIT"
JOBS_DIR = Path(__file__).resolve().parents[2] / "jobs"  # the repository's jobs/
MODEL_CARDS_FOLDER = "_model_cards"
EXPORT_REPORTS_FOLDER = "_export_reports"
# Delta's own default: VACUUM never deletes files a reader of the last 7 days may still need.
MIN_VACUUM_RETENTION_HOURS = 168
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MissingInput(RuntimeError):
    """What a run needs is not there yet (no events up to its as-of, no champion, nothing to export): the run skips."""


class StaleInput(RuntimeError):
    """The lake's events end long before the run's as-of: scores computed now would describe nobody's present."""


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat()


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@dataclass(frozen=True)
class Nightly:
    """Settings and the lake, opened inside a task (never at import)."""

    settings: Any
    lake: Any

    @cached_property
    def model_settings(self) -> Any:
        from models.settings import parse_model_settings

        return parse_model_settings(self.settings.models)

    @cached_property
    def registry(self) -> Any:
        from models.registry import registry_for

        return registry_for(self.model_settings.registry_root, self.lake.root)

    def store(self, folder: str) -> Any:
        from lakecdp.quality.results import ResultStore

        return ResultStore(f"{self.lake.root.rstrip('/')}/{folder}", self.settings.lake.storage_options)


def open_nightly() -> Nightly:
    """load_settings() + the one SparkSession (reused when one is active, e.g. under dag.test()) + the lake."""
    from lakecdp.config import load_settings
    from lakecdp.lake import lake_for
    from lakecdp.settings_check import check_sections

    settings = load_settings()
    check_sections(settings)
    return Nightly(settings, lake_for(settings))


# ---- spark-submit ------------------------------------------------------------------------------
def spark_submit_command(env: dict[str, str] | None = None) -> list[str] | None:
    """The configured spark-submit command line, or None to run in-process."""
    value = (os.environ if env is None else env).get(SPARK_SUBMIT_ENV, "").strip()
    return shlex.split(value) if value else None


def job_command(submit: Sequence[str], job: str, args: Sequence[str]) -> list[str]:
    """`<spark-submit ...> jobs/<job>.py <args>`: the thin entry points beside jobs/stream_events.py."""
    script = JOBS_DIR / f"{job}.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} does not exist; jobs/ holds one entry point per job (train, score, recs, export)")
    return [*submit, str(script), *args]


def run_job(submit: Sequence[str], job: str, args: Sequence[str]) -> None:
    """Run a job with spark-submit; its output goes to the task log, a non-zero exit raises."""
    command = job_command(submit, job, args)
    log.info("running %s", shlex.join(command))
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in (completed.stdout + completed.stderr).splitlines()[-200:]:
        log.info("%s: %s", job, line)
    if completed.returncode != 0:
        raise RuntimeError(f"spark-submit jobs/{job}.py exited with {completed.returncode} (its output is in the log above)")


# ---- quality gates -----------------------------------------------------------------------------
def quality_gate(p: Nightly, checkpoint: str, as_of: datetime, versions: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Run a checkpoint of expectations/ (raises QualityGateFailed naming the failed expectations)."""
    from lakecdp.quality.runner import quality_run, run_checkpoint

    results = run_checkpoint(quality_run(p.lake, p.settings, as_of=as_of, versions=versions), checkpoint)
    for result in results:
        log.info("quality %s: passed on %s rows (%s); results %s", result.suite, result.row_count, result.source, result.paths.get("html"))
    return [r.to_xcom() for r in results]


# ---- inputs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventTimes:
    first: datetime
    newest_before: datetime | None  # the newest event at or before the run's as-of
    last: datetime


def event_times(p: Nightly, as_of: datetime, events_version: int | None = None) -> EventTimes:
    """First, newest-up-to-`as_of` and last event time of bronze, in one aggregate; MissingInput when there are none."""
    from pyspark.sql import functions as F

    if not p.lake.exists("events"):
        raise MissingInput(
            f"there is no events table in {p.lake.root}. Fix: load events first (the stream, `lakecdp import orders`, or `lakecdp demo`)."
        )
    micros = F.unix_micros("timestamp")
    is_visible = micros <= int(as_of.timestamp() * 1_000_000)
    row = (
        p.lake.read("events", version=events_version)
        .agg(F.min(micros).alias("first"), F.max(F.when(is_visible, micros)).alias("newest_before"), F.max(micros).alias("last"))
        .first()
    )
    if row is None or row["first"] is None:
        raise MissingInput(
            f"the events table in {p.lake.root} is empty. Fix: load events first (the stream, `lakecdp import orders`, or `lakecdp demo`)."
        )

    def at(micros: int) -> datetime:
        return EPOCH + timedelta(microseconds=micros)

    newest = row["newest_before"]
    return EventTimes(first=at(row["first"]), newest_before=None if newest is None else at(newest), last=at(row["last"]))


def data_gap(times: EventTimes, as_of: datetime, freshness: timedelta, what: str) -> str | None:
    """Why the events do not reach `as_of` (none at or before it, or the newest older than `freshness`), else None."""
    days = freshness.total_seconds() / 86400
    fix = (
        f"Fix: run with an as-of inside the data (at most {days:g} days after the newest event, {iso(times.last)}; "
        "`infra/airflow.sh nightly` runs the chain as of it), or load fresh events (the stream, `lakecdp import orders`)"
    )
    if times.newest_before is None:
        return f"{what}: no event at or before as-of {iso(as_of)}: the first event is at {iso(times.first)}. {fix}."
    gap = as_of - times.newest_before
    if gap <= freshness:
        return None
    return (
        f"{what}: the newest event at or before as-of {iso(as_of)} is at {iso(times.newest_before)}, "
        f"{gap.total_seconds() / 86400:.1f} days earlier (models.freshness allows {days:g}): "
        f"the lake's events end before this run's as-of. {fix}; or raise models.freshness in conf/local."
    )


def score_inputs(p: Nightly, as_of: datetime) -> dict[str, Any]:
    """Before scoring writes anything: champions to score with (MissingInput) and events up to the as-of (StaleInput)."""
    from models.clustering import MODEL_NAME as CLUSTER_MODEL
    from models.intent import MODEL_NAME as INTENT_MODEL

    missing = [name for name in (INTENT_MODEL, CLUSTER_MODEL) if p.registry.champion(name) is None]
    if missing:
        raise MissingInput(
            f"no champion model yet for {', '.join(missing)} in {p.registry.root}: nothing to score with. "
            "Fix: run lakecdp_retrain (it promotes the first champions and then triggers lakecdp_score), or `lakecdp train`."
        )
    times = event_times(p, as_of)
    gap = data_gap(times, as_of, p.model_settings.freshness, "scores refused")
    if gap or times.newest_before is None:  # no event before the as-of is a gap too
        raise StaleInput(f"{gap} profile_scores was not changed.")
    return {"as_of": iso(as_of), "newest_event_at": iso(times.newest_before)}


def export_inputs(p: Nightly) -> list[str]:
    """The enabled ESP destinations; MissingInput when there is none, or no membership to export."""
    from lakecdp.export.settings import load_esp_settings

    esp = load_esp_settings(p.settings.esp, segment_names=[s.get("name") for s in p.settings.segments])
    enabled = sorted(esp.enabled())
    if not enabled:
        raise MissingInput(
            "no ESP destination is enabled in esp.yaml (conf/base, conf/local): nothing to send. Fix: set "
            "esp.destinations.<name>.enabled: true in conf/local/esp.yaml, and export its secret's environment variable where Airflow runs."
        )
    if not p.lake.exists("segment_membership"):
        raise MissingInput(
            f"there is no segment_membership table in {p.lake.root}: no segment to export. Fix: run the stream (or `lakecdp demo`) first."
        )
    return enabled


# ---- retrain -----------------------------------------------------------------------------------
def training_set(p: Nightly, as_of: datetime) -> dict[str, Any]:
    """Pin the point-in-time training set: its snapshots (event time <= each) and the input table versions.

    MissingInput when the events do not reach the as-of or the history is too short for one snapshot.
    """
    from models.snapshots import SnapshotError, plan_snapshots

    versions = {name: p.lake.version(name) for name in ("events", "identity_links", "profile_features")}
    times = event_times(p, as_of, versions["events"] if versions["events"] >= 0 else None)
    gap = data_gap(times, as_of, p.model_settings.freshness, "nothing to train on")
    if gap:
        raise MissingInput(f"{gap} The champions stay.")
    try:
        plan = plan_snapshots(as_of, times.first, p.model_settings)
    except SnapshotError as exc:
        raise MissingInput(f"too little history to train: {exc}") from exc
    first, last = times.first, times.last
    return {
        "as_of": iso(as_of),
        "versions": versions,
        "first_event_at": iso(first),
        "last_event_at": iso(last),
        "train_snapshots": [iso(s) for s in plan.train],
        "validation_snapshot": iso(plan.validation),
    }


def trained_versions(registry: Any, as_of: datetime, events_version: int | None = None) -> dict[str, Any]:
    """The newest registered version of each model trained for `as_of` (and on `events_version`, when given)."""
    from models.clustering import MODEL_NAME as CLUSTER_MODEL
    from models.intent import MODEL_NAME as INTENT_MODEL
    from models.registry import ModelRef

    found = {}
    for name in (CLUSTER_MODEL, INTENT_MODEL):
        for version in reversed(registry.versions(name)):
            card = registry.card(ModelRef(name, version))
            same_instant = card.get("as_of") and instant(card["as_of"]) == as_of
            same_data = events_version is None or (card.get("training_data") or {}).get("delta_version") == events_version
            if same_instant and same_data:
                found[name] = ModelRef(name, version)
                break
    return found


def train(p: Nightly, as_of: datetime, events_version: int) -> dict[str, Any]:
    """Train K-Means and the intent model, evaluate and promote if better (models.training.train_models).

    A rerun of the same data interval on the same bronze version reuses what that run registered.
    """
    from lakecdp.clock import FrozenClock
    from models.training import train_models

    registry = p.registry
    refs = trained_versions(registry, as_of, events_version)
    reused = len(refs) == 2
    if reused:
        log.info(
            "models for as_of %s on events v%s are already registered (%s): reusing them",
            iso(as_of),
            events_version,
            ", ".join(map(str, refs.values())),
        )
    else:
        submit = spark_submit_command()
        if submit:
            run_job(submit, "train", ["--as-of", iso(as_of), "--lake", p.lake.root])
            refs = trained_versions(registry, as_of)
            if len(refs) != 2:
                raise RuntimeError(f"jobs/train.py finished but {registry.root} has no pair of models for as_of {iso(as_of)}")
        else:
            outcome = train_models(p.lake, p.model_settings, registry, clock=FrozenClock(as_of), as_of=as_of, log=log.info)
            refs = {r.ref.name: r.ref for r in (outcome.clusters, outcome.intent)}
    models = {}
    for name, ref in sorted(refs.items()):
        card = registry.card(ref)
        promotion = card.get("promotion") or {}
        models[name] = {
            "ref": str(ref),
            "version": ref.version,
            "promoted": bool(promotion.get("promoted")),
            "reason": promotion.get("reason"),
            "card_html": str(registry.card_html_path(ref)),
            "events_version": (card.get("training_data") or {}).get("delta_version"),
        }
    return {"as_of": iso(as_of), "registry": str(registry.root), "reused": reused, "models": models}


def evaluate(p: Nightly, trained: dict[str, Any]) -> dict[str, Any]:
    """Each trained version's validation metric next to the champion's on the same window, from its card."""
    from models.registry import ModelRef

    registry, metric = p.registry, p.model_settings.intent.selection_metric
    evaluation = {}
    for name, model in trained["models"].items():
        ref = ModelRef(name, model["version"])
        card = registry.card(ref)
        promotion = card.get("promotion") or {}
        validation = card.get("validation") or {}
        if "silhouette" in validation:
            measure, value, champion_value = "silhouette", validation["silhouette"], promotion.get("champion_silhouette")
        else:
            measure, value, champion_value = (
                metric,
                (validation.get(card.get("family", "")) or {}).get(metric),
                promotion.get("champion_value"),
            )
        champion = registry.champion(name)
        evaluation[name] = {
            "ref": str(ref),
            "metric": measure,
            "value": value,
            "champion_value": champion_value,
            "promoted": model["promoted"],
            "reason": model["reason"],
            "champion": str(champion) if champion else None,
        }
        log.info(
            "%s: %s %s vs champion %s -> %s (%s)",
            ref,
            measure,
            value,
            champion_value,
            "promoted" if model["promoted"] else "kept champion",
            model["reason"],
        )
    return evaluation


def publish_model_cards(p: Nightly, trained: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    """Copy each trained version's card to <lake root>/_model_cards/ (<model>.html = latest) with an index.json."""
    import json

    store = p.store(MODEL_CARDS_FOLDER)
    cards = {}
    for name, model in trained["models"].items():
        page = Path(model["card_html"]).read_text()
        store.write_text(f"{name}/{model['version']}.html", page)
        cards[name] = store.write_text(f"{name}.html", page)
    index = {"as_of": trained["as_of"], "models": evaluation, "cards": cards}
    return {"index": store.write_text("index.json", json.dumps(index, indent=2, sort_keys=True, default=str)), "cards": cards}


# ---- score -------------------------------------------------------------------------------------
def score(p: Nightly, as_of: datetime) -> dict[str, Any]:
    """Score every profile as of `as_of` with the champions into profile_scores (models.scoring.score_lake)."""
    from lakecdp.clock import FrozenClock
    from models.clustering import MODEL_NAME as CLUSTER_MODEL
    from models.intent import MODEL_NAME as INTENT_MODEL
    from models.scoring import score_lake

    submit = spark_submit_command()
    if submit:
        run_job(submit, "score", ["--as-of", iso(as_of), "--lake", p.lake.root])
    else:
        # scored_at = the interval's as-of, so a rerun writes identical rows.
        score_lake(p.lake, p.model_settings, p.registry, clock=FrozenClock(as_of), as_of=as_of)
    champions = {name: p.registry.champion(name) for name in (INTENT_MODEL, CLUSTER_MODEL)}
    reasons = []
    for ref in champions.values():
        drift = p.registry.drift(ref) if ref else {}
        if drift.get("needs_retraining"):
            reasons += [f"{ref}: {r}" for r in (drift.get("latest") or {}).get("reasons", [])[:3]]
    return {
        "as_of": iso(as_of),
        "profile_scores_version": p.lake.version("profile_scores"),
        "models": {name: str(ref) for name, ref in champions.items()},
        "needs_retraining": bool(reasons),
        "drift_reasons": reasons,
    }


def refresh_predictive_segments(p: Nightly, as_of: datetime) -> dict[str, Any]:
    """Re-evaluate membership of the segments that read scores, as of `as_of` (lakecdp.flows.micro_batch.refresh_membership)."""
    from lakecdp.flows.micro_batch import refresh_membership
    from lakecdp.lake.tables import PROFILE_SCORES
    from lakecdp.segments.rules import segments_of, segments_reading

    chosen = segments_reading(segments_of(p.settings), set(PROFILE_SCORES.columns) - {"customer_id"})
    if not chosen:
        log.info("no segment rule reads profile_scores (conf/base/segments.yaml): no membership to refresh")
        sizes: dict[str, int] = {}
    else:
        sizes = refresh_membership(p.lake, chosen, as_of)
        log.info("refreshed %s as of %s: %s", ", ".join(s.name for s in chosen), iso(as_of), sizes)
    return {
        "as_of": iso(as_of),
        "segments": sizes,
        "segment_membership_version": p.lake.version("segment_membership"),
        "profile_scores_version": p.lake.version("profile_scores"),
    }


# ---- recommendations ---------------------------------------------------------------------------
def build_recommendations(p: Nightly, as_of: datetime) -> dict[str, Any]:
    """Rebuild every customer's recommendations as of `as_of` (lakecdp.recs.jobs.build_and_write, as `lakecdp recs build`).

    One overwrite commit with generated_at = the as-of, so a rerun of the interval writes the same rows.
    MissingInput when the events do not reach the as-of: the table keeps the last build.
    """
    from lakecdp.content.settings import parse_content_settings
    from lakecdp.recs.jobs import build_and_write

    gap = data_gap(event_times(p, as_of), as_of, p.model_settings.freshness, "recommendations not rebuilt")
    if gap:
        raise MissingInput(f"{gap} The recommendations table keeps its last build.")
    recs = parse_content_settings(p.settings.content).recommendations
    submit = spark_submit_command()
    if submit:
        run_job(submit, "recs", ["--as-of", iso(as_of), "--lake", p.lake.root])
        rows = p.lake.read("recommendations").count()
    else:
        rows = build_and_write(p.lake, recs, as_of=as_of)
    log.info("recommendations as of %s: %s rows (k=%s, content_based.weight %s)", iso(as_of), rows, recs.k, recs.content_based.weight)
    return {"as_of": iso(as_of), "recommendations_version": p.lake.version("recommendations"), "rows": rows}


# ---- export ------------------------------------------------------------------------------------
def export(p: Nightly, report_name: str, *, membership_version: int | None = None) -> dict[str, Any]:
    """Export the diff to every enabled ESP destination (lakecdp.export.runner.ExportRunner.run) and keep its report.

    membership_version: the segment_membership version the quality gate validated (None: the latest).
    Uses the wall clock, unlike the other steps: consent is checked and requests are signed at
    the moment of sending (webhook receivers reject stale timestamps).
    """
    import json

    store = p.store(EXPORT_REPORTS_FOLDER)
    submit = spark_submit_command()
    if submit:
        with tempfile.TemporaryDirectory() as folder:
            local = Path(folder) / "report.json"
            try:
                pinned = [] if membership_version is None else ["--membership-version", str(membership_version)]
                run_job(submit, "export", ["--lake", p.lake.root, "--report", str(local), *pinned])
            finally:  # keep the report of a stopped run too: it says which destination stopped and why
                if local.is_file():
                    store.write_text(f"{report_name}.json", local.read_text())
            report = json.loads(local.read_text())
    else:
        from lakecdp.clock import SystemClock
        from lakecdp.export.adapters import Runtime
        from lakecdp.export.runner import export_runner
        from lakecdp.export.settings import load_esp_settings

        esp = load_esp_settings(p.settings.esp, segment_names=[s.get("name") for s in p.settings.segments])
        if not esp.enabled():
            log.info("no ESP destination is enabled (conf/base/esp.yaml, conf/local/esp.yaml): nothing to send")
        runtime = Runtime(env=os.environ, clock=SystemClock())
        outcome = export_runner(p.settings, p.lake, esp, runtime, membership_version=membership_version).run()
        log.info("%s", outcome.format())
        report = outcome.to_dict()
        store.write_text(f"{report_name}.json", outcome.to_json())
        if not outcome.ok:
            # Unfinished batches stay pending in export_log; the retry resumes them under the same ids.
            raise RuntimeError(f"export run {outcome.run_id} stopped for {sorted(outcome.errors)}: {outcome.errors}")
    return {
        "run_id": report["run_id"],
        "report": store.uri(f"{report_name}.json"),
        "destinations": sorted(report.get("destinations") or {}),
        "export_log_version": p.lake.version("export_log"),
    }


def export_report(p: Nightly, exported: dict[str, Any]) -> dict[str, Any]:
    """Counts and requests made per destination, from the run report (no addresses, no customer ids)."""
    import json

    report = json.loads(p.store(EXPORT_REPORTS_FOLDER).read_text(exported["report"].rsplit("/", 1)[-1]) or "{}")
    summary = {}
    for destination, segments in sorted((report.get("destinations") or {}).items()):
        summary[destination] = {
            "sent": sum(sum(c["sent"].values()) for c in segments.values()),
            "failed": sum(c["failed"] for c in segments.values()),
            "skipped": sum(sum(c["skipped_by_reason"].values()) for c in segments.values()),
            "held": sum(c["held"] for c in segments.values()),
            "requests": (report.get("requests") or {}).get(destination, 0),
            "segments": sorted(segments),
        }
        log.info("export %s -> %s: %s", report.get("run_id"), destination, summary[destination])
    return {"run_id": report.get("run_id"), "report": exported["report"], "destinations": summary, "errors": report.get("errors") or {}}


# ---- maintenance -------------------------------------------------------------------------------
def existing_tables(p: Nightly) -> list[str]:
    from lakecdp.lake import TABLES

    return [name for name in TABLES if p.lake.exists(name)]


def process_erasure_queue(p: Nightly) -> dict[str, Any]:
    """Erase every queued customer (lakecdp.privacy.erasure), each ESP's deletion API first.

    Fails the task (so Airflow retries) while a request stays queued because an ESP deletion failed.
    """
    import os

    from lakecdp.clock import SystemClock
    from lakecdp.export.adapters import Runtime
    from lakecdp.export.forget import EspEraser
    from lakecdp.export.settings import load_esp_settings
    from lakecdp.privacy.erasure import process_erasures

    if not p.lake.exists("erasure_requests"):
        log.info("erasure queue: no erasure_requests table yet (nothing was ever requested); skipped")
        return {"skipped": "no erasure_requests table"}
    # The proof records when the deletion really happened, so this uses the wall clock.
    clock = SystemClock()
    esp = load_esp_settings(p.settings.esp, segment_names=[s.get("name") for s in p.settings.segments])
    with EspEraser(esp, Runtime(env=os.environ, clock=clock)) as forget:
        from lakecdp.online.store import open_store_if_online

        state = open_store_if_online(p.settings, p.lake.root)
        proofs = process_erasures(
            p.lake, p.settings.landing.root, clock.now(), forget=forget, state=state, retention=p.settings.landing.retention
        )
    log.info("erasure queue: %s request(s) processed", len(proofs))
    waiting = p.lake.read("erasure_requests").count()
    if waiting:
        raise RuntimeError(f"{waiting} erasure request(s) still queued: an ESP deletion failed (see the warnings above)")
    return {"processed": len(proofs), "request_ids": [proof.request_id for proof in proofs]}


def reconcile_online_state(p: Nightly, as_of: datetime) -> dict[str, Any]:
    """Recompute profiles and verdicts from bronze (batch executor), compare with the online state, repair differences."""
    from lakecdp.online.flow import OnlineState
    from lakecdp.online.reconcile import reconcile
    from lakecdp.online.store import open_store_if_online
    from lakecdp.segments import segments_of

    store = open_store_if_online(p.settings, p.lake.root)
    if store is None:
        log.info("reconcile: state.mode is batch (no online state); skipped")
        return {"skipped": "state.mode batch"}
    try:
        online = OnlineState(p.lake, p.settings, store, segments_of(p.settings))
        # State cannot go back in time: compare at the later of the run's instant and the state's last evaluation.
        result = reconcile(p.lake, online, max(as_of, online.last_evaluated() or as_of), fix=True)
    finally:
        store.close()
    for difference in result.differences[:50]:
        log.warning("reconcile: %s", difference)
    log.info("reconcile: %s", result.summary())
    return {"customers": result.customers, "differences": len(result.differences), "fixed": result.fixed}


def optimize_tables(p: Nightly) -> dict[str, Any]:
    """Compact small files of every existing table (bin-packing; readers are unaffected)."""
    done = {}
    for name in existing_tables(p):
        metrics = p.lake.optimize(name) or {}
        done[name] = {
            "files_added": metrics.get("numFilesAdded", 0),
            "files_removed": metrics.get("numFilesRemoved", 0),
            "version": p.lake.version(name),
        }
    return done


def vacuum_tables(p: Nightly, retention_hours: int) -> dict[str, Any]:
    """Delete files no version younger than `retention_hours` references (never below Delta's 7 days)."""
    if retention_hours < MIN_VACUUM_RETENTION_HOURS:
        raise ValueError(
            f"vacuum retention {retention_hours} h is below {MIN_VACUUM_RETENTION_HOURS} h: readers and time travel of the last week would break"
        )
    return {name: {"files_deleted": len(p.lake.vacuum(name, retention_hours=retention_hours))} for name in existing_tables(p)}


def checkpoint_tables(p: Nightly) -> dict[str, Any]:
    """Write a Delta checkpoint of every table at its current version (faster log replay for every reader)."""
    done = {}
    for name in existing_tables(p):
        version = p.lake.checkpoint(name)
        if version is None:
            log.info("engine %s writes Delta checkpoints itself (every 10 commits); skipped", p.settings.lake.engine)
            return {"skipped": f"engine {p.settings.lake.engine}"}
        done[name] = {"checkpoint_version": version}
    return done
