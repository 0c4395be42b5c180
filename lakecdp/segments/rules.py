"""The segment rule language: YAML in conf/base/segments.yaml -> validated rule trees.

A rule is one of
  event count   {event: NAME, where: {prop: value}, within: 24h, at_least: N, at_most: M}
  absence       {did: {event: A, where: ...}, then_not: {event: B}, within: 48h}
  attribute     {profile: COLUMN, op: ">=", value: 200}   (a column of profile_features or
                profile_scores, e.g. intent_probability, intent_decile, cluster_id)
  customer      {customer: ATTRIBUTE, op: "==", value: gold} (a CRM column of `customers` that is
                not personal data: country, city, signup_date, marketing_opt_in and the attributes
                conf/base/customers.yaml declares)
  membership    {in_segment: OTHER_SEGMENT}               (no cycles)
  sql           {sql: "customer.city = 'New York' AND orders >= 2"} (a boolean SQL expression over
                the profile view: lakecdp/segments/sql.py); a segment may also say `sql:` instead of `rule:`
  all / any     {all: [rule, ...]}, {any: [rule, ...]}
  not           {not: rule}
  N of M        {at_least: N, of: [rule, ...]}
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import time, timedelta
from functools import cached_property
from typing import Any

from lakecdp.config.durations import parse_duration
from lakecdp.config.models import CustomerSettings, Settings
from lakecdp.config.sections import source_of
from lakecdp.lake.tables import EVENTS, PROFILE_FEATURES, PROFILE_SCORES
from lakecdp.profiles.declarations import Match
from lakecdp.segments.sql import SqlError, SqlRule, parse_sql

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
OPERATORS = ("==", "!=", ">", ">=", "<", "<=", "in")
# Event properties a `where` may filter on: the flattened bronze columns.
ATTRIBUTE_COLUMNS = tuple(c for c in (*PROFILE_FEATURES.columns, *PROFILE_SCORES.columns) if c not in {"customer_id", "as_of"})
WHERE_COLUMNS = tuple(c for c in EVENTS.columns if c not in {"message_id", "timestamp", "received_at", "sent_at", "event_date"})
# Profile columns a SQL segment may read -> Spark type: the scalar ones (not device_mix's map).
SQL_PROFILE_COLUMNS = {
    f.name: f.dataType.simpleString()
    for f in (*PROFILE_FEATURES.schema.fields, *PROFILE_SCORES.schema.fields)
    if f.name in ATTRIBUTE_COLUMNS and f.dataType.simpleString() in ("string", "int", "bigint", "double", "boolean", "date", "timestamp")
}


class RuleError(ValueError):
    """A rule that cannot be compiled, with the file, segment, key and fix."""


@dataclass(frozen=True)
class EventMatch:
    event: str
    where: tuple[tuple[str, Any], ...] = ()

    @cached_property  # the incremental executor reads it for every leaf at each evaluation
    def declared(self) -> Match:
        """The executor-neutral declaration of the events this leaf reads."""
        return Match(self.event, where=self.where)


@dataclass(frozen=True)
class EventCount:
    match: EventMatch
    within: timedelta | None
    at_least: int | None
    at_most: int | None


@dataclass(frozen=True)
class Absence:
    did: EventMatch
    then_not: EventMatch
    within: timedelta


@dataclass(frozen=True)
class Attribute:
    column: str
    op: str
    value: Any
    table: str = "profile"  # profile (profile_features, profile_scores) | customer (customers)
    dtype: str | None = None  # a customer attribute's Spark type (customers.yaml), read null where absent

    @property
    def label(self) -> str:
        """How explain and reasons name the value the leaf read."""
        return self.column if self.table == "profile" else f"customer.{self.column}"


@dataclass(frozen=True)
class InSegment:
    segment: str


@dataclass(frozen=True)
class AllOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class AnyOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    rule: Rule


@dataclass(frozen=True)
class AtLeastOf:
    n: int
    rules: tuple[Rule, ...]


Rule = EventCount | Absence | Attribute | InSegment | AllOf | AnyOf | Not | AtLeastOf | SqlRule


DEFAULT_MAX_LATENESS = timedelta(hours=24)


@dataclass(frozen=True)
class TriggerSpec:
    """Send to `destination` when a customer enters the segment (see lakecdp/triggers)."""

    destination: str
    delay: timedelta = timedelta(0)
    cap_max: int | None = None  # at most cap_max sends per customer ...
    cap_per: timedelta | None = None  # ... within this window
    quiet_start: time | None = None  # local time in the customer's zone
    quiet_end: time | None = None
    # An entry decided longer than this after its moment (when the rule last changed by event time:
    # a cart add + 48 h) is recorded as cancelled, not sent: a backfill of history, a stream that was
    # down, late events. None: never late.
    max_lateness: timedelta | None = DEFAULT_MAX_LATENESS


@dataclass(frozen=True)
class Segment:
    name: str
    description: str
    rule: Rule
    version: str
    trigger: TriggerSpec | None = None


def segments_of(settings: Settings) -> list[Segment]:
    """The segments conf declares, their customer rules checked against the attributes conf declares."""
    return parse_segments(settings.segments, source_of(("segments",), settings.sources), customers=settings.customers)


def parse_segments(
    raw: list[dict[str, Any]], source: str = "conf/base/segments.yaml", *, customers: CustomerSettings | None = None
) -> list[Segment]:
    """Validate the `segments:` list; every error names the file, the segment, the key and the fix.

    Args:
        customers: the declared CRM attributes a `customer:` rule may read (default: none declared).
    """
    customers = customers or CustomerSettings()
    if not isinstance(raw, list):
        raise RuleError(f"{source}: segments: must be a list of segments. Fix: start each segment with '- name: ...'.")
    parsed, seen = [], set()
    for index, entry in enumerate(raw):
        where = f"{source}: segments[{index}]"
        if not isinstance(entry, dict):
            raise RuleError(f"{where}: must be a mapping with name, description and rule.")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise RuleError(f"{where}.name: {name!r} is not a valid segment name. Fix: use lower_snake_case, e.g. cart_abandoned_48h.")
        where = f"{source}: segment '{name}'"
        if name in seen:
            raise RuleError(f"{where}: defined twice. Fix: rename one of them.")
        seen.add(name)
        _no_unknown(entry, {"name", "description", "rule", "sql", "trigger"}, where, "")
        if "rule" in entry and "sql" in entry:
            raise RuleError(f"{where}: has both 'rule:' and 'sql:'. Fix: keep one of them.")
        if "rule" not in entry and "sql" not in entry:
            raise RuleError(f"{where}: has no rule. Fix: add a 'rule:' key (the rule language) or 'sql:' (a SQL expression).")
        written = entry["rule"] if "rule" in entry else {"sql": entry["sql"]}
        rule = _parse_rule(written, where, "rule" if "rule" in entry else "", customers)
        canonical = json.dumps(written, sort_keys=True, default=str)
        parsed.append(
            Segment(
                name=name,
                description=str(entry.get("description", "")),
                rule=rule,
                version=hashlib.sha256(canonical.encode()).hexdigest()[:12],
                trigger=_parse_trigger(entry["trigger"], where) if entry.get("trigger") is not None else None,
            )
        )
    _check_references(parsed, source)
    return parsed


def _parse_trigger(node: Any, where: str) -> TriggerSpec:
    if not isinstance(node, dict):
        raise RuleError(f"{where}: trigger: must be a mapping with at least a destination.")
    _no_unknown(node, {"destination", "delay", "frequency_cap", "quiet_hours", "max_lateness"}, where, "trigger")
    if not isinstance(node.get("destination"), str):
        raise RuleError(f"{where}: trigger.destination: missing. Fix: name a destination from conf/base/triggers.yaml.")
    delay = parse_duration(node.get("delay", "0s")) if node.get("delay") not in (None, 0, "0") else timedelta(0)
    cap_max = cap_per = quiet_start = quiet_end = None
    if node.get("frequency_cap") is not None:
        cap = node["frequency_cap"]
        if not isinstance(cap, dict):
            raise RuleError(f"{where}: trigger.frequency_cap: write {{max: 1, per: 7d}}.")
        _no_unknown(cap, {"max", "per"}, where, "trigger.frequency_cap")
        cap_max = _positive_int(cap.get("max"), where, "trigger.frequency_cap.max")
        cap_per = _window(cap.get("per"), where, "trigger.frequency_cap.per")
    if node.get("quiet_hours") is not None:
        quiet = node["quiet_hours"]
        if not isinstance(quiet, dict):
            raise RuleError(f"{where}: trigger.quiet_hours: write {{start: '21:00', end: '08:00'}}.")
        _no_unknown(quiet, {"start", "end"}, where, "trigger.quiet_hours")
        quiet_start = _clock_time(quiet.get("start"), where, "trigger.quiet_hours.start")
        quiet_end = _clock_time(quiet.get("end"), where, "trigger.quiet_hours.end")
    max_lateness: timedelta | None = DEFAULT_MAX_LATENESS
    if "max_lateness" in node:
        lateness = node["max_lateness"]
        max_lateness = None if lateness is None or lateness == "none" else _window(lateness, where, "trigger.max_lateness")
    return TriggerSpec(node["destination"], delay, cap_max, cap_per, quiet_start, quiet_end, max_lateness)


def _clock_time(value: Any, where: str, key: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise RuleError(f"{where}: {key}: {value!r} is not a time of day. Fix: write it as 'HH:MM', e.g. '21:00'.") from None


def nodes(rule: Rule) -> Iterator[Rule]:
    """The rule and every rule inside it, parents first."""
    yield rule
    if isinstance(rule, Not):
        yield from nodes(rule.rule)
    elif isinstance(rule, (AllOf, AnyOf, AtLeastOf)):
        for child in rule.rules:
            yield from nodes(child)


def references(rule: Rule) -> set[str]:
    """Names of the segments a rule refers to with in_segment."""
    return {node.segment for node in nodes(rule) if isinstance(node, InSegment)}


def segments_reading(segments: list[Segment], profile_columns: set[str]) -> list[Segment]:
    """The segments whose rules read any of `profile_columns` (directly or through in_segment), plus
    every segment those reference (they must be evaluated together to compile), in `segments`' order."""

    def reads(node: Rule) -> bool:
        if isinstance(node, SqlRule):
            return bool(profile_columns & set(node.profile_columns))
        return isinstance(node, Attribute) and node.table == "profile" and node.column in profile_columns

    uses = {s.name: references(s.rule) for s in segments}
    reading = {s.name for s in segments if any(reads(node) for node in nodes(s.rule))}
    while True:  # a segment built on a reading one reads those columns too
        grown = reading | {name for name, refs in uses.items() if refs & reading}
        if grown == reading:
            break
        reading = grown
    needed, stack = set(reading), list(reading)
    while stack:
        for ref in uses[stack.pop()]:
            if ref not in needed:
                needed.add(ref)
                stack.append(ref)
    return [s for s in segments if s.name in needed]


