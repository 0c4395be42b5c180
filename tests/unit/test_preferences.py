"""The preference centre without a lake: link tokens, the page's HTML, the form, and the handlers in-process."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette nudges towards httpx2 for its TestClient; httpx is what is installed
    from starlette.testclient import TestClient

from lakecdp.clock import FrozenClock
from lakecdp.collector.app import CollectorConfig, create_app
from lakecdp.collector.landing import LandingWriter
from lakecdp.collector.links import EmailLink, b64url, sign_token, signed_token, unb64url
from lakecdp.config import ConfigError
from lakecdp.preferences import choices as forms, tokens
from lakecdp.preferences.app import PreferenceCentre, preference_routes
from lakecdp.preferences.page import CONTENT_SECURITY_POLICY, STYLE_HASH, PageView, render_page, render_refused
from lakecdp.preferences.settings import PreferencesSettings, load_preferences_settings
from lakecdp.preferences.tokens import PreferenceLinkError, new_link, preference_url, sign_link, verify_link
from lakecdp.privacy.purposes import PREFERENCE_CENTRE
from tests.pseudonyms import pid

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SECRET = b"preference-secret-for-tests-only"
CUSTOMER = pid("c001")
ALL = ("email_marketing", "personalization", "profiling")


def minted(*, now: datetime = NOW, valid_for: timedelta = timedelta(days=30), secret: bytes = SECRET) -> str:
    return sign_link(new_link(CUSTOMER, now=now, valid_for=valid_for, link_id="0123456789abcdef"), secret)


# -- tokens -----------------------------------------------------------------------------------


def test_a_minted_link_verifies_to_its_customer_link_id_and_expiry():
    link = verify_link(minted(), SECRET, now=NOW + timedelta(days=29))
    assert (link.customer_id, link.link_id) == (CUSTOMER, "0123456789abcdef")
    assert (link.issued_at, link.expires_at) == (NOW, NOW + timedelta(days=30))


def test_a_link_stops_working_the_second_it_expires():
    token = minted(valid_for=timedelta(hours=1))
    assert verify_link(token, SECRET, now=NOW + timedelta(minutes=59, seconds=59)).customer_id == CUSTOMER
    with pytest.raises(PreferenceLinkError, match="expired"):
        verify_link(token, SECRET, now=NOW + timedelta(hours=1))


def test_a_link_signed_with_another_secret_is_refused():
    with pytest.raises(PreferenceLinkError, match="does not verify"):
        verify_link(minted(secret=b"another-secret-of-the-same-size!"), SECRET, now=NOW)


def test_a_tampered_payload_is_refused_before_it_is_read():
    payload, signature = minted().split(".")
    fields = json.loads(unb64url(payload))
    forged = b64url(json.dumps({**fields, "c": pid("c002"), "x": fields["x"] + 10**8}, separators=(",", ":")).encode())
    with pytest.raises(PreferenceLinkError, match="does not verify"):
        verify_link(f"{forged}.{signature}", SECRET, now=NOW)


def test_an_email_open_or_click_token_is_not_a_preference_link_even_with_the_same_secret():
    open_token = sign_token(EmailLink("open", CUSTOMER, "camp", "mail"), SECRET)
    with pytest.raises(PreferenceLinkError):
        verify_link(open_token, SECRET, now=NOW)


def test_a_token_of_another_purpose_under_this_domain_is_refused():
    forged = signed_token({"p": "unsubscribe", "c": CUSTOMER, "i": "0123456789abcdef", "t": 1, "x": 2**40}, SECRET, tokens._DOMAIN)
    with pytest.raises(PreferenceLinkError, match="not a preference-centre token"):
        verify_link(forged, SECRET, now=NOW)


def test_a_link_issued_in_the_future_is_refused():
    with pytest.raises(PreferenceLinkError, match="future"):
        verify_link(minted(now=NOW + timedelta(hours=1)), SECRET, now=NOW)


@pytest.mark.parametrize("token", ["", "no-dot", "a.b.c", "é.x", "x" * 5000, "e30.!!!"])
def test_malformed_tokens_are_refused(token):
    with pytest.raises(PreferenceLinkError):
        verify_link(token, SECRET, now=NOW)


def test_links_name_customers_by_pseudonym_only():
    with pytest.raises(PreferenceLinkError, match="pseudonym"):
        sign_link(new_link("c001", now=NOW, valid_for=timedelta(days=1)), SECRET)


def test_a_periodic_link_is_the_same_within_half_its_validity_and_always_has_half_of_it_left():
    from lakecdp.preferences.tokens import periodic_link

    period = timedelta(days=15)
    start = datetime.fromtimestamp(int(NOW.timestamp()) // int(period.total_seconds()) * int(period.total_seconds()), UTC)
    first = periodic_link(CUSTOMER, now=start, valid_for=2 * period, secret=SECRET)
    last = periodic_link(CUSTOMER, now=start + period - timedelta(seconds=1), valid_for=2 * period, secret=SECRET)
    following = periodic_link(CUSTOMER, now=start + period, valid_for=2 * period, secret=SECRET)
    assert sign_link(first, SECRET) == sign_link(last, SECRET) and first.issued_at == start
    assert following.link_id != first.link_id and following.issued_at == start + period
    assert first.expires_at - (start + period) == period  # held until the next period's export: half its life left
    other = periodic_link(pid("c002"), now=start, valid_for=2 * period, secret=SECRET)
    assert other.link_id != first.link_id


def test_preference_url_puts_the_token_under_v1_preferences():
    assert preference_url("https://t.example.com/", "abc.def") == "https://t.example.com/v1/preferences/abc.def"


# -- settings ---------------------------------------------------------------------------------


def test_settings_errors_name_the_file_key_and_fix():
    with pytest.raises(ConfigError, match=r"conf/base/preferences.yaml.*preferences.valid_for.*Fix"):
        load_preferences_settings({"valid_for": "1s"})
    with pytest.raises(ConfigError, match=r"preferences.purposes.0"):
        load_preferences_settings({"purposes": ["marketing"]})
    with pytest.raises(ConfigError, match=r"preferences.colour.*remove 'colour'"):
        load_preferences_settings({"colour": "blue"})
    assert load_preferences_settings({"valid_for": "7d"}).valid_for == timedelta(days=7)


def test_no_collector_source_may_pose_as_the_preference_centre():
    from lakecdp.collector.settings import load_collector_settings

    with pytest.raises(ConfigError, match=PREFERENCE_CENTRE):
        load_collector_settings({"sources": {PREFERENCE_CENTRE: {"write_key_env": "X_KEY"}}})


# -- the page ---------------------------------------------------------------------------------


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.label_for: set[str | None] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "label":
            self.label_for.add(dict(attrs).get("for"))


def page(**overrides) -> str:
    choices = {("email_marketing", "email"): True, ("personalization", "email"): False, ("profiling", "email"): True}
    view = PageView("/v1/preferences/tok", ALL, ("email",), choices, "f00d", NOW + timedelta(days=30))
    return render_page(PageView(**{**view.__dict__, **overrides}))


def test_every_visible_input_has_a_label_and_every_purpose_a_fieldset_with_legend():
    parsed = _Elements()
    parsed.feed(page())
    inputs = [attrs for tag, attrs in parsed.tags if tag == "input" and attrs.get("type") != "hidden"]
    assert len(inputs) == len(ALL) + 1  # a box per purpose and channel, and the erasure confirmation
    assert all(attrs["id"] in parsed.label_for for attrs in inputs)
    assert [tag for tag, _ in parsed.tags].count("legend") == len(ALL) + 1
    checked = {attrs["value"] for attrs in inputs if "checked" in attrs}
    assert checked == {"email_marketing:email", "profiling:email"}
    buttons = {attrs["value"] for tag, attrs in parsed.tags if tag == "button"}
    assert buttons == {"save", "withdraw_all", "access", "erase"}


def test_the_page_has_no_script_and_loads_nothing_from_elsewhere():
    html = page(notice="<script>alert(1)</script>")
    parsed = _Elements()
    parsed.feed(html)
    assert not any(tag in ("script", "iframe", "img", "link") for tag, _ in parsed.tags)
    assert not any(name.startswith("on") or (value or "").startswith(("http", "//")) for _, a in parsed.tags for name, value in a.items())
    assert "&lt;script&gt;" in html and "<script>" not in html


def test_the_csp_allows_exactly_the_inline_style_the_page_has():
    import base64
    import hashlib
    import re

    style = re.search(r"<style>(.*?)</style>", page(), re.S).group(1)
    assert base64.b64encode(hashlib.sha256(style.encode()).digest()).decode() == STYLE_HASH
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY and "script-src" not in CONTENT_SECURITY_POLICY


def test_the_refusal_page_says_nothing_about_the_link():
    html = render_refused("This link does not work", "Use a recent email.")
    assert "This link does not work" in html and "form" not in html


# -- the form ---------------------------------------------------------------------------------


def test_the_form_is_read_and_withdraw_all_unticks_everything():
    body = b"form_id=ab12&consent=profiling%3Aemail&consent=email_marketing%3Aemail&action=save"
    submission = forms.parse_form(body, ALL, ("email",))
    assert submission.ticked == {("profiling", "email"), ("email_marketing", "email")}
    wanted = forms.wanted_choices(submission, ALL, ("email",))
    assert wanted == {("email_marketing", "email"): True, ("personalization", "email"): False, ("profiling", "email"): True}
    withdraw = forms.parse_form(body.replace(b"action=save", b"action=withdraw_all"), ALL, ("email",))
    assert not any(forms.wanted_choices(withdraw, ALL, ("email",)).values())


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"form_id=ab12&consent=sms_marketing%3Asms", "does not offer"),
        (b"form_id=ab12&action=delete_everything", "unknown action"),
        (b"consent=profiling%3Aemail", "incomplete"),
        (b"form_id=" + b"a" * 9000, "too large"),
        (b"form_id=%ff%fe", "incomplete"),
    ],
)
def test_a_form_that_is_not_the_pages_is_refused(body, problem):
    with pytest.raises(forms.FormError, match=problem):
        forms.parse_form(body, ALL, ("email",))


def test_only_changes_become_events_with_ids_fixed_by_link_form_and_change():
    link = verify_link(minted(), SECRET, now=NOW)
    current = {("email_marketing", "email"): True, ("personalization", "email"): True, ("profiling", "email"): True}
    wanted = {**current, ("email_marketing", "email"): False, ("profiling", "email"): False}
    messages = forms.change_messages(link, "f1", current, wanted, forms.ConsentEventNames(), NOW)
    assert [(m["event"], m["properties"]["purpose"], m["properties"]["status"]) for m in messages] == [
        ("Unsubscribed", "email_marketing", "withdrawn"),
        ("Consent Updated", "profiling", "withdrawn"),
    ]
    assert all(m["userId"] == CUSTOMER and m["properties"]["link_id"] == link.link_id for m in messages)
    again = forms.change_messages(link, "f1", current, wanted, forms.ConsentEventNames(), NOW + timedelta(seconds=3))
    assert [m["messageId"] for m in again] == [m["messageId"] for m in messages]
    other_form = forms.change_messages(link, "f2", current, wanted, forms.ConsentEventNames(), NOW)
    assert not {m["messageId"] for m in other_form} & {m["messageId"] for m in messages}


# -- the handlers -----------------------------------------------------------------------------


class MemoryStore:
    """The lake's answers for one test: current choices, and the erasure queue."""

    def __init__(self, granted: dict[str, bool]) -> None:
        self.granted = granted
        self.erasures: list[tuple[str, str, datetime]] = []

    def current(self, customer_id, purposes, channels):
        if customer_id != CUSTOMER:
            return None
        return {(p, c): self.granted[p] for p in purposes for c in channels}

    def queue_erasure(self, customer_id, request_id, now):
        self.erasures.append((customer_id, request_id, now))
        return True


