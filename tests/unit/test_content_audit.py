"""`lakecdp content audit`: features found in rendered HTML, judged against caniemail's pinned support data.

The first tests run on a few inline features; the rest on the pinned caniemail 2.0.2 data in the cache
(`make caniemail` fetches it; CI's `make test` does), where the expected clients are that version's figures.
"""

from __future__ import annotations

import copy
import hashlib
import io
import tarfile
from html.parser import HTMLParser

import pytest

from lakecdp.cli import main
from lakecdp.config import ConfigError, load_settings
from lakecdp.content import caniemail
from lakecdp.content.audit import audit_documents, build_index, client_support, content_documents, features_used, judge
from lakecdp.content.caniemail import SupportData, load_support_data
from lakecdp.content.engine import ContentEngine
from lakecdp.content.settings import AuditSettings, parse_content_settings

GMAIL = {"gmail.desktop-webmail", "gmail.ios", "gmail.android"}
YAHOO = {"yahoo.desktop-webmail", "yahoo.ios", "yahoo.android"}
APPLE = {"apple-mail.macos", "apple-mail.ios"}


def feature(slug, title, category, stats, notes=None):
    return {
        "slug": slug,
        "title": title,
        "category": category,
        "stats": stats,
        "notes": None,
        "notes_by_num": notes or {},
        "url": f"https://www.caniemail.com/features/{slug}/",
    }


def tiny_data(*features) -> SupportData:
    return SupportData("test", "2026-01-01", {f["slug"]: f for f in features}, {"outlook": "Outlook"}, {"windows": "Windows"})


OUTLOOK_ONLY = {"outlook": {"windows": {"2019": "n"}}}
TINY = tiny_data(
    feature("html-video", "<video> element", "html", OUTLOOK_ONLY),
    feature("html-h1-h6", "<h1> to <h6> elements", "html", OUTLOOK_ONLY),
    feature("html-align", "align attribute", "html", OUTLOOK_ONLY),
    feature("html-input-checkbox", '<input type="checkbox"> element', "html", OUTLOOK_ONLY),
    feature("css-display-flex", "display:flex", "css", OUTLOOK_ONLY),
    feature("css-position", "position", "css", OUTLOOK_ONLY),
    feature("css-padding", "padding", "css", OUTLOOK_ONLY),
    feature("css-font", "font shorthand", "css", OUTLOOK_ONLY),
    feature("css-unit-rem", "rem unit", "css", OUTLOOK_ONLY),
    feature("css-at-media", "@media", "css", OUTLOOK_ONLY),
    feature("css-at-media-prefers-color-scheme", "@media (prefers-color-scheme)", "css", OUTLOOK_ONLY),
    feature("css-pseudo-class-hover", ":hover", "css", OUTLOOK_ONLY),
    feature("css-selector-chaining", "Chaining selectors", "css", OUTLOOK_ONLY),
    feature("css-important", "!important keyword", "css", OUTLOOK_ONLY),
    feature("css-variables", "CSS Variables (Custom Properties)", "css", OUTLOOK_ONLY),
    feature("image-webp", "webP image format", "image", OUTLOOK_ONLY),
)


def test_features_are_found_from_the_titles_of_the_data():
    html = """<!DOCTYPE html><html><head><style>
    td.hero:hover { color: red !important; }
    @media (prefers-color-scheme: dark) { .x { padding-left: 1rem; } }
    </style></head><body>
    <h3 align="center" style="display: flex; position: absolute; font-family: Arial; --gap: 4px">Hi</h3>
    <video src="a.mp4"></video><img src="https://cdn.example.com/a.webp?v=2">
    <input type="text"><p>plain</p></body></html>"""
    used = features_used(html, build_index(TINY)).where
    assert set(used) == {
        "html-h1-h6",
        "html-align",
        "html-video",
        "css-display-flex",
        "css-position",
        "css-variables",
        "image-webp",
        "css-pseudo-class-hover",
        "css-selector-chaining",
        "css-important",
        "css-at-media",
        "css-at-media-prefers-color-scheme",
        "css-padding",
        "css-unit-rem",
    }
    # font-family is not the font shorthand; an <input type="text"> is not a checkbox
    assert "css-font" not in used and "html-input-checkbox" not in used
    assert used["css-padding"] == ["<style> @media (prefers-color-scheme: dark) padding-left"]


