"""`lakecdp content audit`: the HTML, CSS and images an email uses, checked against caniemail's support data.

Pure: the data set comes in as `SupportData` (lakecdp/content/caniemail.py reads it), HTML as strings.
Which HTML element, attribute, CSS property, value, unit, function, at-rule or selector belongs to which
caniemail feature is derived from the features' titles ("<video> element", "align attribute",
"display:flex", "@media (prefers-color-scheme)", "rem unit", ":hover"), the way the caniemail npm
package's own checker does; a handful of titles that name a group ("HTML5 semantics") are spelled
out below. The support levels themselves are only ever read from the data.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import tinycss2

from lakecdp.config import ConfigError
from lakecdp.content.caniemail import SupportData
from lakecdp.content.engine import ContentEngine, discount_code
from lakecdp.content.settings import CONF_FILE, AuditSettings

# Titles that name a group of things rather than one (the npm package's checker lists the same).
_GROUP_ELEMENTS = {
    "html-semantics": (
        "article",
        "aside",
        "details",
        "figcaption",
        "figure",
        "footer",
        "header",
        "main",
        "mark",
        "nav",
        "section",
        "summary",
        "time",
    ),
    "html-address": ("address",),
    "html-image-maps": ("map", "area"),
}
_GROUP_PROPERTIES = {
    "css-border-inline-block-individual": ("border-block-end", "border-block-start", "border-inline-end", "border-inline-start"),
    "css-border-inline-block-longhand": (
        "border-block-color",
        "border-block-style",
        "border-block-width",
        "border-inline-color",
        "border-inline-style",
        "border-inline-width",
    ),
    "css-border-radius-logical": (
        "border-end-end-radius",
        "border-end-start-radius",
        "border-start-end-radius",
        "border-start-start-radius",
    ),
    "css-column-layout-properties": (
        "column-count",
        "column-fill",
        "column-gap",
        "column-rule",
        "column-rule-color",
        "column-rule-style",
        "column-rule-width",
        "column-span",
        "column-width",
        "columns",
    ),
    "css-grid-template": ("grid-template", "grid-template-areas", "grid-template-columns", "grid-template-rows"),
    "css-inert-attribute": (),  # "inert" is an HTML attribute: see _ATTRIBUTE_SLUGS
}
_VALUE_KEYWORD_SLUGS = ("css-intrinsic-size", "css-sytem-ui")  # titles listing keywords, not properties
_ATTRIBUTE_SLUGS = {"css-inert-attribute": ("inert",), "html-srcset": ("srcset", "sizes")}
_IMAGE_EXTENSIONS = {"jpg": ("jpg", "jpeg"), "tiff": ("tif", "tiff"), "heif": ("heif", "heic"), "mp4": ("mp4",)}
_SELECTOR_KINDS = (
    "class",
    "id",
    "type",
    "universal",
    "attribute",
    "descendant",
    "child",
    "adjacent-sibling",
    "general-sibling",
    "chaining",
    "grouping",
)
_BOX_SIDES = re.compile(r"^(?P<base>padding|margin|border|outline)-(top|right|bottom|left)(-(color|style|width))?$")
_PROPERTY = re.compile(r"^-?[a-z][a-z-]*$")
_LEVEL_OF = {"y": "supported", "n": "unsupported", "a": "partial", "u": "unknown"}
_WORST_FIRST = ("n", "a", "u", "y")


@dataclass
class FeatureIndex:
    """What in HTML/CSS maps to which caniemail slug, derived from the data's titles."""

    elements: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    attributes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    element_attribute_values: list[tuple[str, str, str, str]] = field(default_factory=list)  # tag, attribute, value, slug
    properties: dict[str, str] = field(default_factory=dict)
    shorthand_only: set[str] = field(default_factory=set)
    property_values: dict[tuple[str, str], str] = field(default_factory=dict)
    functions: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    value_keywords: dict[str, str] = field(default_factory=dict)
    at_rules: dict[str, str] = field(default_factory=dict)
    media_features: dict[str, str] = field(default_factory=dict)
    pseudo_classes: dict[str, str] = field(default_factory=dict)
    pseudo_elements: dict[str, str] = field(default_factory=dict)
    selectors: dict[str, str] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    special: dict[str, str] = field(default_factory=dict)  # doctype, comments, important, variables, nesting, ...
    unmatched: list[str] = field(default_factory=list)  # slugs no HTML or CSS can be matched to (e.g. BIMI)


