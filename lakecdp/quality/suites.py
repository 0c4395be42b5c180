"""Suites and checkpoints as data: expectations/*.yaml, validated at load with errors naming file, key and fix.

A suite file names its source (a lake table, or a builder such as `export_batches`), an
optional scope filter, derived columns, the parameters its bounds use, the row-count rule
against the previous run, and a list of Great Expectations 1.x expectations written as
`- expect_snake_case_name: {kwargs}`. Nothing here imports Great Expectations or Spark:
`lakecdp quality list` and the unit tests stay fast; `build_gx_suite` does the GX part.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from string import Template
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lakecdp.config import ConfigError, parse_duration

EXPECTATIONS_DIR_ENV = "LAKECDP_EXPECTATIONS_DIR"
CHECKPOINTS_FILE = "checkpoints.yaml"
BUILDERS = ("export_batches",)
# Parameters every suite may reference as {$PARAMETER: name}; the runner fills them per run.
BUILTIN_PARAMETERS = (
    "as_of",  # the run's as-of instant (Airflow: data_interval_end)
    "min_rows",
    "max_rows",  # the row-count range (row_count: in the suite, vs the previous run)
    "max_future_skew_seconds",  # events.max_future_skew, in seconds
    "max_age_seconds",  # events.max_age, in seconds
    "segment_names",  # the segments conf/base/segments.yaml defines
    "event_types",  # the Segment spec types bronze accepts (lakecdp/events/schema.py)
)
COLUMN_KWARGS = ("column", "column_A", "column_B")
COLUMN_LIST_KWARGS = ("column_list",)
_EXPECTATION_TYPE = re.compile(r"^expect_[a-z0-9_]+$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    """Where the rows come from: a lake table (read through the adapter) or a named builder."""

    table: str | None = None
    builder: Literal["export_batches"] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SourceSpec:
        if (self.table is None) == (self.builder is None):
            raise ValueError("set exactly one of table (a lake table) or builder (export_batches)")
        if self.table is not None:
            from lakecdp.lake.tables import TABLES

            if self.table not in TABLES:
                raise ValueError(f"table {self.table!r} is not declared in lakecdp/lake/tables.py; known: {', '.join(sorted(TABLES))}")
        return self


class RowCountSpec(_Strict):
    """Rows expected: at least `min`, at most `max`, and within ±`max_change` of the previous passing run."""

    min: int = Field(default=0, ge=0)
    max: int | None = Field(default=None, ge=0)
    max_change: float | None = Field(default=None, gt=0)


class InstantSpec(_Strict):
    """An instant relative to the run's as-of: `after: 5m` is as_of + 5 minutes, `before: 30d` as_of - 30 days."""

    after: timedelta | None = None
    before: timedelta | None = None

    @field_validator("after", "before", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta | None:
        return None if value is None else parse_duration(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> InstantSpec:
        if (self.after is None) == (self.before is None):
            raise ValueError("set exactly one of after: DURATION or before: DURATION")
        return self

    @property
    def offset(self) -> timedelta:
        return self.after if self.after is not None else -self.before  # type: ignore[operator]


class SuiteSpec(_Strict):
    suite: str
    description: str = ""
    source: SourceSpec
    scope: str | None = None  # Spark SQL filter; $as_of is the run's as-of as a TIMESTAMP literal
    derive: dict[str, str] = Field(default_factory=dict)  # column -> Spark SQL expression, added before validating
    parameters: dict[str, InstantSpec] = Field(default_factory=dict)
    row_count: RowCountSpec = Field(default_factory=RowCountSpec)
    pii_columns: tuple[str, ...] = ()  # their unexpected values never reach results or errors
    expectations: list[dict[str, dict[str, Any]]]
    path: Path = Field(default=Path("."), exclude=True)

    @field_validator("suite")
    @classmethod
    def _suite_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lower_snake_case, e.g. profile_scores")
        return value

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Template(value).substitute(as_of="TIMESTAMP '2000-01-01T00:00:00+00:00'")
            except (KeyError, ValueError) as exc:
                raise ValueError(f"only $as_of may be substituted in scope ({exc})") from None
        return value

    @field_validator("expectations")
    @classmethod
    def _expectations(cls, value: list[dict[str, dict[str, Any]]]) -> list[dict[str, dict[str, Any]]]:
        if not value:
            raise ValueError("list at least one expectation")
        for index, entry in enumerate(value):
            if len(entry) != 1:
                raise ValueError(f"[{index}] must be one mapping `expect_name: {{kwargs}}`, got keys {sorted(entry)}")
            ((kind, kwargs),) = entry.items()
            if not _EXPECTATION_TYPE.match(kind):
                raise ValueError(f"[{index}] {kind!r} is not a Great Expectations type (expect_...)")
            if not isinstance(kwargs, dict):
                raise ValueError(f"[{index}] {kind}: kwargs must be a mapping")
        return value

    @model_validator(mode="after")
    def _known_parameters(self) -> SuiteSpec:
        known = set(BUILTIN_PARAMETERS) | set(self.parameters)
        clash = sorted(set(self.parameters) & set(BUILTIN_PARAMETERS))
        if clash:
            raise ValueError(f"parameters {clash} are built in; pick other names")
        for index, (kind, kwargs) in enumerate(self.items()):
            unknown = sorted(set(parameter_names(kwargs)) - known)
            if unknown:
                raise ValueError(
                    f"expectations[{index}] {kind} uses unknown parameters {unknown}; "
                    f"declare them under parameters: or use one of {sorted(known)}"
                )
        return self

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for entry in self.expectations:
            yield next(iter(entry.items()))

    def columns(self) -> list[str]:
        """The columns the expectations look at, in first-use order."""
        found: dict[str, None] = {}
        for _, kwargs in self.items():
            for key in COLUMN_KWARGS:
                if isinstance(kwargs.get(key), str):
                    found[kwargs[key]] = None
            for key in COLUMN_LIST_KWARGS:
                for column in kwargs.get(key) or []:
                    found[column] = None
        return list(found)

    def scope_sql(self, as_of_literal: str) -> str | None:
        return None if self.scope is None else Template(self.scope).substitute(as_of=as_of_literal)


class CheckpointSpec(_Strict):
    description: str = ""
    suites: list[str] = Field(min_length=1)


def parameter_names(value: Any) -> Iterator[str]:
    """Every {$PARAMETER: name} inside a kwargs tree."""
    if isinstance(value, Mapping):
        if set(value) == {"$PARAMETER"}:
            yield str(value["$PARAMETER"])
            return
        for child in value.values():
            yield from parameter_names(child)
    elif isinstance(value, (list, tuple)):
        for child in value:
            yield from parameter_names(child)


def expectations_dir(explicit: str | Path | None = None) -> Path:
    """$LAKECDP_EXPECTATIONS_DIR, else ./expectations when it holds suites, else the folder beside this checkout."""
    if explicit is not None:
        return Path(explicit)
    if os.environ.get(EXPECTATIONS_DIR_ENV):
        return Path(os.environ[EXPECTATIONS_DIR_ENV])
    if (Path.cwd() / "expectations" / CHECKPOINTS_FILE).is_file():
        return Path.cwd() / "expectations"
    return Path(__file__).resolve().parents[2] / "expectations"


def _read(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}). Fix the syntax at the position shown.") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, found {type(document).__name__}.")
    return document


