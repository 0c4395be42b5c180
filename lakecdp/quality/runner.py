"""Run Great Expectations 1.x suites on Spark DataFrames read through the lake; keep results; fail the gate loudly.

    gx.get_context(mode="ephemeral") -> data_sources.add_spark -> dataframe asset
    -> whole-dataframe batch definition -> batch.validate(suite, expectation_parameters=...)

A failed gate raises QualityGateFailed naming every failed expectation and where the full
results are; Airflow tasks turn it into a failure without retries (the data will not change).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, functions as F

from lakecdp.clock import SystemClock
from lakecdp.config import ConfigError, Settings
from lakecdp.lake import Lake
from lakecdp.quality.results import RESULTS_FOLDER, ResultStore, json_safe, run_key_for
from lakecdp.quality.suites import SuiteSpec, build_gx_suite, load_checkpoints, load_suite

SAMPLE_SIZE = 5
ROW_COUNT = "expect_table_row_count_to_be_between"


class QualityGateFailed(RuntimeError):
    """One or more suites failed; the message names each failed expectation."""

    def __init__(self, results: Sequence[SuiteResult]) -> None:
        self.results = list(results)
        failed = [r for r in self.results if not r.success]
        lines = [f"quality gate failed: {', '.join(r.suite for r in failed)}"]
        for result in failed:
            for outcome in result.failures():
                lines.append(f"  {result.suite}: {outcome.describe()}")
            if result.paths.get("html"):
                lines.append(f"  {result.suite}: results {result.paths['html']}")
        super().__init__("\n".join(lines))

    @property
    def failed_expectations(self) -> list[str]:
        return [f"{r.suite}:{o.expectation}" for r in self.results for o in r.failures()]


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    columns: tuple[str, ...]
    success: bool
    element_count: int | None = None
    missing_count: int | None = None  # nulls: column-value expectations other than not-null skip them
    unexpected_count: int | None = None
    observed_value: Any = None
    sample: tuple[Any, ...] = ()
    error: str | None = None
    expected: str | None = None  # the range a table-level check wanted, e.g. "30..50 rows"

    @property
    def label(self) -> str:
        return f"{self.expectation}({', '.join(self.columns)})" if self.columns else self.expectation

    @property
    def summary(self) -> str:
        if self.error:
            return f"could not be evaluated: {self.error}"
        if self.unexpected_count is not None:
            checked = (self.element_count or 0) - (self.missing_count or 0)
            nulls = f" ({self.missing_count} null, not checked)" if self.missing_count else ""
            return f"{self.unexpected_count} of {checked} rows unexpected{nulls}"
        if self.observed_value is None:
            return "no rows to check"
        return f"observed {self.observed_value}" + (f", expected {self.expected}" if self.expected else "")

    def describe(self) -> str:
        sample = f" e.g. {list(self.sample[:3])}" if self.sample and not self.success else ""
        return f"{self.label}: {self.summary}{sample}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "expectation": self.expectation,
            "columns": list(self.columns),
            "success": self.success,
            "summary": self.summary,
            "element_count": self.element_count,
            "missing_count": self.missing_count,
            "unexpected_count": self.unexpected_count,
            "observed_value": json_safe(self.observed_value),
            "sample": json_safe(list(self.sample)),
            "error": self.error,
            "expected": self.expected,
        }


@dataclass
class SuiteResult:
    suite: str
    run_key: str
    as_of: datetime
    success: bool
    row_count: int | None
    source: dict[str, Any]
    parameters: dict[str, Any]
    outcomes: list[ExpectationOutcome]
    validated_at: datetime
    paths: dict[str, str] = field(default_factory=dict)

    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "run_key": self.run_key,
            "as_of": self.as_of.isoformat(),
            "success": self.success,
            "row_count": self.row_count,
            "source": json_safe(self.source),
            "parameters": json_safe(self.parameters),
            "validated_at": self.validated_at.isoformat(),
            "outcomes": [o.to_dict() for o in self.outcomes],
        }

    def to_xcom(self) -> dict[str, Any]:
        """What a DAG passes on: the verdict, what was read (versions), where the results are. Never rows."""
        return {"suite": self.suite, "success": self.success, "row_count": self.row_count, "source": json_safe(self.source), **self.paths}


@dataclass(frozen=True)
class QualityRun:
    """One gate's inputs: the lake, settings, the run's as-of, and which table versions to read."""

    lake: Lake
    settings: Settings
    as_of: datetime
    run_key: str
    store: ResultStore | None
    versions: Mapping[str, int] = field(default_factory=dict)
    destinations: Sequence[str] | None = None
    expectations_dir: Path | None = None
    rebaseline: bool = False  # ignore the previous run's row count (after an accepted change in volume)


def quality_run(
    lake: Lake,
    settings: Settings,
    *,
    as_of: datetime,
    run_key: str | None = None,
    versions: Mapping[str, int] | None = None,
    results_root: str | None = None,
    destinations: Sequence[str] | None = None,
    expectations_dir: Path | None = None,
    rebaseline: bool = False,
) -> QualityRun:
    """A QualityRun keeping results under <lake root>/_quality unless told otherwise."""
    root = results_root or f"{lake.root.rstrip('/')}/{RESULTS_FOLDER}"
    return QualityRun(
        lake,
        settings,
        as_of.astimezone(UTC),
        run_key or run_key_for(as_of),
        ResultStore(root, settings.lake.storage_options),
        dict(versions or {}),
        destinations,
        expectations_dir,
        rebaseline,
    )


def run_checkpoint(run: QualityRun, name: str) -> list[SuiteResult]:
    """Every suite of checkpoint `name` (all run, so the error names every failure); raises when any failed."""
    checkpoints = load_checkpoints(run.expectations_dir)
    if name not in checkpoints:
        raise ConfigError(f"expectations/checkpoints.yaml: no checkpoint {name!r}. Fix: use one of {sorted(checkpoints)}.")
    return run_suites(run, checkpoints[name].suites)


def run_suites(run: QualityRun, names: Sequence[str]) -> list[SuiteResult]:
    results = [run_suite(run, name) for name in names]
    if not all(r.success for r in results):
        raise QualityGateFailed(results)
    return results


def run_suite(run: QualityRun, name: str) -> SuiteResult:
    """Validate one suite and keep its results (does not raise on failure: see run_suites)."""
    spec = load_suite(name, run.expectations_dir)
    frame, source = _source(run, spec)
    baseline = None if run.rebaseline or run.store is None else run.store.baseline_rows(spec.suite, run.run_key)
    parameters = suite_parameters(spec, run.settings, run.as_of, baseline_rows=baseline)
    success, outcomes, row_count = validate_frame(prepare_frame(frame, spec, run.as_of), spec, parameters)
    result = SuiteResult(
        suite=spec.suite,
        run_key=run.run_key,
        as_of=run.as_of,
        success=success,
        row_count=row_count,
        source={**source, "baseline_rows": baseline},
        parameters=parameters,
        outcomes=outcomes,
        validated_at=SystemClock().now(),  # when it ran, for operators; never used in a bound
    )
    if run.store is not None:
        result.paths = run.store.record(result.to_dict())
    return result


def _source(run: QualityRun, spec: SuiteSpec) -> tuple[DataFrame, dict[str, Any]]:
    from lakecdp.quality import sources

    if spec.source.table is not None:
        return sources.read_table(run.lake, spec.source.table, run.versions.get(spec.source.table))
    return sources.export_batches(
        run.lake,
        run.settings,
        as_of=run.as_of,
        run_key=run.run_key,
        destinations=run.destinations,
        membership_version=run.versions.get("segment_membership"),
    )


def prepare_frame(frame: DataFrame, spec: SuiteSpec, as_of: datetime) -> DataFrame:
    """Scope filter, derived columns, then only the columns the expectations read."""
    scope = spec.scope_sql(f"TIMESTAMP '{as_of.astimezone(UTC).isoformat()}'")
    if scope:
        frame = frame.filter(F.expr(scope))
    for column, expression in spec.derive.items():
        frame = frame.withColumn(column, F.expr(expression))
    columns = spec.columns()
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"{spec.path}: expectations use columns {missing} that the source does not have. Fix: use one of {frame.columns}, or derive them."
        )
    return frame.select(*(columns or frame.columns[:1]))


def suite_parameters(spec: SuiteSpec, settings: Settings, as_of: datetime, *, baseline_rows: int | None) -> dict[str, Any]:
    """Values for every {$PARAMETER: name}: instants are naive UTC, as Spark compares timestamps here."""
    from lakecdp.events.schema import EVENT_TYPES

    naive = as_of.astimezone(UTC).replace(tzinfo=None)
    max_age = settings.events.max_age
    if max_age is None:  # only history imports lift the limit; a gate has nothing to compare ages with
        raise ConfigError(
            "events.max_age is None (no age limit), but the quality suites compare event ages with it ({$PARAMETER: max_age_seconds}). "
            "Fix: run the gates with the events settings of conf/base/pipeline.yaml, whose max_age is a duration (e.g. 400d)."
        )
    min_rows, max_rows = row_count_range(spec.row_count.min, spec.row_count.max, spec.row_count.max_change, baseline_rows)
    return {
        "as_of": naive,
        "min_rows": min_rows,
        "max_rows": max_rows,
        "max_future_skew_seconds": settings.events.max_future_skew.total_seconds(),
        "max_age_seconds": max_age.total_seconds(),
        "segment_names": sorted(str(s.get("name")) for s in settings.segments),
        "event_types": list(EVENT_TYPES),
        **{name: naive + instant.offset for name, instant in spec.parameters.items()},
    }


def row_count_range(minimum: int, maximum: int | None, max_change: float | None, baseline: int | None) -> tuple[int, int | None]:
    """[min, max] rows: the suite's fixed bounds, narrowed to ±max_change around the previous passing run."""
    if max_change is None or not baseline:
        return minimum, maximum
    low = max(minimum, math.floor(baseline * (1 - max_change)))
    high = math.ceil(baseline * (1 + max_change))
    return low, high if maximum is None else min(maximum, high)


