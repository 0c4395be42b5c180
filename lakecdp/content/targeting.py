"""Block targeting rules: a small declarative language parsed into data, never evaluated as code.

Forms (YAML):
  {segment: cart_abandoned_48h}                       member of a segment
  {profile: frequency, op: ">=", value: 2}            a profile_features column
  {score: intent_decile, op: ">=", value: 8}          a profile_scores column
  {customer: country, op: in, value: [DE, FR]}        a customers column (never email)
  {has: recommended_products}                         a token has a real (non-fallback) value
  {experiment: hero_test, variant: treatment}         the customer's variant in an experiment
  {all: [...]}, {any: [...]}, {not: {...}}            combinations
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "in": lambda left, right: left in right,
    "not_in": lambda left, right: left not in right,
}
_UNARY = ("exists", "missing")
# Contact data never drives targeting: a rule printed in a log must not carry an address.
FORBIDDEN_CUSTOMER_FIELDS = ("email", "last_name")


class Facts(Protocol):
    """What a targeting rule may look at for one customer (read-only: CustomerContext is frozen)."""

    @property
    def segments(self) -> frozenset[str]: ...
    @property
    def profile(self) -> Mapping[str, Any]: ...
    @property
    def scores(self) -> Mapping[str, Any]: ...
    @property
    def attributes(self) -> Mapping[str, Any]: ...


class Condition(Protocol):
    def holds(self, facts: Facts, personal_tokens: frozenset[str], variants: Mapping[str, str]) -> bool: ...


@dataclass(frozen=True)
class InSegment:
    segment: str

    def holds(self, facts, personal_tokens, variants) -> bool:
        return self.segment in facts.segments


@dataclass(frozen=True)
class Compare:
    source: str  # profile | score | customer
    field: str
    op: str
    value: Any

    def holds(self, facts, personal_tokens, variants) -> bool:
        table = {"profile": facts.profile, "score": facts.scores, "customer": facts.attributes}[self.source]
        actual = table.get(self.field)
        if self.op == "exists":
            return actual is not None
        if self.op == "missing":
            return actual is None
        if actual is None:
            return False  # unknown never satisfies a comparison (SQL's three-valued logic)
        try:
            return bool(_COMPARISONS[self.op](actual, self.value))
        except TypeError:
            return False


@dataclass(frozen=True)
class HasToken:
    token: str

    def holds(self, facts, personal_tokens, variants) -> bool:
        return self.token in personal_tokens


@dataclass(frozen=True)
class InVariant:
    experiment: str
    variants: tuple[str, ...]

    def holds(self, facts, personal_tokens, variants) -> bool:
        return variants.get(self.experiment) in self.variants


@dataclass(frozen=True)
class All:
    parts: tuple[Condition, ...]

    def holds(self, facts, personal_tokens, variants) -> bool:
        return all(p.holds(facts, personal_tokens, variants) for p in self.parts)


@dataclass(frozen=True)
class Any_:
    parts: tuple[Condition, ...]

    def holds(self, facts, personal_tokens, variants) -> bool:
        return any(p.holds(facts, personal_tokens, variants) for p in self.parts)


@dataclass(frozen=True)
class Not:
    part: Condition

    def holds(self, facts, personal_tokens, variants) -> bool:
        return not self.part.holds(facts, personal_tokens, variants)


def parse_condition(node: Any, *, tokens: frozenset[str] = frozenset(), path: str = "target") -> Condition:
    """Parse a targeting rule; a ValueError names the key path and the fix."""
    if not isinstance(node, dict) or not node:
        raise ValueError(f"{path}: must be a mapping such as {{segment: name}} or {{profile: frequency, op: '>=', value: 2}}")
    keys = set(node)
    if keys == {"segment"}:
        return InSegment(_name(node["segment"], f"{path}.segment"))
    if keys == {"has"}:
        token = node["has"]
        if token not in tokens:
            raise ValueError(f"{path}.has: {token!r} is not a declared token; declared: {', '.join(sorted(tokens))}")
        return HasToken(token)
    if keys == {"experiment", "variant"}:
        variant = node["variant"]
        names = tuple(variant) if isinstance(variant, list) else (variant,)
        return InVariant(_name(node["experiment"], f"{path}.experiment"), tuple(_name(v, f"{path}.variant") for v in names))
    if keys in ({"all"}, {"any"}):
        kind = next(iter(keys))
        items = node[kind]
        if not isinstance(items, list) or not items:
            raise ValueError(f"{path}.{kind}: must be a non-empty list of conditions")
        parts = tuple(parse_condition(item, tokens=tokens, path=f"{path}.{kind}[{i}]") for i, item in enumerate(items))
        return All(parts) if kind == "all" else Any_(parts)
    if keys == {"not"}:
        return Not(parse_condition(node["not"], tokens=tokens, path=f"{path}.not"))
    source = next((s for s in ("profile", "score", "customer") if s in keys), None)
    if source is not None and keys <= {source, "op", "value"}:
        field = _name(node[source], f"{path}.{source}")
        if source == "customer" and field in FORBIDDEN_CUSTOMER_FIELDS:
            raise ValueError(f"{path}.customer: {field!r} is contact data and cannot drive targeting; use country, city or a segment")
        op = str(node.get("op", "exists"))
        if op not in _COMPARISONS and op not in _UNARY:
            raise ValueError(f"{path}.op: {op!r} is not an operator; use one of {', '.join([*_COMPARISONS, *_UNARY])}")
        if op in _COMPARISONS and "value" not in node:
            raise ValueError(f"{path}: op {op!r} needs a value")
        if op in ("in", "not_in") and not isinstance(node["value"], list):
            raise ValueError(f"{path}.value: op {op!r} needs a list")
        return Compare(source, field, op, node.get("value"))
    raise ValueError(
        f"{path}: unknown condition keys {sorted(keys)}; use one of segment | profile/score/customer (+ op, value) | "
        "has | experiment + variant | all | any | not"
    )


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.replace("_", "").isalnum():
        raise ValueError(f"{path}: {value!r} must be a plain name (letters, digits, underscores)")
    return value
