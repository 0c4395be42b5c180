"""The preference centre's HTML, rendered from plain values (no I/O).

Plain, accessible HTML: one fieldset per purpose (its legend names it) with a labelled checkbox
per channel, native buttons only (Enter saves, Tab reaches everything), no script, no external
resource. The one inline style is allowed by its hash in the Content-Security-Policy, nothing else.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape

PURPOSE_TEXT = {
    "email_marketing": ("Marketing emails", "Offers, news and reminders sent to your email address."),
    "personalization": ("Personalised content", "Emails whose content is chosen from what you browsed and bought."),
    "profiling": ("Profiling", "Predicting your interests from your activity, for example how likely you are to buy again."),
}
CHANNEL_TEXT = {"email": "By email"}
SAVE, WITHDRAW_ALL, ACCESS, ERASE = "save", "withdraw_all", "access", "erase"

_STYLE = (
    "body{font-family:system-ui,sans-serif;line-height:1.5;margin:0;padding:1rem;color:#111;background:#fff}"
    "main{max-width:40rem;margin:auto}fieldset{margin:0 0 1rem;border:1px solid #666;padding:.5rem 1rem}"
    "legend{font-weight:bold}button{font:inherit;padding:.4rem .9rem;margin:.25rem .5rem .25rem 0}"
    ":focus{outline:3px solid #1a5fb4;outline-offset:2px}[role=alert]{color:#a00;font-weight:bold}"
)
STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The token is in the URL: it must not leak through Referer, caches or frames.
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class PageView:
    action: str  # the form's target path (it carries the signed token)
    purposes: Sequence[str]
    channels: Sequence[str]
    choices: Mapping[tuple[str, str], bool]  # (purpose, channel) -> ticked
    form_id: str
    expires_at: datetime
    notice: str | None = None
    error: str | None = None
    notes: Sequence[str] = field(default_factory=tuple)


def render_page(view: PageView) -> str:
    """The whole page: the choices form, the data-request form, and any notice or error."""
    action = escape(view.action, quote=True)
    hidden = f'<input type="hidden" name="form_id" value="{escape(view.form_id, quote=True)}">'
    fieldsets = "\n".join(_purpose_fieldset(purpose, view.channels, view.choices) for purpose in view.purposes)
    messages = ""
    if view.error:
        messages += f'<p role="alert">{escape(view.error)}</p>\n'
    if view.notice:
        messages += f'<p role="status">{escape(view.notice)}</p>\n'
    notes = "".join(f"<p>{escape(note)}</p>\n" for note in view.notes)
    body = f"""<h1>Your privacy choices</h1>
{messages}<p>Choose what we may do with your data. A change applies within a minute, to every email we send.</p>
<form method="post" action="{action}">
{hidden}
{fieldsets}
<button type="submit" name="action" value="{SAVE}">Save my choices</button>
<button type="submit" name="action" value="{WITHDRAW_ALL}">Withdraw all consent</button>
</form>
<h2>Your data</h2>
<form method="post" action="{action}">
{hidden}
<fieldset>
<legend>Request a copy or erasure</legend>
<p><button type="submit" name="action" value="{ACCESS}">Send me a copy of my data</button></p>
<p><input type="checkbox" id="confirm-erase" name="confirm_erase" value="yes">
<label for="confirm-erase">I understand that erasure deletes my data and cannot be undone</label></p>
<p><button type="submit" name="action" value="{ERASE}">Erase my data</button></p>
</fieldset>
</form>
{notes}<p>This link is personal: please do not forward the email. It works until {view.expires_at:%Y-%m-%d %H:%M} UTC.</p>"""
    return _document("Your privacy choices", body)


def render_refused(title: str, message: str) -> str:
    """A page that says only that the link does not work (never why: that would help a forger)."""
    return _document(title, f"<h1>{escape(title)}</h1>\n<p>{escape(message)}</p>")


def _purpose_fieldset(purpose: str, channels: Sequence[str], choices: Mapping[tuple[str, str], bool]) -> str:
    name, description = PURPOSE_TEXT[purpose]
    described = f"d-{purpose}"
    boxes = []
    for channel in channels:
        box_id = f"c-{purpose}-{channel}"
        checked = " checked" if choices.get((purpose, channel)) else ""
        boxes.append(
            f'<p><input type="checkbox" id="{box_id}" name="consent" value="{purpose}:{channel}" aria-describedby="{described}"{checked}>\n'
            f'<label for="{box_id}">{escape(name)}: {escape(CHANNEL_TEXT[channel])}</label></p>'
        )
    return (
        f'<fieldset>\n<legend>{escape(name)}</legend>\n<p id="{described}">{escape(description)}</p>\n' + "\n".join(boxes) + "\n</fieldset>"
    )


def _document(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""