def build_index(data: SupportData) -> FeatureIndex:
    """Map each caniemail feature to what marks its use in HTML or CSS, from its slug and title."""
    index = FeatureIndex()
    for slug, feature in data.features.items():
        title = feature["title"].strip()
        category = feature["category"]
        if not _index_feature(index, slug, title, category):
            index.unmatched.append(slug)
    return index


def _index_feature(index: FeatureIndex, slug: str, title: str, category: str) -> bool:
    special = {
        "html-doctype": "doctype",
        "html-comments": "html-comment",
        "css-comments": "css-comment",
        "css-important": "important",
        "css-variables": "variables",
        "css-nesting": "nesting",
        "html-anchor-links": "local-anchor",
        "html-mailto-links": "mailto",
        "html-meta-color-scheme": "meta-color-scheme",
        "amp": "amp",
        "image-base64": "data-uri",
    }
    if slug in special:
        index.special[special[slug]] = slug
        return True
    if slug in _ATTRIBUTE_SLUGS:
        for name in _ATTRIBUTE_SLUGS[slug]:
            index.attributes[name].add(slug)
        return True
    if slug in _GROUP_ELEMENTS:
        for tag in _GROUP_ELEMENTS[slug]:
            index.elements[tag].add(slug)
        return True
    if slug in _GROUP_PROPERTIES:
        for name in _GROUP_PROPERTIES[slug]:
            index.properties[name] = slug
        return True
    if category == "html":
        return _index_html(index, slug, title)
    if category == "image":
        return _index_image(index, slug, title)
    if category == "css":
        return _index_css(index, slug, title)
    return False


def _index_html(index: FeatureIndex, slug: str, title: str) -> bool:
    pairs = re.findall(r'<(\w+) (\w+)="([^"]+)">', title)
    if pairs:
        index.element_attribute_values.extend((tag, attribute, value, slug) for tag, attribute, value in pairs)
        return True
    if title.endswith(" attribute"):
        index.attributes[title.removesuffix(" attribute")].add(slug)
        return True
    tags = re.findall(r"<(\w+)>", title)
    if " to " in title and len(tags) == 2 and re.match(r"h[1-6]$", tags[0]):  # "<h1> to <h6> elements"
        tags = [f"h{n}" for n in range(int(tags[0][1]), int(tags[1][1]) + 1)]
    for tag in tags:
        index.elements[tag.lower()].add(slug)
    return bool(tags)


def _index_image(index: FeatureIndex, slug: str, title: str) -> bool:
    name = slug.removeprefix("image-")
    if name in ("apng", "hdr"):  # not told apart from PNG / other formats by a file name
        return False
    for extension in _IMAGE_EXTENSIONS.get(name, (name,)):
        index.images[extension] = slug
    return True


def _index_css(index: FeatureIndex, slug: str, title: str) -> bool:
    if slug.startswith("css-selector-"):
        kind = slug.removeprefix("css-selector-")
        if kind in _SELECTOR_KINDS:
            index.selectors[kind] = slug
            return True
        return False
    if slug.startswith("css-pseudo-class-"):
        index.pseudo_classes[slug.removeprefix("css-pseudo-class-")] = slug
        return True
    if slug.startswith("css-pseudo-element-"):
        index.pseudo_elements[slug.removeprefix("css-pseudo-element-")] = slug
        return True
    if title.startswith("@"):
        features = re.findall(r"\((-?[a-z-]+)\)", title)
        if features:
            for name in features:
                index.media_features[name] = slug
        else:
            index.at_rules[title.removeprefix("@")] = slug
        return True
    pair = re.match(r"^([a-z-]+):\s*([a-z-]+)$", title)
    if pair:
        index.property_values[(pair.group(1), pair.group(2))] = slug
        return True
    if title.endswith(" unit"):
        unit = title.removesuffix(" unit")
        index.units["%" if unit == "%" else unit] = slug
        return True
    functions = re.findall(r"([a-z-]+)\(\)", title)
    if functions:
        for name in functions:
            index.functions[name] = slug
        return True
    if slug in _VALUE_KEYWORD_SLUGS:
        for keyword in re.split(r",\s*", title):
            index.value_keywords[keyword] = slug
        return True
    if title.endswith(" shorthand"):
        name = title.removesuffix(" shorthand")
        index.properties[name] = slug
        index.shorthand_only.add(name)
        return True
    name = re.sub(r"( CSS)? property$", "", title)
    names = re.split(r"\s*(?:,|&)\s*", name)
    if all(_PROPERTY.match(part) for part in names):
        for part in names:
            index.properties[part] = slug
        return True
    return False