def _check_references(segments: list[Segment], source: str) -> None:
    by_name = {s.name: s for s in segments}
    for segment in segments:
        for name in sorted(references(segment.rule)):
            if name not in by_name:
                raise RuleError(
                    f"{source}: segment '{segment.name}': in_segment: unknown segment {name!r}. Fix: define it or correct the name."
                )

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise RuleError(f"{source}: segment '{name}': in_segment cycle {cycle}. Fix: remove one of these references.")
        for child in sorted(references(by_name[name].rule)):
            visit(child, (*path, name))

    for segment in segments:
        visit(segment.name, ())


def _parse_rule(node: Any, where: str, key: str, customers: CustomerSettings) -> Rule:
    if not isinstance(node, dict):
        raise RuleError(f"{where}: {key}: must be a mapping, got {node!r}. Fix: see the rule forms in conf/base/segments.yaml.")
    if "all" in node or "any" in node:
        op = "all" if "all" in node else "any"
        _no_unknown(node, {op}, where, key)
        children = _parse_list(node[op], where, f"{key}.{op}", customers)
        return AllOf(children) if op == "all" else AnyOf(children)
    if "not" in node:
        _no_unknown(node, {"not"}, where, key)
        return Not(_parse_rule(node["not"], where, f"{key}.not", customers))
    if "of" in node:
        _no_unknown(node, {"at_least", "of"}, where, key)
        children = _parse_list(node["of"], where, f"{key}.of", customers)
        n = _positive_int(node.get("at_least"), where, f"{key}.at_least")
        if n > len(children):
            raise RuleError(
                f"{where}: {key}.at_least: {n} of {len(children)} criteria can never hold. Fix: lower at_least or add criteria."
            )
        return AtLeastOf(n, children)
    if "did" in node:
        _no_unknown(node, {"did", "then_not", "within"}, where, key)
        if "then_not" not in node or "within" not in node:
            raise RuleError(f"{where}: {key}: an absence rule needs did, then_not and within. Fix: e.g. within: 48h.")
        return Absence(
            did=_parse_match(node["did"], where, f"{key}.did"),
            then_not=_parse_match(node["then_not"], where, f"{key}.then_not"),
            within=_window(node["within"], where, f"{key}.within"),
        )
    if "event" in node:
        _no_unknown(node, {"event", "where", "within", "at_least", "at_most"}, where, key)
        at_least = node.get("at_least", 1 if "at_most" not in node else None)
        at_least = None if at_least is None else _non_negative_int(at_least, where, f"{key}.at_least")
        at_most = None if node.get("at_most") is None else _non_negative_int(node["at_most"], where, f"{key}.at_most")
        if at_least is not None and at_most is not None and at_least > at_most:
            raise RuleError(f"{where}: {key}: at_least {at_least} > at_most {at_most} can never hold.")
        within = _window(node["within"], where, f"{key}.within") if "within" in node else None
        match = _parse_match({k: node[k] for k in ("event", "where") if k in node}, where, key)
        return EventCount(match, within, at_least, at_most)
    if "profile" in node:
        _no_unknown(node, {"profile", "op", "value"}, where, key)
        column = node["profile"]
        if column not in ATTRIBUTE_COLUMNS:
            raise RuleError(f"{where}: {key}.profile: unknown profile column {column!r}. Fix: use one of {', '.join(ATTRIBUTE_COLUMNS)}.")
        op, value = _comparison(node, where, key)
        return Attribute(column, op, value)
    if "customer" in node:
        _no_unknown(node, {"customer", "op", "value"}, where, key)
        return customer_attribute(node["customer"], *_comparison(node, where, key), customers, where, f"{key}.customer")
    if "sql" in node:
        _no_unknown(node, {"sql"}, where, key)
        label = f"{key}.sql" if key else "sql"
        if not isinstance(node["sql"], str) or not node["sql"].strip():
            raise RuleError(f'{where}: {label}: must be a SQL boolean expression in quotes, e.g. sql: "orders >= 2".')
        try:
            return parse_sql(node["sql"], SQL_PROFILE_COLUMNS, customers.rule_columns)
        except SqlError as exc:
            raise RuleError(f"{where}: {label}: {exc}.") from None
    if "in_segment" in node:
        _no_unknown(node, {"in_segment"}, where, key)
        if not isinstance(node["in_segment"], str):
            raise RuleError(f"{where}: {key}.in_segment: must be a segment name.")
        return InSegment(node["in_segment"])
    raise RuleError(
        f"{where}: {key}: {sorted(node)} is not a rule. "
        "Fix: use one of event / did+then_not / profile / customer / sql / in_segment / all / any / not / at_least+of."
    )