@pytest.fixture
def centre():
    return PreferenceCentre(
        PreferencesSettings(), SECRET, MemoryStore({"email_marketing": True, "personalization": True, "profiling": False})
    )


@pytest.fixture
def clock():
    return FrozenClock(NOW + timedelta(days=1))


def serve(centre, landing: Path, clock):
    writer = LandingWriter(landing, roll_bytes=1 << 20, roll_seconds=3600, clock=clock)
    app = create_app(CollectorConfig(write_keys={}), writer, clock=clock)
    app.router.routes.extend(preference_routes(centre, writer, clock))
    return TestClient(app)


def landed(landing: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(landing.glob("part-*.jsonl")) for line in path.read_text().splitlines()]


def form_id_of(html: str) -> str:
    return html.split('name="form_id" value="', 1)[1].split('"', 1)[0]


def test_the_page_shows_the_lakes_choices_with_a_csp_and_no_referrer(centre, tmp_path, clock):
    with serve(centre, tmp_path, clock) as client:
        answer = client.get(f"/v1/preferences/{minted()}")
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert answer.headers["referrer-policy"] == "no-referrer" and answer.headers["cache-control"] == "no-store"
    assert 'value="email_marketing:email" aria-describedby="d-email_marketing" checked' in answer.text
    assert 'value="profiling:email" aria-describedby="d-profiling">' in answer.text