# --- what an email uses -----------------------------------------------------------------


@dataclass
class Usage:
    """The features one HTML document uses: slug -> where (short descriptions, first few kept)."""

    where: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, slug: str | None, where: str) -> None:
        if slug is None:
            return
        places = self.where[slug]
        if where not in places and len(places) < 5:
            places.append(where)


def features_used(html: str, index: FeatureIndex) -> Usage:
    """Every caniemail feature the HTML document uses, with where it was seen."""
    scanner = _HtmlScanner(index)
    scanner.feed(html)
    scanner.close()
    return scanner.usage


class _HtmlScanner(HTMLParser):
    def __init__(self, index: FeatureIndex) -> None:
        super().__init__(convert_charrefs=True)
        self.index = index
        self.usage = Usage()
        self._in_style = False

    def handle_decl(self, decl: str) -> None:
        if decl.lower().strip() == "doctype html":
            self.usage.add(self.index.special.get("doctype"), "<!DOCTYPE html>")

    def handle_comment(self, data: str) -> None:
        self.usage.add(self.index.special.get("html-comment"), "<!-- -->")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        index, usage = self.index, self.usage
        values = {name: value or "" for name, value in attrs}
        for slug in index.elements.get(tag, ()):
            usage.add(slug, f"<{tag}>")
        for name in values:
            for slug in index.attributes.get(name, ()):
                usage.add(slug, f"<{tag} {name}>")
        for pair_tag, attribute, value, slug in index.element_attribute_values:
            if pair_tag == tag and values.get(attribute, "").lower() == value:
                usage.add(slug, f'<{tag} {attribute}="{value}">')
        href = values.get("href", "")
        if tag == "a" and (href.startswith("#") or "name" in values):
            usage.add(index.special.get("local-anchor"), "<a href=#...>")
        if tag == "a" and href.lower().startswith("mailto:"):
            usage.add(index.special.get("mailto"), "<a href=mailto:...>")
        if tag == "meta" and values.get("name", "").lower() == "color-scheme":
            usage.add(index.special.get("meta-color-scheme"), '<meta name="color-scheme">')
        if tag == "html" and ({"⚡4email", "amp4email"} & set(values)):
            usage.add(index.special.get("amp"), "<html amp4email>")
        for url in _image_urls(tag, values):
            self._image(url, f"<{tag}>")
        if "style" in values:
            declarations = tinycss2.parse_blocks_contents(values["style"], skip_comments=False, skip_whitespace=True)
            _scan_declarations(declarations, index, usage, f"<{tag} style>", self._image)
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style and data.strip():
            rules = tinycss2.parse_stylesheet(data, skip_comments=False, skip_whitespace=True)
            _scan_rules(rules, self.index, self.usage, "<style>", self._image)

    def _image(self, url: str, where: str) -> None:
        if url.startswith("data:"):
            self.usage.add(self.index.special.get("data-uri"), f"{where} data: URI")
            return
        extension = url.split("?", 1)[0].split("#", 1)[0].rsplit(".", 1)[-1].lower()
        self.usage.add(self.index.images.get(extension), f"{where} .{extension}")