def test_support_is_the_newest_test_or_the_worst_of_all_versions():
    item = feature(
        "css-margin",
        "margin",
        "css",
        {"outlook": {"windows": {"2019": "a #2", "2007": "n #1", "2010": "y"}}},
        notes={"1": "Negative values are not supported.", "2": "auto is not supported."},
    )
    latest = client_support(item, "outlook.windows", "latest")
    worst = client_support(item, "outlook.windows", "all")
    assert (latest.level, latest.versions, latest.notes) == ("partial", ("2019",), ("auto is not supported.",))
    assert (worst.level, worst.versions, worst.notes) == ("unsupported", ("2007",), ("Negative values are not supported.",))
    assert client_support(item, "gmail.ios", "latest") is None  # not tested there: nothing to say


def test_unsupported_is_an_error_unless_a_fallback_is_declared_and_partial_a_warning():
    data = tiny_data(
        feature("css-position", "position", "css", {"outlook": {"windows": {"2019": "n"}}}),
        feature("css-padding", "padding", "css", {"outlook": {"windows": {"2019": "a #1"}}}, notes={"1": "Only on table cells."}),
        feature("css-max-width", "max-width", "css", {"outlook": {"windows": {"2019": "n"}}}),
        feature("css-margin", "margin", "css", {"outlook": {"windows": {"2019": "u"}}}),
    )
    html = '<table width="600" style="max-width:600px"><tr><td style="padding:4px;margin:0;position:relative">x</td></tr></table>'
    settings = AuditSettings(clients={"outlook.windows": "latest"}, fallbacks={"css-max-width": "width attribute"})
    findings = {f.slug: f for f in judge(features_used(html, build_index(data)), data, settings)}
    assert {slug: f.severity for slug, f in findings.items()} == {
        "css-position": "error",
        "css-max-width": "warning",
        "css-padding": "warning",
    }
    assert findings["css-padding"].clients[0].notes == ("Only on table cells.",)
    assert findings["css-max-width"].fallback == "width attribute"
    stricter = AuditSettings(clients={"outlook.windows": "latest"}, severity={"partial": "error", "unknown": "warning"})
    severities = {f.slug: f.severity for f in judge(features_used(html, build_index(data)), data, stricter)}
    assert severities == {"css-position": "error", "css-max-width": "error", "css-padding": "error", "css-margin": "warning"}


def test_a_client_or_fallback_the_data_does_not_have_is_a_config_error():
    with pytest.raises(ConfigError, match="content.audit.clients.outlook.windwos"):
        audit_documents({"x": "<p>x</p>"}, TINY, AuditSettings(clients={"outlook.windwos": "all"}))
    with pytest.raises(ConfigError, match="content.audit.fallbacks.css-flex"):
        audit_documents({"x": "<p>x</p>"}, TINY, AuditSettings(clients={"outlook.windows": "all"}, fallbacks={"css-flex": "none"}))


def test_the_cache_refuses_anything_but_the_pinned_files():
    fake = io.BytesIO()
    with tarfile.open(fileobj=fake, mode="w:gz") as archive:
        body = b'{"data": []}'
        info = tarfile.TarInfo(caniemail.DATA_MEMBER)
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))
    with pytest.raises(ConfigError, match="integrity"):
        caniemail.extract_data(fake.getvalue())
    with pytest.raises(ConfigError, match="sha256"):
        caniemail.parse_support_data(b'{"data": []}')
    assert hashlib.sha256(caniemail.cache_path().read_bytes()).hexdigest() == caniemail.DATA_SHA256


# --- on the pinned caniemail data -------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    return load_support_data()


@pytest.fixture(scope="module")
def raw_content():
    return load_settings(env={}).content


@pytest.fixture(scope="module")
def content(raw_content):
    return parse_content_settings(raw_content)


def test_shipped_templates_have_no_errors_in_any_targeted_client(data, content):
    engine = ContentEngine(content)
    documents = content_documents(engine)
    assert len(documents) == 2 * len(content.blocks)  # every block, with sample and with fallback tokens
    assert set(content.audit.clients) >= GMAIL | YAHOO | APPLE | {"outlook.windows", "outlook.outlook-com"}
    findings = audit_documents(documents, data, content.audit)
    assert [f.slug for f in findings if f.severity == "error"] == []
    assert {"css-at-media-prefers-color-scheme", "css-padding"} <= {f.slug for f in findings}  # warnings are still listed


