"""Edge: draw and persist the global holdout, materialize assignments, analyse an experiment against a lake."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from pyspark.sql import functions as F

from lakecdp.experiments import holdout
from lakecdp.experiments.analysis import arm_summaries, experiment_outcomes, recipients
from lakecdp.experiments.assign import Assigner, holdout_epoch
from lakecdp.experiments.report import ExperimentReport, build_report
from lakecdp.experiments.settings import ExperimentSettings
from lakecdp.identity.resolved import resolved_events
from lakecdp.lake import Lake, LakeError


def population(lake: Lake) -> pd.DataFrame:
    """(customer_id, country) of the customers experiments are about: the CRM, else every profile."""
    customers = lake.read("customers").select("customer_id", "country").toPandas()
    if len(customers):
        return customers
    return lake.read("profile_features").select("customer_id", "country").toPandas()


def draw_global_holdout(lake: Lake, settings: ExperimentSettings, *, at: datetime) -> tuple[str, str, holdout.Balance]:
    """Draw the epoch's stratified holdout and persist it; returns (epoch, stratification, balance of what is stored).

    Insert-only: a customer's status never changes within an epoch, so re-running after new
    customers arrive only adds them.
    """
    epoch = holdout_epoch(settings, at)
    base = population(lake)
    profiles = lake.read("profile_features").select("customer_id", "frequency", "recency_days", "monetary").toPandas()
    scores = lake.read("profile_scores").select("customer_id", "cluster_id", "intent_decile").toPandas()
    strata, mode = holdout.strata(base, profiles, scores, settings.global_holdout.stratify_by)
    drawn = holdout.draw(strata, settings.global_holdout.share, salt=settings.salt, epoch=epoch)
    drawn["epoch"] = epoch
    drawn["drawn_at"] = pd.Timestamp(at).tz_convert("UTC").tz_localize(None)
    rows = lake.spark.createDataFrame(drawn[["epoch", "customer_id", "stratum", "is_holdout", "drawn_at"]])
    lake.merge("global_holdout", rows, update_columns=[])
    stored = lake.read("global_holdout").filter(F.col("epoch") == epoch).select("customer_id", "stratum", "is_holdout").toPandas()
    return epoch, mode, holdout.balance(stored)


def materialize_assignments(lake: Lake, assigner: Assigner, experiment: str, *, at: datetime) -> dict[str, int]:
    """Write every customer's variant to experiment_assignments (insert-only: a variant once used never changes)."""
    ids = population(lake)["customer_id"].tolist()
    rows = [(experiment, customer_id, assigner.assign(experiment, customer_id), at) for customer_id in ids]
    frame = lake.spark.createDataFrame(rows, "experiment string, customer_id string, variant string, assigned_at timestamp")
    lake.merge("experiment_assignments", frame, update_columns=[])
    counts = lake.read("experiment_assignments").filter(F.col("experiment") == experiment).groupBy("variant").count().collect()
    return {row.variant: int(row["count"]) for row in counts}


def analyse(lake: Lake, assigner: Assigner, experiment: str) -> ExperimentReport:
    """The experiment's report from bronze events and its materialized (else recomputed) assignments."""
    spec = assigner.settings.definitions.get(experiment)
    if spec is None:
        raise LakeError(
            f"experiment {experiment!r} is not defined in conf/base/experiments.yaml (defined: {', '.join(assigner.settings.definitions) or 'none'})"
        )
    events = resolved_events(lake).persist()
    try:
        stored = lake.read("experiment_assignments").filter(F.col("experiment") == experiment).select("customer_id", "variant")
        if stored.limit(1).count():
            assignments = stored
        else:
            # Not materialized: the recipients' variants, recomputed by the same hash the send used.
            ids = [row.customer_id for row in recipients(events, spec).collect()]
            pairs = [(customer_id, assigner.assign(experiment, customer_id)) for customer_id in ids]
            assignments = lake.spark.createDataFrame(pairs, "customer_id string, variant string")
        arms = arm_summaries(experiment_outcomes(events, assignments, spec))
    finally:
        events.unpersist()
    if not arms:
        raise LakeError(f"experiment {experiment!r}: no assigned customers and no deliveries of its campaigns in events")
    return build_report(experiment, spec, arms)
