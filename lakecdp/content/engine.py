"""The decision matrix, personalization tokens and sandboxed rendering (pure: no I/O).

A slot gets the highest-priority block whose channel, validity window and targeting hold,
else the slot's fallback. Customers without marketing consent (or in the global holdout) get
every slot's fallback and every token's fallback value: nothing about them is used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import css_inline
import tinycss2
from jinja2 import StrictUndefined, TemplateError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from lakecdp.config import ConfigError
from lakecdp.content.settings import CONF_FILE, ContentSettings, TokenSpec, block_merge_field
from lakecdp.content.targeting import Condition, parse_condition
from lakecdp.privacy.email_consent import HELD_OUT

NO_CUSTOMER = "unknown customer"
EXPERIMENT_CONTROL = "experiment control"

# Names every template may use besides the declared tokens.
LAYOUT_NAMES = ("shop_url", "subject")


@dataclass(frozen=True)
class CustomerContext:
    """What the content engine knows about one customer (from the snapshot); no email address."""

    customer_id: str
    block_reason: str | None = None  # None: may receive personalized content
    attributes: Mapping[str, Any] = field(default_factory=dict)  # customers: first_name, country, city
    profile: Mapping[str, Any] = field(default_factory=dict)
    scores: Mapping[str, Any] = field(default_factory=dict)
    segments: frozenset[str] = frozenset()
    cart_items: tuple[Mapping[str, Any], ...] = ()
    recommendations: tuple[Mapping[str, Any], ...] = ()


class Assignments(Protocol):
    def in_global_holdout(self, customer_id: str) -> bool: ...

    def assign(self, experiment: str, customer_id: str) -> str: ...


@dataclass(frozen=True)
class Decision:
    customer_id: str
    personalized: bool
    reason: str | None
    blocks: dict[str, str]  # slot -> block id, in slot order
    tokens: dict[str, Any]
    variants: dict[str, str]

    def as_json(self, settings: ContentSettings) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "personalized": self.personalized,
            "reason": self.reason,
            "blocks": [{"slot": slot, "block_id": block, "kind": settings.blocks[block].kind} for slot, block in self.blocks.items()],
            "tokens": self.tokens,
            "variants": self.variants,
        }


class ContentEngine:
    """Compiled content settings: decide blocks and tokens per customer, render email HTML."""

    def __init__(self, settings: ContentSettings, assignments: Assignments | None = None) -> None:
        self.settings = settings
        self.assignments = assignments
        self._env = _sandbox()
        tokens = frozenset(settings.tokens)
        self._targets: dict[str, Condition | None] = {
            name: None if block.target is None else parse_condition(block.target, tokens=tokens, path=f"blocks.{name}.target")
            for name, block in settings.blocks.items()
        }
        self._templates = {name: self._compile(f"blocks.{name}.template", block.template) for name, block in settings.blocks.items()}
        self._layout = self._env.from_string(EMAIL_LAYOUT)
        _check_stylesheet(settings.stylesheet)
        # Remote stylesheets are never fetched: a render makes no network call.
        self._inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
        gate = settings.experiment_gate
        self._experiments = sorted(
            _referenced_experiments(self._targets.values()) | set(settings.experiments) | ({gate.experiment} if gate else set())
        )
        if assignments is not None:
            for name in self._experiments:
                try:
                    assignments.assign(name, "")
                except KeyError as exc:
                    raise ConfigError(
                        f"{CONF_FILE}: content refers to experiment {name!r}: {exc.args[0]}. Fix: define it or remove the reference."
                    ) from None
        # Candidates per slot, best first: the decision is a scan of a short list.
        self._ranked: dict[str, list[str]] = {
            slot: sorted((n for n, b in settings.blocks.items() if b.slot == slot), key=lambda n: (-settings.blocks[n].priority, n))
            for slot in settings.slots
        }
        self._check_renders()

    # --- deciding ---------------------------------------------------------------------

    def decide(self, context: CustomerContext | None, customer_id: str, *, now: datetime) -> Decision:
        """Chosen block per slot and token values for one customer at `now`."""
        reason = NO_CUSTOMER if context is None else context.block_reason
        # The consent rule's last check (lakecdp.privacy.email_consent), made here: the holdout depends on `now`'s epoch,
        # and the snapshot's reason was decided when it was loaded.
        if reason is None and self.assignments is not None and self.assignments.in_global_holdout(customer_id):
            reason = HELD_OUT
        variants = self._variants(customer_id)
        gate = self.settings.experiment_gate
        if reason is None and gate is not None and variants.get(gate.experiment) in gate.generic_variants:
            reason = f"{EXPERIMENT_CONTROL}: {gate.experiment}={variants[gate.experiment]}"
        if reason is not None or context is None:
            blocks = {slot: spec.fallback for slot, spec in self.settings.slots.items()}
            return Decision(customer_id, False, reason, blocks, self.fallback_tokens(), variants)
        tokens, personal = resolve_tokens(context, self.settings.tokens)
        channel = self.settings.channel
        blocks = {}
        for slot, ranked in self._ranked.items():
            chosen = self.settings.slots[slot].fallback
            for name in ranked:
                block = self.settings.blocks[name]
                target = self._targets[name]
                if channel in block.channels and block.is_valid_at(now) and (target is None or target.holds(context, personal, variants)):
                    chosen = name
                    break
            blocks[slot] = chosen
        return Decision(customer_id, True, None, blocks, tokens, variants)

    def fallback_tokens(self) -> dict[str, Any]:
        return {name: _copy(spec.fallback) for name, spec in self.settings.tokens.items()}

    def _variants(self, customer_id: str) -> dict[str, str]:
        if self.assignments is None:
            return {}
        return {name: self.assignments.assign(name, customer_id) for name in self._experiments}

    # --- ESP merge fields and HTML ----------------------------------------------------

    def merge_fields(self, decision: Decision) -> dict[str, str]:
        """Block ids, token values and experiment variants as flat ESP merge fields."""
        fields = {block_merge_field(slot, self.settings.slots[slot]): block for slot, block in decision.blocks.items()}
        for name, spec in self.settings.tokens.items():
            fields[spec.merge_field] = _as_text(decision.tokens.get(name))
        for experiment, merge_field in self.settings.experiments.items():
            fields[merge_field] = decision.variants.get(experiment, "")
        return fields

    def render(self, decision: Decision) -> str:
        """The whole email as HTML: table layout, CSS inlined onto the elements, every value escaped."""
        return self.render_blocks(decision.blocks.values(), decision.tokens)

    def render_blocks(self, blocks: Iterable[str], tokens: Mapping[str, Any]) -> str:
        """The email with these blocks in this order and these token values (the audit renders every block)."""
        context = self._template_context(tokens)
        # Markup, B704 accepted: each block is our own sandboxed template's autoescaped output; tokens stay escaped.
        sections = [Markup(self._templates[block].render(context)) for block in blocks]  # nosec B704
        # The stylesheet is configuration, checked to hold no markup; tokens stay escaped.
        html = self._inliner.inline(self._layout.render(sections=sections, stylesheet=Markup(self.settings.stylesheet), **context))  # nosec B704
        # The inliner puts the kept @media rules first in <head>; the charset belongs in its first bytes.
        return html.replace(_CHARSET, "", 1).replace("<head>", "<head>" + _CHARSET, 1)

    def _template_context(self, tokens: Mapping[str, Any]) -> dict[str, Any]:
        return {**tokens, "shop_url": self.settings.shop_url, "subject": self.settings.subject}

    def _compile(self, where: str, source: str):
        try:
            parsed = self._env.parse(source)
            if any(True for _ in parsed.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends))):
                raise ConfigError(
                    f"{CONF_FILE}: content.{where}: include/import/extends are not allowed: a block is self-contained. "
                    "Fix: put the markup in the block's template."
                )
            names = meta.find_undeclared_variables(parsed)
            unknown = sorted(names - set(self.settings.tokens) - set(LAYOUT_NAMES))
            if unknown:
                raise ConfigError(
                    f"{CONF_FILE}: content.{where}: uses {unknown}, which are not declared tokens. "
                    f"Fix: declare them under content.tokens (with a fallback) or use one of {sorted(self.settings.tokens)}."
                )
            return self._env.from_string(source)
        except TemplateError as exc:
            raise ConfigError(f"{CONF_FILE}: content.{where}: not a valid template ({exc}). Fix the template syntax.") from None

    def _check_renders(self) -> None:
        """Render every block with fallback values at load, so a template error is a config error, not a 500."""
        context = self._template_context(self.fallback_tokens())
        for name, template in self._templates.items():
            try:
                template.render(context)
            except TemplateError as exc:  # SecurityError and UndefinedError are TemplateErrors
                raise ConfigError(f"{CONF_FILE}: content.blocks.{name}.template: fails to render ({exc}). Fix the template.") from None
        try:
            self.render_blocks([spec.fallback for spec in self.settings.slots.values()], self.fallback_tokens())
        except (TemplateError, ValueError) as exc:
            raise ConfigError(
                f"{CONF_FILE}: content: the email layout fails to render ({exc}). Fix content.stylesheet or the slots' fallbacks."
            ) from None


def _check_stylesheet(stylesheet: str) -> None:
    """Refuse CSS that does not parse: the inliner would drop the broken rule without a word."""
    for rule in tinycss2.parse_stylesheet(stylesheet, skip_comments=True, skip_whitespace=True):
        if rule.type == "error":
            raise ConfigError(f"{CONF_FILE}: content.stylesheet: {rule.message} (line {rule.source_line}). Fix the CSS.")
        content = rule.content or []
        inner = tinycss2.parse_rule_list(content) if rule.type == "at-rule" and rule.lower_at_keyword == "media" else []
        for part in inner:
            if part.type == "error":
                raise ConfigError(f"{CONF_FILE}: content.stylesheet: {part.message} (line {part.source_line}). Fix the CSS.")


def resolve_tokens(context: CustomerContext, tokens: Mapping[str, TokenSpec]) -> tuple[dict[str, Any], frozenset[str]]:
    """Token values for a consenting customer and the names that hold real (non-fallback) data."""
    values: dict[str, Any] = {}
    personal = set()
    for name, spec in tokens.items():
        value = _token_value(context, spec)
        if value is None or value == "" or value == []:
            values[name] = _copy(spec.fallback)
        else:
            values[name] = value
            personal.add(name)
    return values, frozenset(personal)


def _token_value(context: CustomerContext, spec: TokenSpec) -> Any:
    kind, column = spec.kind, spec.field
    if kind == "customer":
        return _clean(context.attributes.get(column))
    if kind == "profile":
        return _clean(context.profile.get(column))
    if kind == "score":
        return _clean(context.scores.get(column))
    if kind == "cart_items":
        return [dict(item) for item in context.cart_items[: spec.limit]]
    if kind == "recommended_products":
        # What is already in the cart has its own block: recommend something else.
        in_cart = {item.get("product_id") for item in context.cart_items}
        fresh = [dict(item) for item in context.recommendations if item.get("product_id") not in in_cart]
        return fresh[: spec.limit]
    if kind == "discount_code":
        return discount_code(context.customer_id, spec.prefix)
    raise AssertionError(kind)


def discount_code(customer_id: str, prefix: str) -> str:
    """A stable personal code per customer (the shop validates codes it issued; this is the id it issues)."""
    return f"{prefix}-{hashlib.sha256(f'discount:{customer_id}'.encode()).hexdigest()[:6].upper()}"


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
    if isinstance(value, float) and value != value:  # NaN from Arrow/pandas
        return None
    return value


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(
            str(item.get("name") or item.get("product_id") or "") if isinstance(item, Mapping) else str(item) for item in value
        )
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _referenced_experiments(conditions) -> set[str]:
    from lakecdp.content import targeting as t

    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, t.InVariant):
            found.add(node.experiment)
        elif isinstance(node, (t.All, t.Any_)):
            for part in node.parts:
                walk(part)
        elif isinstance(node, t.Not):
            walk(node.part)

    for condition in conditions:
        if condition is not None:
            walk(condition)
    return found


def _sandbox() -> SandboxedEnvironment:
    # No loader: {% include %}/{% import %}/{% extends %} cannot reach any file.
    env = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined, loader=None)
    env.filters["money"] = lambda value: "" if value is None else f"${float(value):,.2f}"
    return env


_CHARSET = '<meta charset="utf-8">'

# Email-safe layout: nested tables, a 600 px container (width attribute too: Outlook for Windows ignores
# max-width), no scripts. The stylesheet's rules are moved onto the elements at render (Gmail's apps
# with non-Google accounts and Outlook drop <style>); only its @media rules stay in <head>, where the
# clients that support prefers-color-scheme apply them. color-scheme tells Apple Mail the email has a
# dark design of its own instead of needing its colours inverted.
EMAIL_LAYOUT = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="supported-color-schemes" content="light dark">
<title>{{ subject }}</title>
<style>{{ stylesheet }}</style>
</head>
<body class="lc-page" style="margin:0;padding:0;background-color:#f4f4f4;">
<table role="presentation" class="lc-page" width="100%" cellpadding="0" cellspacing="0" border="0" bgcolor="#f4f4f4" style="background-color:#f4f4f4;">
<tr><td align="center" style="padding:16px 8px;">
<table role="presentation" class="lc-container" width="600" cellpadding="0" cellspacing="0" border="0" bgcolor="#ffffff" style="width:600px;max-width:600px;background-color:#ffffff;font-family:Arial,Helvetica,sans-serif;color:#222222;">
{% for section in sections %}<tr><td style="padding:0;">{{ section }}</td></tr>
{% endfor %}<tr><td class="lc-footer" style="padding:16px 24px;font-size:11px;line-height:16px;color:#6b6b6b;text-align:center;">
You receive this email because you subscribed at <a href="{{ shop_url }}" class="lc-footer" style="color:#6b6b6b;">{{ shop_url }}</a>.
</td></tr>
</table>
</td></tr>
</table>
</body>
</html>
"""