def _image_urls(tag: str, values: Mapping[str, str]) -> list[str]:
    urls = []
    if tag in ("img", "input") and values.get("src"):
        urls.append(values["src"].strip())
    if values.get("srcset"):
        urls += [part.strip().split(" ")[0] for part in values["srcset"].split(",") if part.strip()]
    if values.get("background"):
        urls.append(values["background"].strip())
    return urls


def _scan_rules(rules: Iterable[Any], index: FeatureIndex, usage: Usage, where: str, image) -> None:
    for rule in rules:
        if rule.type == "comment":
            usage.add(index.special.get("css-comment"), f"{where} /* */")
        elif rule.type == "at-rule":
            name = rule.lower_at_keyword
            context = f"{where} @{name} {tinycss2.serialize(rule.prelude).strip()}".strip()
            usage.add(index.at_rules.get(name), f"{where} @{name}")
            for token in rule.prelude:
                if token.type == "() block":
                    feature = next((t for t in token.content if t.type == "ident"), None)
                    if feature is not None:
                        usage.add(index.media_features.get(_media_feature(feature.lower_value)), context)
            if rule.content is not None and name in ("media", "supports", "document"):
                _scan_rules(tinycss2.parse_rule_list(rule.content, skip_comments=False, skip_whitespace=True), index, usage, context, image)
            elif rule.content is not None:
                declarations = tinycss2.parse_blocks_contents(rule.content, skip_comments=False, skip_whitespace=True)
                _scan_declarations(declarations, index, usage, context, image)
        elif rule.type == "qualified-rule":
            _scan_selector(rule.prelude, index, usage, where)
            declarations = tinycss2.parse_blocks_contents(rule.content, skip_comments=False, skip_whitespace=True)
            _scan_declarations(declarations, index, usage, where, image)


def _media_feature(name: str) -> str:
    # min-/max- prefixed range features belong to their feature: -webkit-min-device-pixel-ratio -> -webkit-device-pixel-ratio
    return re.sub(r"(^|-)(min|max)-", r"\1", name)


def _scan_declarations(declarations: Iterable[Any], index: FeatureIndex, usage: Usage, where: str, image) -> None:
    for declaration in declarations:
        if declaration.type == "comment":
            usage.add(index.special.get("css-comment"), f"{where} /* */")
            continue
        if declaration.type == "qualified-rule":  # a nested rule
            usage.add(index.special.get("nesting"), where)
            continue
        if declaration.type != "declaration":
            continue
        name = declaration.lower_name
        at = f"{where} {name}"
        if name.startswith("--"):
            usage.add(index.special.get("variables"), at)
        else:
            usage.add(_property_slug(name, index), at)
        if declaration.important:
            usage.add(index.special.get("important"), f"{at} !important")
        _scan_value(declaration.value, name, index, usage, at, image)


def _property_slug(name: str, index: FeatureIndex) -> str | None:
    bare = re.sub(r"^-(webkit|moz|ms|o)-", "", name)
    if bare in index.properties:
        return index.properties[bare]
    if re.match(r"^border(-(top|bottom))?(-(left|right))?-radius$", bare):
        return index.properties.get("border-radius")
    sides = _BOX_SIDES.match(bare)
    if sides:
        return index.properties.get(sides.group("base"))
    # A longhand of a feature named by its prefix (animation-name -> animation); a "shorthand" title is that shorthand alone.
    parts = bare.split("-")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = "-".join(parts[:cut])
        if prefix in index.properties and prefix not in index.shorthand_only:
            return index.properties[prefix]
    return None


def _scan_value(tokens: Iterable[Any], property_name: str, index: FeatureIndex, usage: Usage, where: str, image) -> None:
    for token in tokens:
        kind = token.type
        if kind == "ident":
            value = token.lower_value
            usage.add(index.property_values.get((property_name, value)), f"{where}: {value}")
            usage.add(index.value_keywords.get(value), f"{where}: {value}")
            if value == "initial":
                usage.add(index.units.get("initial"), f"{where}: initial")
        elif kind == "dimension":
            usage.add(index.units.get(token.lower_unit), f"{where}: {token.representation}{token.unit}")
        elif kind == "percentage":
            usage.add(index.units.get("%"), f"{where}: %")
        elif kind == "url":
            image(token.value, where)
        elif kind == "function":
            name = token.lower_name
            usage.add(index.special.get("variables") if name == "var" else index.functions.get(name), f"{where}: {name}()")
            if name == "url":
                url = next((t.value for t in token.arguments if t.type == "string"), "")
                image(url, where)
            _scan_value(token.arguments, property_name, index, usage, where, image)
        elif kind in ("() block", "[] block", "{} block"):
            _scan_value(token.content, property_name, index, usage, where, image)


