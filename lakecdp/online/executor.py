"""The incremental executor: per-customer state folded event by event; features, verdicts and timers from that state alone.

The batch executor (`profiles.features`, `segments.compile`) computes the same values from the
customer's whole history in Spark; tests/unit/test_online_differential.py holds the two equal.

State is a plain JSON-able dict per customer, so any key-value store can keep it:
  first/last/n      first and last event instant (µs since the epoch, UTC) and the event count
  m                 per declared Match: [lifetime count, latest instant, instants within its longest window,
                    the latest instant that has left that window]
  avg               [sum, n] of time_on_page_s and of scroll_depth_pct
  rev               order revenue, summed
  at                latest non-null country, city, timezone and viewed category, each [instant, value]
  dev, hr           own events per device type and per local hour (for the mix and the modes)
  cart              cart adds, removes and checkouts after the latest order: [instant, kind, value]
  pv, ca            product views (30 d) and cart adds (24 h) with their category: [instant, category]
  later             events whose time is still ahead of the last evaluation (allowed clock skew)
  seg, due          current memberships {segment: [entered, rule version, reason]}; next timer instant
Windows keep exact instants, not tiles: a tile boundary inside a window would make the two
executors disagree at the boundary, and the longest window (30 d of one customer's events)
stays small.
"""

from __future__ import annotations

import json
import operator
from bisect import bisect_right, insort
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lakecdp.profiles.declarations import (
    CART_ADD,
    CART_REMOVE,
    CHECKOUT,
    COUNT_FEATURES,
    EMAIL_SEND,
    ORDER,
    POINTS_EARNED,
    POINTS_REDEEMED,
    PRODUCT_VIEW,
    TICKET_RESOLVED,
    WINDOWS,
    Match,
    open_tickets,
    response_rate,
    wishlist_items,
)
from lakecdp.segments.rules import Absence, AllOf, AnyOf, AtLeastOf, Attribute, EventCount, InSegment, Not, Rule, Segment
from lakecdp.segments.sql import SqlRule, evaluate as sql_evaluate