def _comparison(node: dict, where: str, key: str) -> tuple[str, Any]:
    op = node.get("op", "==")
    if op not in OPERATORS:
        raise RuleError(f"{where}: {key}.op: {op!r} is not an operator. Fix: use one of {', '.join(OPERATORS)}.")
    if "value" not in node:
        raise RuleError(f"{where}: {key}.value: missing. Fix: add the value to compare with.")
    if op == "in" and not isinstance(node["value"], list):
        raise RuleError(f"{where}: {key}.value: 'in' needs a list.")
    return op, node["value"]


def customer_attribute(name: Any, op: str, value: Any, customers: CustomerSettings, where: str, key: str) -> Attribute:
    """A leaf on a CRM column; personal data and undeclared names are refused with the fix."""
    columns = customers.rule_columns
    if name not in columns:
        declared = customers.attributes.get(name) if isinstance(name, str) else None
        if declared is not None and declared.pii:
            raise RuleError(
                f"{where}: {key}: {name!r} is declared pii: true in conf/base/customers.yaml; rules never read personal data. "
                "Fix: use another attribute, or declare it pii: false if it is not personal data."
            )
        raise RuleError(
            f"{where}: {key}: unknown customer attribute {name!r}. "
            f"Fix: declare it under customers.attributes in conf/base/customers.yaml, or use one of {', '.join(columns)}."
        )
    allowed = customers.attributes[name].values if name in customers.attributes else None
    if allowed is not None:
        unknown = [v for v in (value if isinstance(value, list) else [value]) if v not in allowed]
        if unknown:
            raise RuleError(f"{where}: {key}: {name} never takes {unknown[0]!r}. Fix: use one of {', '.join(allowed)}.")
    return Attribute(name, op, value, table="customer", dtype=columns[name])