def test_planted_unsupported_features_are_errors_for_the_clients_that_lack_them(data, raw_content):
    raw = copy.deepcopy(raw_content)
    raw["blocks"]["planted"] = {
        "kind": "generic_message",
        "slot": "offer",
        "template": '<div style="display:flex;position:absolute;top:0"><video src="https://cdn.example.com/a.mp4"></video>Hi</div>',
    }
    content = parse_content_settings(raw)
    findings = {f.slug: f for f in audit_documents(content_documents(ContentEngine(content)), data, content.audit)}

    def clients(slug, level):
        return {s.client for s in findings[slug].clients if s.level == level}

    assert {slug for slug, f in findings.items() if f.severity == "error"} == {
        "css-display-flex",
        "html-video",
        "css-position",
        "css-left-right-top-bottom",
    }
    assert findings["css-display-flex"].emails == ("planted (sample tokens)", "planted (fallback tokens)")
    assert clients("css-display-flex", "unsupported") == {"outlook.windows"}
    assert clients("css-display-flex", "partial") == {"gmail.ios", "gmail.android"}  # caniemail: not with non-Google accounts
    assert clients("html-video", "unsupported") == GMAIL | YAHOO | {"outlook.windows", "outlook.outlook-com"}
    assert clients("html-video", "partial") == {"apple-mail.ios"}  # apple-mail.macos plays it
    assert clients("css-position", "unsupported") == GMAIL | {"outlook.windows"}
    assert clients("css-position", "partial") == YAHOO | APPLE | {"outlook.outlook-com"}
    assert next(s for s in findings["css-position"].clients if s.client == "yahoo.ios").notes == (
        "Partial. Supports `relative` but not  `absolute`, `sticky` and `fixed`.",
    )


def test_audit_command_passes_on_the_shipped_content_and_fails_on_a_planted_file(tmp_path, capsys):
    assert main(["content", "audit"]) == 0
    out = capsys.readouterr().out
    assert "caniemail 2.0.2" in out and "ok  0 errors" in out
    planted = tmp_path / "planted.html"
    planted.write_text('<html><body><table><tr><td style="display:flex">x</td></tr></table></body></html>')
    assert main(["content", "audit", str(planted)]) == 1
    out = capsys.readouterr().out
    assert "ERROR   css-display-flex" in out
    per_client = {line.split("  ", 2)[1].strip(): line for line in out.splitlines() if line.startswith("  ") and not line.startswith("   ")}
    assert "unsupported css-display-flex" in per_client["Outlook Windows"]
    assert "css-display-flex" not in per_client["Apple Mail macOS"]


class _TextColours(HTMLParser):
    """Each text run with the nearest inline color and background-color above it (body and html excluded)."""

    VOID = {"br", "meta", "img", "hr", "input", "link"}

    def __init__(self):
        super().__init__()
        self.stack: list[tuple[str, str]] = []
        self.runs: list[tuple[str, str | None, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append((tag, dict(attrs).get("style") or ""))

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, text):
        if not text.strip() or not any(tag == "body" for tag, _ in self.stack) or self.stack[-1][0] in ("style", "title"):
            return

        def nearest(prop):
            for tag, style in reversed(self.stack):
                if tag in ("body", "html"):
                    return None
                for part in style.split(";"):
                    if part.split(":")[0].strip() == prop:
                        return part.split(":", 1)[1].strip()
            return None

        self.runs.append((text.strip(), nearest("color"), nearest("background-color")))


def test_every_text_has_explicit_colours_and_a_dark_mode(content):
    engine = ContentEngine(content)
    for name, html in content_documents(engine).items():
        head, body = html.split("</head>", 1)
        assert '<meta name="color-scheme" content="light dark">' in head
        assert '<meta name="supported-color-schemes" content="light dark">' in head
        assert head.count("<style") == 1 and "@media (prefers-color-scheme: dark)" in head and "<style" not in body
        assert head.startswith('<!DOCTYPE html><html lang="en" style="color-scheme: light dark;') and '<head><meta charset="utf-8">' in head
        scan = _TextColours()
        scan.feed(body)
        assert scan.runs, name
        unset = [run for run in scan.runs if run[1] is None or run[2] is None]
        assert unset == [], f"{name}: text without an explicit colour or background (forced inversion needs both)"


@pytest.mark.parametrize(
    "stylesheet, message", [(".a { color: red; } </style><script>", "CSS only"), (".a { color: red; } }", "stylesheet")]
)
def test_a_stylesheet_that_is_not_css_is_a_config_error(raw_content, stylesheet, message):
    raw = copy.deepcopy(raw_content)
    raw["stylesheet"] = stylesheet
    with pytest.raises(ConfigError, match=message):
        ContentEngine(parse_content_settings(raw))