def test_forged_and_expired_links_get_403_revealing_nothing(centre, tmp_path, clock):
    payload, _ = minted().split(".")
    with serve(centre, tmp_path, clock) as client:
        forged = client.get(f"/v1/preferences/{payload}.{b64url(b'x' * 32)}")
        expired = client.get(f"/v1/preferences/{minted(now=NOW - timedelta(days=30))}")
        posted = client.post(f"/v1/preferences/{payload}.AAAA", data={"form_id": "ab", "action": "withdraw_all"})
    for answer in (forged, expired, posted):
        assert answer.status_code == 403 and "This link does not work" in answer.text
        assert CUSTOMER not in answer.text and "form" not in answer.text
    assert landed(tmp_path) == []
    assert centre.stats["bad_links"] == 3


def test_a_link_of_a_customer_the_lake_does_not_hold_is_refused_like_a_forged_one(centre, tmp_path, clock):
    erased = sign_link(new_link(pid("c_erased"), now=NOW, valid_for=timedelta(days=30)), SECRET)
    with serve(centre, tmp_path, clock) as client:
        shown = client.get(f"/v1/preferences/{erased}")
        posted = client.post(f"/v1/preferences/{erased}", data={"form_id": "f1", "action": "withdraw_all"})
    assert shown.status_code == posted.status_code == 403 and "This link does not work" in posted.text
    assert landed(tmp_path) == [] and centre.stats["unknown_customer"] == 2