def customer_columns(segments: list[Segment]) -> dict[str, str]:
    """The CRM columns the segments' rules read -> their Spark types."""
    found: dict[str, str] = {}
    for node in (node for segment in segments for node in nodes(segment.rule)):
        if isinstance(node, Attribute) and node.table == "customer" and node.dtype is not None:
            found[node.column] = node.dtype
        elif isinstance(node, SqlRule):
            found.update(node.customer_columns)
    return found


def _parse_match(node: Any, where: str, key: str) -> EventMatch:
    if not isinstance(node, dict) or not isinstance(node.get("event"), str) or not node["event"].strip():
        raise RuleError(f"{where}: {key}.event: missing event name. Fix: e.g. event: Product Added.")
    _no_unknown(node, {"event", "where"}, where, key)
    filters = node.get("where") or {}
    if not isinstance(filters, dict):
        raise RuleError(f"{where}: {key}.where: must be a mapping of property: value.")
    for column in filters:
        if column not in WHERE_COLUMNS:
            raise RuleError(
                f"{where}: {key}.where.{column}: not an event property lakecdp keeps. Fix: use one of {', '.join(WHERE_COLUMNS)}."
            )
    return EventMatch(node["event"], tuple(sorted(filters.items())))


def _parse_list(node: Any, where: str, key: str, customers: CustomerSettings) -> tuple[Rule, ...]:
    if not isinstance(node, list) or not node:
        raise RuleError(f"{where}: {key}: must be a non-empty list of rules.")
    return tuple(_parse_rule(child, where, f"{key}[{i}]", customers) for i, child in enumerate(node))


def _window(value: Any, where: str, key: str) -> timedelta:
    try:
        window = parse_duration(value)
    except ValueError as exc:
        raise RuleError(f"{where}: {key}: {exc}.") from None
    if window <= timedelta(0) or window > timedelta(days=730):
        raise RuleError(f"{where}: {key}: {value!r} is impossible. Fix: use a window between 1s and 730d.")
    return window


def _positive_int(value: Any, where: str, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RuleError(f"{where}: {key}: {value!r} must be a whole number >= 1.")
    return value


def _non_negative_int(value: Any, where: str, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RuleError(f"{where}: {key}: {value!r} must be a whole number >= 0.")
    return value


def _no_unknown(node: dict, allowed: set[str], where: str, key: str) -> None:
    unknown = sorted(set(node) - allowed)
    if unknown:
        prefix = f"{key}." if key else ""
        raise RuleError(f"{where}: {prefix}{unknown[0]}: unknown field. Fix: allowed here are {', '.join(sorted(allowed))}.")