def _scan_selector(prelude: list[Any], index: FeatureIndex, usage: Usage, where: str) -> None:
    text = tinycss2.serialize(prelude).strip()
    at = f"{where} {text}"
    found: set[str] = set()
    groups = _split_commas(prelude)
    if len(groups) > 1:
        found.add("grouping")
    for group in groups:
        simple_in_compound = 0
        previous = None
        tokens = list(group)
        for position, token in enumerate(tokens):
            kind = token.type
            following = tokens[position + 1] if position + 1 < len(tokens) else None
            if kind == "whitespace":
                if previous is not None and following is not None and not _is_combinator(previous) and not _is_combinator(following):
                    found.add("descendant")
                    simple_in_compound = 0
            elif kind == "literal" and token.value in (">", "+", "~"):
                found.add({">": "child", "+": "adjacent-sibling", "~": "general-sibling"}[token.value])
                simple_in_compound = 0
            elif kind == "literal" and token.value == "&":
                usage.add(index.special.get("nesting"), at)
            elif kind == "literal" and token.value == "*":
                found.add("universal")
                simple_in_compound += 1
            elif kind == "literal" and token.value == ".":
                found.add("class")
                simple_in_compound += 1
            elif kind == "hash":
                found.add("id")
                simple_in_compound += 1
            elif kind == "[] block":
                found.add("attribute")
                simple_in_compound += 1
            elif kind == "literal" and token.value == ":":
                double = previous is not None and previous.type == "literal" and previous.value == ":"
                if following is not None and following.type in ("ident", "function"):
                    name = following.lower_value if following.type == "ident" else following.lower_name
                    table = index.pseudo_elements if double else index.pseudo_classes
                    usage.add(table.get(name), at)
                    if following.type == "function" and name in ("not", "has", "is", "where"):
                        _scan_selector(list(following.arguments), index, usage, where)
            elif kind == "ident" and not (previous is not None and previous.type == "literal" and previous.value in (".", ":")):
                found.add("type")
                simple_in_compound += 1
            if simple_in_compound > 1:
                found.add("chaining")
            if kind != "whitespace":
                previous = token
    for kind in found:
        usage.add(index.selectors.get(kind), at)


def _split_commas(tokens: list[Any]) -> list[list[Any]]:
    groups: list[list[Any]] = [[]]
    for token in tokens:
        if token.type == "literal" and token.value == ",":
            groups.append([])
        else:
            groups[-1].append(token)
    return [group for group in groups if any(t.type != "whitespace" for t in group)]


def _is_combinator(token: Any) -> bool:
    return token.type == "literal" and token.value in (">", "+", "~", ",")


# --- support and findings -----------------------------------------------------------------


@dataclass(frozen=True)
class ClientSupport:
    client: str  # family.platform
    level: str  # supported | partial | unsupported | unknown
    versions: tuple[str, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    slug: str
    title: str
    url: str
    severity: str  # error | warning
    clients: tuple[ClientSupport, ...]
    where: tuple[str, ...]
    fallback: str | None = None
    emails: tuple[str, ...] = ()  # which audited emails use it (names given by the caller)

    def as_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "title": self.title,
            "url": self.url,
            "severity": self.severity,
            "clients": [
                {"client": c.client, "support": c.level, "versions": list(c.versions), "notes": list(c.notes)} for c in self.clients
            ],
            "where": list(self.where),
            "fallback": self.fallback,
            "emails": list(self.emails),
        }


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def client_support(feature: Mapping[str, Any], client: str, versions: str) -> ClientSupport | None:
    """A feature's support in one client: the newest test, or the worst of all tested versions."""
    family, _, platform = client.partition(".")
    stats = feature["stats"].get(family, {}).get(platform)
    if not stats:
        return None
    ordered = sorted(stats, key=_version_key)
    considered = ordered[-1:] if versions == "latest" else ordered
    codes = {version: stats[version].split()[0][:1] for version in considered}
    worst = min(codes.values(), key=_WORST_FIRST.index)
    at = tuple(version for version in considered if codes[version] == worst)
    numbers = sorted({number for version in at for number in re.findall(r"#(\d+)", stats[version])}, key=int)
    notes = tuple(feature.get("notes_by_num", {}).get(number, "") for number in numbers)
    general = (feature.get("notes") or "").strip()
    return ClientSupport(client, _LEVEL_OF.get(worst, "unknown"), at, tuple(n for n in (*notes, general) if n))