def test_without_a_secret_the_page_is_unavailable(tmp_path, clock):
    centre = PreferenceCentre(PreferencesSettings(), None, MemoryStore({p: True for p in ALL}))
    with serve(centre, tmp_path, clock) as client:
        assert client.get(f"/v1/preferences/{minted()}").status_code == 503


def test_unticking_email_marketing_lands_an_unsubscribe_from_the_preference_centre_once(centre, tmp_path, clock):
    url = f"/v1/preferences/{minted()}"
    with serve(centre, tmp_path, clock) as client:
        shown = client.get(url)
        form = {"form_id": form_id_of(shown.text), "consent": ["personalization:email"], "action": "save"}
        saved = client.post(url, data=form)
        resent = client.post(url, data=form)  # the back button and submit again
    assert saved.status_code == 200 and "Your choices are saved." in saved.text
    assert 'value="email_marketing:email" aria-describedby="d-email_marketing">' in saved.text
    assert form_id_of(saved.text) != form["form_id"]
    lines = landed(tmp_path)
    assert [(e["event"], e["userId"], e["context"]["source"]) for e in lines] == [("Unsubscribed", CUSTOMER, PREFERENCE_CENTRE)] * 2
    assert lines[0]["messageId"] == lines[1]["messageId"], "a resubmitted form repeats its message ids: the stream keeps one"
    assert lines[0]["properties"] == {
        "purpose": "email_marketing",
        "channel": "email",
        "status": "withdrawn",
        "link_id": "0123456789abcdef",
    }
    assert lines[0]["timestamp"].startswith("2026-11-02T12:00:00")
    assert resent.status_code == 200