US = 1_000_000
STATE_FORMAT = 2  # 2: each match keeps the latest instant that left its window (a store of format 1 bootstraps again)
_DAY_US = 86_400 * US
_ORDER, _CART_ADD = Match(ORDER), Match(CART_ADD)
_PV_WINDOW, _CA_WINDOW = int(WINDOWS["30d"].total_seconds()) * US, int(WINDOWS["24h"].total_seconds()) * US
_LATEST_COLUMNS = ("country", "city", "timezone")
_COMPARE = {"==": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def to_us(at: datetime) -> int:
    """An aware (or UTC-naive) datetime -> µs since the epoch."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    delta = at - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


@overload
def from_us(us: int) -> datetime: ...
@overload
def from_us(us: None) -> None: ...
@overload
def from_us(us: int | None) -> datetime | None: ...
def from_us(us: int | None) -> datetime | None:
    return None if us is None else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def _window_us(window: timedelta) -> int:
    return int(window.total_seconds() * US)


@dataclass
class Plan:
    """The state the declarations need: per Match, a lifetime count, its latest instant and a window of instants."""

    segments: list[Segment]
    # Matches kept beyond what features and rules need: the latest opt-in/opt-out event, which the
    # trigger dispatcher's consent check reads from the state.
    extra: tuple[Match, ...] = ()
    matches: dict[str, Match] = field(default_factory=dict)
    windows: dict[str, int] = field(default_factory=dict)  # match key -> longest window in µs (0: none)
    by_event: dict[str | None, list[str]] = field(default_factory=dict)
    by_type: dict[str | None, list[str]] = field(default_factory=dict)  # None: looked up for an event without a type

    def __post_init__(self) -> None:
        for count in COUNT_FEATURES:
            self._need(count.match, count.window)
        self._need(_ORDER, None)
        self._need(_CART_ADD, None)
        for segment in self.segments:
            self._visit(segment.rule)
        for match in self.extra:
            self._need(match, None)
        for key, match in self.matches.items():
            if match.event is not None:
                self.by_event.setdefault(match.event, []).append(key)
            elif match.type is not None:
                self.by_type.setdefault(match.type, []).append(key)
            else:
                self.by_event.setdefault(None, []).append(key)  # matches every event

    def _need(self, match: Match, window: timedelta | None) -> None:
        self.matches[match.key] = match
        longest = self.windows.get(match.key, 0)
        self.windows[match.key] = max(longest, _window_us(window)) if window is not None else longest

    def _visit(self, rule: Rule) -> None:
        if isinstance(rule, EventCount):
            self._need(rule.match.declared, rule.within)
        elif isinstance(rule, Absence):
            self._need(rule.did.declared, None)
            self._need(rule.then_not.declared, None)
        elif isinstance(rule, Not):
            self._visit(rule.rule)
        elif isinstance(rule, (AllOf, AnyOf, AtLeastOf)):
            for child in rule.rules:
                self._visit(child)

    @property
    def fingerprint(self) -> str:
        """Changes exactly when the state a customer needs changes (a new match or a longer window)."""
        return json.dumps([STATE_FORMAT, sorted(self.windows.items())], separators=(",", ":"))

    def matching(self, event: dict[str, Any]) -> Iterable[str]:
        """Keys of the matches `event` satisfies (dispatched by name and type, then tested)."""
        for key in (*self.by_event.get(event.get("event"), ()), *self.by_type.get(event.get("type"), ()), *self.by_event.get(None, ())):
            if self.matches[key].test(event):
                yield key


def new_state() -> dict[str, Any]:
    return {
        "first": None,
        "last": None,
        "n": 0,
        "m": {},
        "avg": [0.0, 0, 0, 0],
        "rev": 0.0,
        "lp": [0, 0],  # loyalty points earned, redeemed
        "sat": [0, 0],  # satisfaction scores' sum and count
        "at": {},
        "dev": {},
        "hr": {},
        "cart": [],
        "pv": [],
        "ca": [],
        "later": [],
        "seg": {},
        "due": None,
    }


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def fold(plan: Plan, state: dict[str, Any], event: dict[str, Any], as_of: int) -> None:
    """Add one event (bronze columns, `timestamp` in µs) to a customer's state as seen at `as_of`.

    An event ahead of `as_of` waits in `later` until an evaluation instant reaches it: the batch
    executor does not see it before then either.
    """
    at = event["timestamp"]
    if at > as_of:
        state["later"].append(event)
        return
    state["first"] = at if state["first"] is None else min(state["first"], at)
    state["last"] = at if state["last"] is None else max(state["last"], at)
    state["n"] += 1
    for key in plan.matching(event):
        tracked = state["m"].setdefault(key, [0, None, [], None])
        tracked[0] += 1
        tracked[1] = at if tracked[1] is None else max(tracked[1], at)
        window = plan.windows[key]
        if window and at > as_of - window:
            insort(tracked[2], at)
        elif window:
            tracked[3] = _later(tracked[3], at)
    _fold_profile(state, event, at, as_of)


def _fold_profile(state: dict[str, Any], event: dict[str, Any], at: int, as_of: int) -> None:
    name, avg = event.get("event"), state["avg"]
    if event.get("time_on_page_s") is not None:
        avg[0] += event["time_on_page_s"]
        avg[1] += 1
    if event.get("scroll_depth_pct") is not None:
        avg[2] += event["scroll_depth_pct"]
        avg[3] += 1
    for column in _LATEST_COLUMNS:
        _latest(state["at"], column, at, event.get(column))
    category = event.get("category")
    if name == PRODUCT_VIEW and category is not None:
        _latest(state["at"], "category", at, category)
        if at > as_of - _PV_WINDOW:
            insort(state["pv"], [at, category])
    if name in (POINTS_EARNED, POINTS_REDEEMED) and event.get("points") is not None:
        state.setdefault("lp", [0, 0])[0 if name == POINTS_EARNED else 1] += event["points"]
    if name == TICKET_RESOLVED and event.get("satisfaction_score") is not None:
        scores = state.setdefault("sat", [0, 0])
        scores[0] += event["satisfaction_score"]
        scores[1] += 1
    if name == ORDER:
        if event.get("revenue") is not None:
            state["rev"] += event["revenue"]
        last_order = state["m"][_ORDER.key][1]
        state["cart"] = [entry for entry in state["cart"] if entry[0] > last_order]
    elif name in (CART_ADD, CART_REMOVE, CHECKOUT):
        last_order = state["m"].get(_ORDER.key, [0, None])[1]
        if last_order is None or at > last_order:
            value = 0.0
            if name != CHECKOUT:
                value = (event.get("price") or 0.0) * (1 if event.get("quantity") is None else event["quantity"])
            state["cart"].append([at, name, value if name == CART_ADD else -value if name == CART_REMOVE else 0.0])
        if name == CART_ADD and category is not None and at > as_of - _CA_WINDOW:
            state["ca"].append([at, category])
    if name != EMAIL_SEND:
        device, zone = event.get("device_type"), event.get("timezone")
        if device is not None:
            state["dev"][device] = state["dev"].get(device, 0) + 1
        if zone is not None and _zone(zone) is not None:
            hour = str(from_us(at).astimezone(_zone(zone)).hour)
            state["hr"][hour] = state["hr"].get(hour, 0) + 1


def _latest(latest: dict[str, list], column: str, at: int, value: Any) -> None:
    if value is not None and (column not in latest or at > latest[column][0]):
        latest[column] = [at, value]


def merge(plan: Plan, into: dict[str, Any], other: dict[str, Any], as_of: int) -> None:
    """Fold another key's state into `into` (an anonymous device newly linked to a customer)."""
    if other["n"]:
        into["first"] = other["first"] if into["first"] is None else min(into["first"], other["first"])
        into["last"] = other["last"] if into["last"] is None else max(into["last"], other["last"])
    into["n"] += other["n"]
    for key, (n, last, instants, gone) in other["m"].items():
        tracked = into["m"].setdefault(key, [0, None, [], None])
        tracked[0] += n
        tracked[1] = _later(tracked[1], last)
        tracked[2] = sorted(tracked[2] + instants)
        tracked[3] = _later(tracked[3], gone)
    into["avg"] = [a + b for a, b in zip(into["avg"], other["avg"])]
    into["rev"] += other["rev"]
    for name in ("lp", "sat"):
        into[name] = [a + b for a, b in zip(into.get(name, [0, 0]), other.get(name, [0, 0]))]
    for column, (at, value) in other["at"].items():
        _latest(into["at"], column, at, value)
    for name in ("dev", "hr"):
        for value, n in other[name].items():
            into[name][value] = into[name].get(value, 0) + n
    last_order = into["m"].get(_ORDER.key, [0, None])[1]
    into["cart"] = sorted(entry for entry in into["cart"] + other["cart"] if last_order is None or entry[0] > last_order)
    into["pv"] = sorted(into["pv"] + other["pv"])
    into["ca"] = sorted(into["ca"] + other["ca"])
    into["later"] += other["later"]


def advance(plan: Plan, state: dict[str, Any], as_of: int) -> None:
    """Bring a state to `as_of`: fold the events it has reached, drop instants that left every window."""
    if state["later"]:
        waiting, state["later"] = state["later"], []
        for event in waiting:
            fold(plan, state, event, as_of)
    for key, tracked in state["m"].items():
        window = plan.windows.get(key, 0)
        instants = tracked[2]
        if instants and instants[0] <= as_of - window:
            left = bisect_right(instants, as_of - window)
            tracked[3] = _later(tracked[3], instants[left - 1])
            del instants[:left]
    state["pv"] = [entry for entry in state["pv"] if entry[0] > as_of - _PV_WINDOW]
    state["ca"] = [entry for entry in state["ca"] if entry[0] > as_of - _CA_WINDOW]


def _later(a: int | None, b: int | None) -> int | None:
    return a if b is None else b if a is None else max(a, b)


def _count(state: dict[str, Any], match: Match, window: timedelta | None, as_of: int) -> int:
    tracked = state["m"].get(match.key)
    if tracked is None:
        return 0
    if window is None:
        return tracked[0]
    instants = tracked[2]
    return len(instants) - bisect_right(instants, as_of - _window_us(window))


def _oldest(state: dict[str, Any], match: Match, window: timedelta, as_of: int) -> int | None:
    instants = state["m"].get(match.key, [0, None, []])[2]
    position = bisect_right(instants, as_of - _window_us(window))
    return instants[position] if position < len(instants) else None


def _latest_of(state: dict[str, Any], match: Match) -> int | None:
    return state["m"].get(match.key, [0, None])[1]


def _left_window(state: dict[str, Any], match: Match, window: timedelta, as_of: int) -> int | None:
    """The instant the latest event that has left `window` by `as_of` did so (its count dropped then)."""
    tracked = state["m"].get(match.key)
    if tracked is None:
        return None
    instants, window_us = tracked[2], _window_us(window)
    position = bisect_right(instants, as_of - window_us)  # the plan's window may be longer than the rule's
    latest = instants[position - 1] if position else tracked[3]
    return None if latest is None else latest + window_us


def _mode(counts: dict[Any, int]) -> Any:
    """The most frequent value, the lowest on a tie (Spark's mode(deterministic=True))."""
    return min(counts, key=lambda value: (-counts[value], value)) if counts else None


def profile(state: dict[str, Any], customer_id: str, as_of: int) -> dict[str, Any] | None:
    """The customer's profile_features row as of `as_of` (after `advance`); None without events yet."""
    if not state["n"]:
        return None
    row: dict[str, Any] = {
        "customer_id": customer_id,
        "first_seen_at": from_us(state["first"]),
        "last_activity_at": from_us(state["last"]),
        "events_total": state["n"],
    }
    for count in COUNT_FEATURES:
        row[count.name] = _count(state, count.match, count.window, as_of)
    top_sum, top_n, scroll_sum, scroll_n = state["avg"]
    row["avg_time_on_page_s"] = top_sum / top_n if top_n else None
    row["avg_scroll_depth_pct"] = scroll_sum / scroll_n if scroll_n else None
    row["cart_add_categories_24h"] = len({category for _, category in state["ca"]})
    row["monetary"] = float(state["rev"])
    last_order = _latest_of(state, _ORDER)
    row["last_order_at"], row["last_cart_add_at"] = from_us(last_order), from_us(_latest_of(state, _CART_ADD))
    latest = state["at"]
    row["last_category_viewed"] = latest.get("category", [None, None])[1]
    for column in _LATEST_COLUMNS:
        row[column] = latest.get(column, [None, None])[1]
    row["open_cart_value"] = max(sum((value for _, _, value in state["cart"]), 0.0), 0.0)
    row["has_open_cart"] = any(kind == CART_ADD for _, kind, _ in state["cart"])
    row["checkouts_without_order"] = sum(1 for _, kind, _ in state["cart"] if kind == CHECKOUT)
    row.update(_category_views(state["pv"], as_of))
    devices = state["dev"]
    total = sum(devices.values())
    row["device_mix"] = {device: n / total for device, n in sorted(devices.items())} if total else None
    row["top_device_type"] = _mode(devices)
    hour = _mode({int(h): n for h, n in state["hr"].items()})
    row["preferred_local_hour"] = hour
    row["recency_days"] = None if last_order is None else (as_of // US - last_order // US) / 86400.0
    row["frequency"] = row["orders"]
    row["avg_order_value"] = row["monetary"] / row["orders"] if row["orders"] > 0 else None
    row["email_open_rate_30d"] = response_rate(row["email_opens_30d"], row["email_sends_30d"])
    row["email_click_rate_30d"] = response_rate(row["email_clicks_30d"], row["email_sends_30d"])
    row["email_conversion_rate_30d"] = response_rate(row["orders_30d"], row["email_clicks_30d"])
    row["wishlist_items"] = wishlist_items(row["wishlist_adds"], row["wishlist_removes"], row["wishlist_to_cart"])
    row["open_support_tickets"] = open_tickets(row["support_tickets_opened"], row["support_tickets_resolved"])
    earned, redeemed = state.get("lp", [0, 0])
    row["loyalty_points_earned"], row["loyalty_points_redeemed"], row["loyalty_points_balance"] = earned, redeemed, earned - redeemed
    score_sum, scored = state.get("sat", [0, 0])
    row["avg_satisfaction_score"] = score_sum / scored if scored else None
    row["as_of"] = from_us(as_of)
    return row


def _category_views(views: list[list], as_of: int) -> dict[str, Any]:
    maps: dict[str, Any] = {}
    for name, window in WINDOWS.items():
        since = as_of - _window_us(window)  # once per window: a customer of 30 days has views by the hundred
        counts: dict[str, int] = {}
        for at, category in views:
            if at > since:
                counts[category] = counts.get(category, 0) + 1
        maps[f"category_views_{name}"] = dict(sorted(counts.items())) if views else None
    return {**maps, "distinct_categories_30d": len({category for _, category in views})}


@dataclass
class Verdict:
    segment: str
    is_member: bool
    explain: dict[str, Any]  # what the conditions saw, label -> value
    rule_version: str
    next_check_at: int | None
    # The latest instant, at or before the evaluation, at which the rule's inputs changed by event time:
    # the verdict has held since then. None when the rule reads a profile, CRM or score value, whose
    # changes have no event time (lakecdp.triggers.outbox.too_late then never calls an entry late).
    changed_at: int | None = None

    @property
    def reason(self) -> str:
        """`explain` as segment_membership's and segment_transitions' reason text. Written only for a
        member or a transition: most verdicts of an evaluation are neither (a 2,000-event live batch
        evaluates the 10 default segments for ~280 customers)."""
        return json.dumps(self.explain, default=str, sort_keys=True)


@dataclass
class _Context:
    state: dict[str, Any]
    values: dict[str, Any]  # profile features and scores; "customer": the CRM columns rules read
    as_of: int
    segments: dict[str, Segment]
    explain: dict[str, Any] = field(default_factory=dict)
    changes: list[int] = field(default_factory=list)  # instants time alone can flip a leaf (after as_of: timers)
    changed: list[int] = field(default_factory=list)  # the leaves' latest changes by as_of, by event time
    untimed: bool = False  # a leaf read a value whose changes have no event time (profile, CRM, score)

    def changed_at(self, *instants: int | None) -> None:
        self.changed += [at for at in instants if at is not None]

    def explain_as(self, label: str, value: Any) -> None:
        unique = label if label not in self.explain else f"{label} #{len(self.explain)}"
        self.explain[unique] = from_us(value).isoformat() if isinstance(value, int) and label.startswith("last ") else value


def verdicts(
    state: dict[str, Any], values: dict[str, Any], segments: list[Segment], as_of: int, *, all_segments: list[Segment] | None = None
) -> list[Verdict]:
    """Every segment's verdict for one customer as of `as_of`, with the earliest later instant time alone can flip it."""
    by_name = {s.name: s for s in (all_segments or segments)}
    result = []
    for segment in segments:
        context = _Context(state, values, as_of, by_name)
        holds = _holds(segment.rule, context)
        future = [at for at in context.changes if at > as_of]
        changed = None if context.untimed else max([state["first"], *context.changed])
        result.append(Verdict(segment.name, holds, context.explain, segment.version, min(future) if future else None, changed))
    return result


def _holds(rule: Rule, context: _Context) -> bool:
    """Mirror of segments.compile._compile: every child is evaluated (no short cut), so every leaf's timer counts."""
    as_of, state = context.as_of, context.state
    if isinstance(rule, EventCount):
        match = rule.match.declared
        count = _count(state, match, rule.within, as_of)
        context.changed_at(_latest_of(state, match))
        if rule.within is not None:
            oldest = _oldest(state, match, rule.within, as_of)
            if oldest is not None:
                context.changes.append(oldest + _window_us(rule.within))
            context.changed_at(_left_window(state, match, rule.within, as_of))
        window = f" within {rule.within}" if rule.within is not None else ""
        context.explain_as(f"count({_describe(rule.match)}){window}", count)
        return (rule.at_least is None or count >= rule.at_least) and (rule.at_most is None or count <= rule.at_most)
    if isinstance(rule, Absence):
        last_did, last_then = _latest_of(state, rule.did.declared), _latest_of(state, rule.then_not.declared)
        context.explain_as(f"last {_describe(rule.did)}", last_did)
        context.explain_as(f"last {_describe(rule.then_not)}", last_then)
        context.changed_at(last_did, last_then)
        if last_did is None:
            return False
        no_follow_up = last_then is None or last_then < last_did
        waited = last_did <= as_of - _window_us(rule.within)
        if no_follow_up:
            context.changes.append(last_did + _window_us(rule.within))
            if waited:
                context.changed_at(last_did + _window_us(rule.within))
        return waited and no_follow_up
    if isinstance(rule, Attribute):
        value = context.values.get(rule.column) if rule.table == "profile" else (context.values.get("customer") or {}).get(rule.column)
        context.explain_as(rule.label, value)
        context.untimed = True
        return _compare(value, rule.op, rule.value)
    if isinstance(rule, SqlRule):
        customer = context.values.get("customer") or {}
        for name in rule.profile_columns:
            context.explain_as(name, context.values.get(name))
        for name, _ in rule.customer_columns:
            context.explain_as(f"customer.{name}", customer.get(name))
        context.untimed = True
        return sql_evaluate(rule.tree, context.values, customer) is True
    if isinstance(rule, InSegment):
        inner = _Context(state, context.values, as_of, context.segments)
        holds = _holds(context.segments[rule.segment].rule, inner)
        context.changes += inner.changes
        context.changed += inner.changed
        context.untimed |= inner.untimed
        context.explain_as(f"in {rule.segment}", holds)
        return holds
    if isinstance(rule, (AllOf, AnyOf, AtLeastOf)):
        hits = [_holds(child, context) for child in rule.rules]
        if isinstance(rule, AllOf):
            return all(hits)
        return any(hits) if isinstance(rule, AnyOf) else sum(hits) >= rule.n
    if isinstance(rule, Not):
        return not _holds(rule.rule, context)
    raise TypeError(f"unknown rule node {type(rule).__name__}")


def _describe(match) -> str:
    return match.event + "".join(f", {column}={value}" for column, value in match.where)


def _compare(value: Any, op: str, expected: Any) -> bool:
    """Spark's comparison of a profile value with a rule's literal; null is never a match."""
    if value is None:
        return False
    if op == "in":
        return value in list(expected)
    if isinstance(value, datetime) and isinstance(expected, str):
        expected = datetime.fromisoformat(expected.replace("Z", "+00:00"))
        expected = expected if expected.tzinfo else expected.replace(tzinfo=UTC)
    elif isinstance(value, date) and not isinstance(value, datetime) and isinstance(expected, str):
        expected = date.fromisoformat(expected)  # a CRM date column beside a quoted YAML date
    try:
        return bool(_COMPARE[op](value, expected))
    except TypeError:
        return False