def _describe(path: Path, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        fix = f"remove '{error['loc'][-1]}' or check its spelling" if error["type"] == "extra_forbidden" else "correct the value"
        lines.append(f"{path}: {key}: {error['msg']}. Fix: {fix}.")
    return "invalid quality suite:\n  " + "\n  ".join(lines)


def load_suite(name: str, directory: str | Path | None = None) -> SuiteSpec:
    """The suite `name` from <expectations>/<name>.yaml."""
    folder = expectations_dir(directory)
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(suite_names(folder)) or "none"
        raise ConfigError(f"{path}: no such suite. Fix: use one of {known}, or add {name}.yaml to {folder}.")
    try:
        spec = SuiteSpec.model_validate({**_read(path), "path": path})
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc)) from None
    if spec.suite != name:
        raise ConfigError(f"{path}: suite: is {spec.suite!r} but the file is {name}.yaml. Fix: make them match.")
    return spec


def suite_names(directory: str | Path | None = None) -> list[str]:
    folder = expectations_dir(directory)
    return sorted(p.stem for p in folder.glob("*.yaml") if p.name != CHECKPOINTS_FILE)


def load_checkpoints(directory: str | Path | None = None) -> dict[str, CheckpointSpec]:
    """Named groups of suites (a DAG's gate runs one checkpoint) from <expectations>/checkpoints.yaml."""
    folder = expectations_dir(directory)
    path = folder / CHECKPOINTS_FILE
    document = _read(path) if path.is_file() else {}
    raw = document.get("checkpoints") or {}
    if set(document) - {"checkpoints"}:
        raise ConfigError(f"{path}: only a `checkpoints:` section is allowed, found {sorted(document)}.")
    checkpoints = {}
    for name, entry in raw.items():
        try:
            checkpoints[name] = CheckpointSpec.model_validate(entry)
        except ValidationError as exc:
            raise ConfigError(_describe(path, exc).replace(f"{path}: ", f"{path}: checkpoints.{name}.")) from None
        missing = sorted(set(checkpoints[name].suites) - set(suite_names(folder)))
        if missing:
            raise ConfigError(
                f"{path}: checkpoints.{name}.suites: {missing} have no <suite>.yaml in {folder}. Fix: add them or remove the names."
            )
    return checkpoints


def build_gx_suite(spec: SuiteSpec) -> Any:
    """The Great Expectations 1.x ExpectationSuite for a spec, plus the row-count expectation."""
    import great_expectations as gx

    expectations = [_expectation(spec, index, kind, kwargs) for index, (kind, kwargs) in enumerate(spec.items())]
    expectations.append(
        gx.expectations.ExpectTableRowCountToBeBetween(min_value={"$PARAMETER": "min_rows"}, max_value={"$PARAMETER": "max_rows"})
    )
    return gx.ExpectationSuite(name=spec.suite, expectations=expectations)


def _expectation(spec: SuiteSpec, index: int, kind: str, kwargs: dict[str, Any]) -> Any:
    import great_expectations as gx

    class_name = "".join(part.capitalize() for part in kind.split("_"))
    cls = getattr(gx.expectations, class_name, None)
    where = f"{spec.path}: expectations[{index}] {kind}"
    if cls is None:
        raise ConfigError(
            f"{where}: Great Expectations has no such expectation. Fix: use a type from https://greatexpectations.io/expectations/."
        )
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # GX validates with pydantic (v1 API): a ValueError
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise ConfigError(f"{where}: {message}. Fix: correct its arguments.") from None
