"""The preference centre's HTTP handlers, mounted on the collector app (so `collector.tls` gives it HTTPS and HSTS).

GET /v1/preferences/{token} shows the page; POST (the page's forms) lands the changes as events
through the collector's landing writer, or queues a data-copy or erasure request. A forged, tampered
or expired token gets 403 and a page that says only that the link does not work.
Nothing here logs a token, a customer id or an address: reasons and counts only.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from lakecdp.clock import Clock
from lakecdp.collector.landing import LandingUnavailable, LandingWriter
from lakecdp.collector.messages import Envelope, landing_lines
from lakecdp.collector.settings import CollectorSettings
from lakecdp.config import Settings
from lakecdp.preferences import choices as forms
from lakecdp.preferences.page import ACCESS, ERASE, PAGE_HEADERS, PageView, render_page, render_refused
from lakecdp.preferences.settings import PreferencesSettings
from lakecdp.preferences.tokens import PreferenceLink, PreferenceLinkError, verify_link
from lakecdp.privacy.purposes import PREFERENCE_CENTRE
from lakecdp.privacy.roles import Access, Credential, require_declared

log = logging.getLogger(__name__)

NOT_VALID = ("This link does not work", "It may have expired. Please use the link in the most recent email we sent you.")
UNAVAILABLE = ("Please try again in a minute", "Your choices could not be saved just now. Nothing was changed.")


class ChoicesStore(Protocol):
    def current(self, customer_id: str, purposes, channels) -> dict[forms.Choice, bool] | None: ...

    def queue_erasure(self, customer_id: str, request_id: str, now) -> bool: ...


@dataclass
class PreferenceCentre:
    settings: PreferencesSettings
    secret: bytes | None  # None: links cannot be verified, the page answers 503
    store: ChoicesStore
    names: forms.ConsentEventNames = field(default_factory=forms.ConsentEventNames)
    stats: Counter = field(default_factory=Counter)


# The person holds no role token: the link's signature is the credential (lakecdp.privacy.roles).
ROUTE_ACCESS: dict[str, Access] = {"/v1/preferences/{token}": Credential.SIGNED_LINK}


def preference_routes(centre: PreferenceCentre, writer: LandingWriter, clock: Clock) -> list[Route]:
    """The page's routes, to add to the collector app that owns `writer`."""
    handlers = _Handlers(centre, writer, clock)
    routes = [Route("/v1/preferences/{token}", handlers.page, methods=["GET", "POST"])]
    require_declared(routes, ROUTE_ACCESS)
    return routes