def validate_frame(frame: DataFrame, spec: SuiteSpec, parameters: Mapping[str, Any]) -> tuple[bool, list[ExpectationOutcome], int | None]:
    """Validate with GX; returns (success, outcomes, row count). Unexpected values of PII columns are dropped."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_spark(name="lakecdp").add_dataframe_asset(name=spec.suite).add_batch_definition_whole_dataframe("whole")
    )
    suite = context.suites.add(build_gx_suite(spec))
    # GX runs one Spark job per metric bundle: cache the (small, selected) frame once.
    frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        validation = batch.validate(suite, expectation_parameters=dict(parameters), result_format="SUMMARY")
    finally:
        frame.unpersist()
    expected_rows = f"{parameters['min_rows']}..{parameters['max_rows'] if parameters['max_rows'] is not None else ''} rows"
    outcomes = [
        replace(o, expected=expected_rows) if o.expectation == ROW_COUNT else o
        for o in (_outcome(r, spec.pii_columns) for r in validation.results)
    ]
    rows = next((o.observed_value for o in outcomes if o.expectation == ROW_COUNT), None)
    # Failures first, then in suite order: the error and the page lead with what broke.
    outcomes.sort(key=lambda o: o.success)
    return bool(validation.success), outcomes, rows if isinstance(rows, int) else None


def _outcome(result: Any, pii_columns: Sequence[str]) -> ExpectationOutcome:
    config = result.expectation_config
    kwargs = config.kwargs
    columns = tuple(c for c in (kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")) if isinstance(c, str))
    columns += tuple(kwargs.get("column_list") or ())
    details = result.result or {}
    error = None
    info = result.exception_info or {}
    raised = [v for v in (info.values() if "raised_exception" not in info else [info]) if isinstance(v, dict) and v.get("raised_exception")]
    if raised:
        message = str(raised[0].get("exception_message") or "error").strip().splitlines()
        error = message[0][:300] if message else "error"
    is_pii = any(c in pii_columns for c in columns)
    sample = () if is_pii else tuple(json_safe(v) for v in (details.get("partial_unexpected_list") or [])[:SAMPLE_SIZE])
    return ExpectationOutcome(
        expectation=config.type,
        columns=columns,
        success=bool(result.success),
        element_count=details.get("element_count"),
        missing_count=details.get("missing_count"),
        unexpected_count=details.get("unexpected_count"),
        observed_value=details.get("observed_value"),
        sample=sample,
        error=error,
    )