def check_settings(data: SupportData, settings: AuditSettings) -> None:
    """Fail loudly when conf names a client or a fallback slug the data set does not have."""
    if not settings.clients:
        raise ConfigError(
            f"{CONF_FILE}: content.audit.clients is empty. Fix: list the targeted clients, e.g. gmail.desktop-webmail: latest."
        )
    platforms = {
        f"{family}.{platform}" for feature in data.features.values() for family, plats in feature["stats"].items() for platform in plats
    }
    for client in settings.clients:
        if client not in platforms:
            close = sorted(p for p in platforms if p.split(".")[0] == client.split(".")[0])
            raise ConfigError(
                f"{CONF_FILE}: content.audit.clients.{client}: caniemail {data.version} has no such client. "
                f"Fix: use one of {close or sorted({p.split('.')[0] for p in platforms})}."
            )
    for slug in settings.fallbacks:
        if slug not in data.features:
            raise ConfigError(
                f"{CONF_FILE}: content.audit.fallbacks.{slug}: not a caniemail feature slug. "
                "Fix: use the slug from the feature's page, e.g. css-at-media-prefers-color-scheme."
            )


def judge(usage: Usage, data: SupportData, settings: AuditSettings) -> list[Finding]:
    """Findings for one document: each used feature some targeted client lacks, at its configured severity."""
    findings = []
    for slug, where in usage.where.items():
        feature = data.features[slug]
        supports = [s for client, versions in settings.clients.items() if (s := client_support(feature, client, versions)) is not None]
        fallback = settings.fallbacks.get(slug)
        severities = {s.client: _severity(s.level, fallback, settings) for s in supports}
        reported = tuple(s for s in supports if severities[s.client] != "ignore")
        if not reported:
            continue
        severity = "error" if any(severities[s.client] == "error" for s in reported) else "warning"
        findings.append(Finding(slug, feature["title"].strip(), feature.get("url", ""), severity, reported, tuple(where), fallback))
    return sorted(findings, key=lambda f: (f.severity != "error", f.slug))


def _severity(level: str, fallback: str | None, settings: AuditSettings) -> str:
    if level == "supported":
        return "ignore"
    if level == "unsupported":
        return settings.severity.unsupported_with_fallback if fallback else settings.severity.unsupported
    return getattr(settings.severity, level)


def audit_documents(documents: Mapping[str, str], data: SupportData, settings: AuditSettings) -> list[Finding]:
    """Audit several rendered emails (name -> HTML); one finding per feature, naming the emails that use it."""
    check_settings(data, settings)
    index = build_index(data)
    merged: dict[str, Finding] = {}
    emails: dict[str, list[str]] = defaultdict(list)
    for name, html in documents.items():
        for finding in judge(features_used(html, index), data, settings):
            emails[finding.slug].append(name)
            known = merged.get(finding.slug)
            if known is None:
                merged[finding.slug] = finding
            else:
                where = tuple(dict.fromkeys((*known.where, *finding.where)))[:5]
                merged[finding.slug] = Finding(known.slug, known.title, known.url, known.severity, known.clients, where, known.fallback)
    findings = [Finding(f.slug, f.title, f.url, f.severity, f.clients, f.where, f.fallback, tuple(emails[f.slug])) for f in merged.values()]
    return sorted(findings, key=lambda f: (f.severity != "error", f.slug))