class _Handlers:
    def __init__(self, centre: PreferenceCentre, writer: LandingWriter, clock: Clock) -> None:
        self.centre, self.writer, self.clock = centre, writer, clock

    async def page(self, request: Request) -> Response:
        link = self._verified(request.path_params["token"])
        if link is None:
            status = 403 if self.centre.secret is not None else 503
            return _html(render_refused(*NOT_VALID), status)
        settings = self.centre.settings
        current = await asyncio.to_thread(self.centre.store.current, link.customer_id, settings.purposes, settings.channels)
        if current is None:  # an erased customer's old link: the same answer as a forged one
            self.centre.stats["unknown_customer"] += 1
            return _html(render_refused(*NOT_VALID), 403)
        view = PageView(request.url.path, settings.purposes, settings.channels, current, secrets.token_hex(8), link.expires_at)
        if request.method == "GET":
            self.centre.stats["shown"] += 1
            return _html(render_page(view))
        try:
            submission = forms.parse_form(await _body(request), settings.purposes, settings.channels)
            # The answer page carries a fresh form id (view's): only a resubmit of this very form repeats message ids.
            if submission.action == ACCESS:
                return await self._access(link, view, submission)
            if submission.action == ERASE:
                return await self._erase(link, view, submission)
            return await self._save(link, view, submission)
        except forms.FormError as exc:
            self.centre.stats["bad_form"] += 1
            return _html(render_page(replace(view, error=str(exc))), 400)
        except LandingUnavailable:
            self.centre.stats["unavailable"] += 1
            log.error("a preference-centre submission could not be stored: landing writer unavailable")
            return _html(render_refused(*UNAVAILABLE), 503, {"Retry-After": "60"})

    async def _save(self, link: PreferenceLink, view: PageView, submission: forms.Submission) -> Response:
        settings = self.centre.settings
        wanted = forms.wanted_choices(submission, settings.purposes, settings.channels)
        messages = forms.change_messages(link, submission.form_id, view.choices, wanted, self.centre.names, self.clock.now())
        await self._land(messages)
        self.centre.stats["changes"] += len(messages)
        notice = "Your choices are saved." if messages else "Nothing changed: these were already your choices."
        return _html(render_page(replace(view, choices=wanted, notice=notice)))

    async def _access(self, link: PreferenceLink, view: PageView, submission: forms.Submission) -> Response:
        request_id, message = forms.access_request_message(link, submission.form_id, self.clock.now())
        await self._land([message])
        self.centre.stats["access_requests"] += 1
        notice = f"We received your request for a copy of your data (reference {request_id}). We will send it within one month."
        return _html(render_page(replace(view, notice=notice)))

    async def _erase(self, link: PreferenceLink, view: PageView, submission: forms.Submission) -> Response:
        if not submission.confirm_erase:
            raise forms.FormError("To erase your data, first tick the box that confirms you understand it cannot be undone.")
        request_id = forms.erasure_request_id(link, submission.form_id)
        await asyncio.to_thread(self.centre.store.queue_erasure, link.customer_id, request_id, self.clock.now())
        self.centre.stats["erasure_requests"] += 1
        notice = f"We received your request to erase your data (reference {request_id}). We will confirm within one month."
        return _html(render_page(replace(view, notice=notice)))

    async def _land(self, messages: list[dict]) -> None:
        if not messages:
            return
        landed = landing_lines(Envelope(messages, {}, is_batch=True), source=PREFERENCE_CENTRE, received_at=self.clock.now())
        if landed.refused:  # the messages are built here: a refusal is a bug, never the visitor's fault
            raise RuntimeError(f"the preference centre built invalid events: {landed.refused}")
        await self.writer.write(landed.lines)

    def _verified(self, token: str) -> PreferenceLink | None:
        if self.centre.secret is None:
            return None
        try:
            return verify_link(token, self.centre.secret, now=self.clock.now())
        except PreferenceLinkError as exc:
            self.centre.stats["bad_links"] += 1
            log.info("refused a preference link: %s", exc)
            return None


async def _body(request: Request) -> bytes:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise forms.FormError("send the page's form")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > forms.MAX_FORM_BYTES:
                raise forms.FormError("the form is too large")
    except ClientDisconnect:
        raise forms.FormError("the form was not received whole") from None
    return bytes(body)


def _html(text: str, status: int = 200, extra: Mapping[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers={**PAGE_HEADERS, **(extra or {})})


def open_preference_centre(settings: Settings, collector: CollectorSettings, env: Mapping[str, str]) -> PreferenceCentre | None:
    """The centre for these settings (None when preferences.enabled is false); its secret comes from `env`."""
    from lakecdp.preferences.settings import load_preferences_settings, resolve_secret
    from lakecdp.preferences.state import LakeChoices

    preferences = load_preferences_settings(settings.preferences)
    if not preferences.enabled:
        return None
    names = consent_event_names(settings)
    store = LakeChoices(settings.lake.root, settings.lake.storage_options)
    return PreferenceCentre(preferences, resolve_secret(preferences, collector, env), store, names)


def consent_event_names(settings: Settings) -> forms.ConsentEventNames:
    """The events a change becomes: the first opt-in/opt-out event of esp.consent, privacy.consent.event."""
    defaults = forms.ConsentEventNames()
    email = dict((settings.esp or {}).get("consent") or {})
    consent = dict((settings.privacy or {}).get("consent") or {})
    return forms.ConsentEventNames(
        opt_in=(email.get("opt_in_events") or [defaults.opt_in])[0],
        opt_out=(email.get("opt_out_events") or [defaults.opt_out])[0],
        consent_updated=str(consent.get("event", defaults.consent_updated)),
    )