def test_withdraw_all_withdraws_every_granted_purpose(centre, tmp_path, clock):
    url = f"/v1/preferences/{minted()}"
    with serve(centre, tmp_path, clock) as client:
        answer = client.post(url, data={"form_id": "f1", "consent": ["email_marketing:email"], "action": "withdraw_all"})
    assert answer.status_code == 200
    events = {(e["event"], e["properties"]["purpose"], e["properties"]["status"]) for e in landed(tmp_path)}
    assert events == {("Unsubscribed", "email_marketing", "withdrawn"), ("Consent Updated", "personalization", "withdrawn")}


def test_erasure_needs_the_confirmation_then_is_queued_once_per_form(centre, tmp_path, clock):
    url = f"/v1/preferences/{minted()}"
    with serve(centre, tmp_path, clock) as client:
        unconfirmed = client.post(url, data={"form_id": "f1", "action": "erase"})
        confirmed = client.post(url, data={"form_id": "f1", "action": "erase", "confirm_erase": "yes"})
    assert unconfirmed.status_code == 400 and 'role="alert"' in unconfirmed.text and centre.store.erasures[:1] == centre.store.erasures
    [(customer, request_id, at)] = centre.store.erasures
    assert (customer, at) == (CUSTOMER, clock.now()) and request_id in confirmed.text
    assert landed(tmp_path) == []


def test_a_data_copy_request_lands_as_an_event_the_privacy_officer_lists(centre, tmp_path, clock):
    with serve(centre, tmp_path, clock) as client:
        answer = client.post(f"/v1/preferences/{minted()}", data={"form_id": "f1", "action": "access"})
    [event] = landed(tmp_path)
    assert (event["event"], event["userId"]) == ("Data Access Requested", CUSTOMER)
    assert event["properties"]["request_id"] == event["messageId"] and event["messageId"] in answer.text


def test_a_post_that_is_not_the_form_gets_400(centre, tmp_path, clock):
    with serve(centre, tmp_path, clock) as client:
        answer = client.post(f"/v1/preferences/{minted()}", json={"action": "withdraw_all"})
    assert answer.status_code == 400 and landed(tmp_path) == []


# -- the command ------------------------------------------------------------------------------


def test_the_link_command_mints_a_link_for_the_customers_pseudonym(monkeypatch, capsys):
    from lakecdp.cli import main

    monkeypatch.setenv("LAKECDP_LINK_SECRET", SECRET.decode())
    assert main(["preferences", "link", "c001", "--valid-for", "2h", "--base-url", "https://t.example.com"]) == 0
    url = capsys.readouterr().out.strip()
    base, token = url.rsplit("/v1/preferences/", 1)
    issued = datetime.fromtimestamp(json.loads(unb64url(token.split(".")[0]))["t"], UTC)  # the command read the wall clock
    link = verify_link(token, SECRET, now=issued)
    assert base == "https://t.example.com" and link.customer_id == CUSTOMER and link.expires_at - link.issued_at == timedelta(hours=2)


def test_the_link_command_without_a_secret_names_the_variable(monkeypatch, capsys):
    from lakecdp.cli import main

    monkeypatch.delenv("LAKECDP_LINK_SECRET", raising=False)
    assert main(["preferences", "link", "c001"]) == 2
    assert "LAKECDP_LINK_SECRET" in capsys.readouterr().err