def describe(findings: list[Finding], data: SupportData, email_count: int) -> list[str]:
    """Lines for a terminal: each finding with its clients, versions and caniemail's notes."""
    lines = []
    for finding in findings:
        label = "ERROR  " if finding.severity == "error" else "warning"
        used = _emails_text(finding.emails, email_count)
        lines.append(f"{label} {finding.slug} ({finding.title}) in {used}: {finding.where[0]}")
        for support in finding.clients:
            versions = f" {support.versions[0]}" if len(support.versions) == 1 else f" {support.versions[0]}..{support.versions[-1]}"
            notes = f": {' '.join(support.notes)}" if support.notes else ""
            lines.append(f"          {support.level:<11} {_client_name(support.client, data)}{versions}{notes}")
        if finding.fallback:
            lines.append(f"          fallback: {finding.fallback}")
        if finding.url:
            lines.append(f"          {finding.url}")
    return lines


def by_client(findings: list[Finding]) -> dict[str, dict[str, list[str]]]:
    """Per client, the slugs it lacks (unsupported, then partial), each marked * where a fallback is declared."""
    clients: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"unsupported": [], "partial": [], "unknown": []})
    for finding in findings:
        for support in finding.clients:
            clients[support.client][support.level].append(finding.slug + ("*" if finding.fallback else ""))
    return dict(clients)


def describe_clients(findings: list[Finding], data: SupportData, clients: Iterable[str]) -> list[str]:
    """One line per targeted client: what it does not support and what it supports in part."""
    summary = by_client(findings)
    lines = ["per client (* = fallback declared):"]
    for client in clients:
        levels = summary.get(client, {})
        parts = [f"{level} {', '.join(slugs)}" for level, slugs in levels.items() if slugs]
        lines.append(f"  {_client_name(client, data):<32} {'; '.join(parts) or 'nothing missing'}")
    return lines


def _emails_text(emails: tuple[str, ...], email_count: int) -> str:
    if len(emails) == email_count:
        return "every email"
    if len(emails) <= 2:
        return ", ".join(emails)
    return f"{len(emails)} of {email_count} emails ({emails[0]}, ...)"


def _client_name(client: str, data: SupportData) -> str:
    family, _, platform = client.partition(".")
    return f"{data.family_names.get(family, family)} {data.platform_names.get(platform, platform)}"


# --- the shipped content ------------------------------------------------------------------

SAMPLE_ITEMS = (
    {"product_id": "prod_0001", "name": "Trail Boot", "category": "shoes", "price": 84.99, "quantity": 1},
    {"product_id": "prod_0002", "name": "Oak Lamp", "category": "home", "price": 45.0, "quantity": 2},
    {"product_id": "prod_0003", "name": "Linen Shirt", "category": "shirts", "price": 39.5, "quantity": 1},
    {"product_id": "prod_0004", "name": "Wool Scarf", "category": "accessories", "price": 24.0, "quantity": 1},
)


def sample_tokens(engine: ContentEngine) -> dict[str, Any]:
    """Token values that fill every template branch: lists have items, strings are set."""
    tokens = engine.fallback_tokens()
    for name, spec in engine.settings.tokens.items():
        if spec.is_list:
            tokens[name] = [dict(item) for item in SAMPLE_ITEMS[: spec.limit]]
        elif spec.kind == "discount_code":
            tokens[name] = discount_code("sample", spec.prefix)
        elif not tokens[name]:
            tokens[name] = name.replace("_", " ")
    return tokens


def content_documents(engine: ContentEngine) -> dict[str, str]:
    """Every block rendered in the whole email (the other slots' fallbacks around it), with sample and fallback tokens."""
    settings = engine.settings
    fallback_blocks = {slot: spec.fallback for slot, spec in settings.slots.items()}
    token_sets = {"sample tokens": sample_tokens(engine), "fallback tokens": engine.fallback_tokens()}
    documents = {}
    for name, block in settings.blocks.items():
        blocks = {**fallback_blocks, block.slot: name}
        for label, tokens in token_sets.items():
            documents[f"{name} ({label})"] = engine.render_blocks(blocks.values(), tokens)
    return documents
