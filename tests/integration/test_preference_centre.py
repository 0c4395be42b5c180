"""The preference centre end to end: a minted link opened in headless Chromium on the real collector,
email marketing unticked by keyboard, the stream records the ledger fact, and the next export skips
the person while other consenting customers stay exported. Plus HTTPS with HSTS from collector.tls."""

from __future__ import annotations

import hashlib
import json
import warnings
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pyspark.sql import functions as F

from lakecdp.cli import main
from lakecdp.clock import FrozenClock
from lakecdp.collector.server import CollectorThread, build_app
from lakecdp.config import load_settings
from lakecdp.events.ingest import ingest_lines
from lakecdp.export.adapters import Runtime
from lakecdp.export.batches import REMOVE
from lakecdp.export.runner import ExportRunner
from lakecdp.export.settings import load_esp_settings
from lakecdp.lake import open_lake
from lakecdp.preferences.tokens import new_link, preference_url, sign_link
from lakecdp.privacy.access import access_bundle, access_requests
from lakecdp.privacy.email_consent import UNSUBSCRIBED
from lakecdp.privacy.erasure import process_erasures, request_erasure
from lakecdp.sandbox import WebhookServer
from lakecdp.sandbox.scenario import AS_OF, SECRETS, SEGMENTS, esp_section, population, set_members, write_lake
from lakecdp.stream import run_stream
from tests.browser import PAGE_LOAD_TIMEOUT_S, chromium, missing_browser
from tests.certs import self_signed
from tests.pseudonyms import pid

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette nudges towards httpx2 for its TestClient; httpx is what is installed
    from starlette.testclient import TestClient

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LINK_SECRET = "preference-link-secret-for-tests-0123"
SEGMENT = SEGMENTS[1]
NOW = AS_OF + timedelta(days=1)
LEAVER = "c000"  # contactable until they untick email marketing
STAYERS = {"c003", "c006", "c007"}  # the other contactable members of population(8)


def settings_for(root, **collector):
    overrides = {"lake": {"root": str(root / "lake")}, "landing": {"root": str(root / "landing")}, "collector": collector}
    return load_settings(env={}, overrides=overrides)


def mint(customer: str, *, now=NOW, valid_for=timedelta(days=30)) -> str:
    return sign_link(new_link(pid(customer), now=now, valid_for=valid_for, link_id="feedc0de12345678"), LINK_SECRET.encode())


def untick_email_marketing_by_keyboard(url: str) -> dict:
    """Open the page, untick email marketing with Space, Tab to Save and press Enter; what the browser saw."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium() as driver:
        driver.get(url)
        box = driver.find_element(By.ID, "c-email_marketing-email")
        label = box.accessible_name  # what a screen reader announces: the <label for> text
        before = box.is_selected()
        box.send_keys(Keys.SPACE)  # the Space key toggles a focused checkbox
        focused = []
        for _ in range(6):  # the other purposes' boxes, then the Save button
            driver.switch_to.active_element.send_keys(Keys.TAB)
            focused.append(driver.switch_to.active_element.accessible_name)
            if focused[-1] == "Save my choices":
                break
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        # Enter submits; the answer is a new page, which the driver may not have loaded yet.
        status = WebDriverWait(driver, PAGE_LOAD_TIMEOUT_S).until(lambda d: d.find_element(By.CSS_SELECTOR, "[role=status]")).text
        after = driver.find_element(By.ID, "c-email_marketing-email").is_selected()
        errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        return {"label": label, "before": before, "after": after, "focused": focused, "status": status, "console_errors": errors}


def test_unticking_email_marketing_in_chromium_reaches_the_ledger_and_the_next_export(spark, tmp_path):
    assert missing_browser() is None, missing_browser()
    settings = settings_for(tmp_path)
    lake = open_lake(spark, settings.lake, root=settings.lake.root)
    customers, pop = population(8)
    members = {SEGMENT: [c.customer_id for c in customers]}
    write_lake(spark, lake, customers, members, pop)
    with WebhookServer(secret=SECRETS["LAKECDP_TEST_WEBHOOK_SECRET"]) as webhook:
        esp = load_esp_settings(esp_section({"webhook": webhook.url}, segments=[SEGMENT]), segment_names=SEGMENTS)
        runner = ExportRunner(lake, esp, Runtime(env=SECRETS))
        runner.run()
        assert {c for c in pop.contactable if webhook.holds(c)} == {LEAVER, *STAYERS}

        clock = FrozenClock(NOW)
        app, collector = build_app(settings, env={"LAKECDP_LINK_SECRET": LINK_SECRET}, clock=clock)
        with CollectorThread(app) as server:
            seen = untick_email_marketing_by_keyboard(preference_url(server.url, mint(LEAVER)))
            forged = httpx.get(preference_url(server.url, mint(LEAVER)[:-4] + "AAAA"))
        assert seen == {
            "label": "Marketing emails: By email",
            "before": True,
            "after": False,
            "focused": ["Personalised content: By email", "Profiling: By email", "Save my choices"],
            "status": "Your choices are saved.",
            "console_errors": [],
        }
        assert forged.status_code == 403 and pid(LEAVER) not in forged.text and "feedc0de" not in forged.text

        run_stream(spark, lake, settings, source=f"{settings.landing.root}/events", checkpoint=str(tmp_path / "checkpoint"), clock=clock)
        [fact] = [r.asDict() for r in lake.read("consent_ledger").filter(F.col("customer_id") == pid(LEAVER)).collect()]
        assert (fact["purpose"], fact["channel"], fact["status"], fact["source"]) == (
            "email_marketing",
            "email",
            "withdrawn",
            "preference_centre",
        )
        assert fact["proof"].startswith("preference link feedc0de12345678 submitted 2026-11-02T00:00:00Z; message:pref-")
        assert "@" not in fact["proof"]

        # The stream re-derives membership from the segment's rules for the customers it saw (the planted one is
        # not rule-made); plant it again so that only consent can tell the two exports apart.
        set_members(spark, lake, members)
        [plan] = runner.plan()
        assert [(c["customer_id"], c["action"]) for c in plan.changes()] == [(pid(LEAVER), REMOVE)]
        assert plan.skipped[(SEGMENT, UNSUBSCRIBED)] == len(pop.unsubscribed) + 1, "still a member: skipped for consent"
        runner.run()
        assert not webhook.holds(LEAVER)
        assert {c for c in pop.contactable if webhook.holds(c)} == STAYERS

    # The page now reads the choice back from the lake.
    with CollectorThread(build_app(settings, env={"LAKECDP_LINK_SECRET": LINK_SECRET}, clock=FrozenClock(NOW))[0]) as server:
        page = httpx.get(preference_url(server.url, mint(LEAVER))).text
    assert 'value="email_marketing:email" aria-describedby="d-email_marketing">' in page
    assert 'value="profiling:email" aria-describedby="d-profiling" checked>' in page


def test_the_page_is_served_over_https_with_hsts_and_expired_links_are_refused(spark, tmp_path):
    certfile, keyfile = self_signed(tmp_path / "tls")
    settings = settings_for(tmp_path, tls={"certfile": str(certfile), "keyfile": str(keyfile)})
    customers, pop = population(6)
    write_lake(spark, open_lake(spark, settings.lake, root=settings.lake.root), customers, {SEGMENT: []}, pop)
    app, collector = build_app(settings, env={"LAKECDP_LINK_SECRET": LINK_SECRET}, clock=FrozenClock(NOW))
    with CollectorThread(app, tls=collector.tls) as server:
        assert server.url.startswith("https://")
        page = httpx.get(preference_url(server.url, mint("c001")), verify=str(certfile))
        expired = httpx.get(
            preference_url(server.url, mint("c001", now=NOW - timedelta(days=2), valid_for=timedelta(days=1))), verify=str(certfile)
        )
    assert page.status_code == 200 and page.headers["strict-transport-security"] == "max-age=31536000"
    assert "Content-Security-Policy" in page.headers and "<script" not in page.text
    assert expired.status_code == 403 and expired.headers["strict-transport-security"] == "max-age=31536000"


def access_requests_command(lake_root: str, monkeypatch, capsys) -> str:
    """`lakecdp privacy access-requests` as the privacy officer runs it (admin token configured and given)."""
    token = "lakecdp_officer-token-for-tests"
    monkeypatch.setenv("LAKECDP__PRIVACY__ADMIN_TOKEN_SHA256", hashlib.sha256(token.encode()).hexdigest())
    monkeypatch.setenv("LAKECDP_CONF_DIR", str(REPO / "conf"))  # main() points it at --conf: restored after the test
    assert main(["--conf", str(REPO / "conf"), "privacy", "access-requests", "--lake", lake_root, "--token", token]) == 0
    return capsys.readouterr().out


def test_copy_and_erasure_requests_reach_the_privacy_officer(spark, tmp_path, monkeypatch, capsys):
    settings = settings_for(tmp_path)
    lake = open_lake(spark, settings.lake, root=settings.lake.root)
    customers, pop = population(6)
    write_lake(spark, lake, customers, {SEGMENT: ["c000", "c001"]}, pop)
    support = request_erasure(lake, pid("c001"), NOW - timedelta(hours=1))  # Spark makes the queue; the centre appends through delta-rs
    app, _ = build_app(settings, env={"LAKECDP_LINK_SECRET": LINK_SECRET}, clock=FrozenClock(NOW))
    url = f"/v1/preferences/{mint(LEAVER)}"
    with TestClient(app) as client:
        copy = client.post(url, data={"form_id": "f1", "action": "access"})
        erase = client.post(url, data={"form_id": "f1", "action": "erase", "confirm_erase": "yes"})
        again = client.post(url, data={"form_id": "f1", "action": "erase", "confirm_erase": "yes"})
    assert copy.status_code == erase.status_code == again.status_code == 200

    [queued] = lake.read("erasure_requests").filter(F.col("request_id") != support).collect()
    assert (queued.customer_id, queued.requested_at) == (pid(LEAVER), NOW.replace(tzinfo=None)) and queued.request_id in erase.text

    landed = [line for path in sorted((tmp_path / "landing" / "events").glob("part-*.jsonl")) for line in path.read_text().splitlines()]
    assert [json.loads(line)["event"] for line in landed] == ["Data Access Requested"]
    ingest_lines(
        lake,
        spark.createDataFrame([(line, "prefs.jsonl") for line in landed], "raw string, source_file string"),
        received_at=NOW,
        settings=settings.events,
    )
    [request] = access_requests(lake)
    assert (request["customer_id"], request["answered_at"]) == (pid(LEAVER), None) and request["request_id"] in copy.text
    listed = access_requests_command(settings.lake.root, monkeypatch, capsys)
    assert f"{pid(LEAVER)}  {request['request_id']}  OPEN" in listed and "1 data-copy request(s), 1 open" in listed
    access_bundle(lake, pid(LEAVER), NOW + timedelta(hours=1))
    assert access_requests(lake)[0]["answered_at"] == (NOW + timedelta(hours=1)).replace(tzinfo=None)
    assert "1 data-copy request(s), 0 open" in access_requests_command(settings.lake.root, monkeypatch, capsys)

    proofs = process_erasures(lake, None, NOW + timedelta(hours=2))
    assert sorted(p.request_id for p in proofs) == sorted([support, queued.request_id])
    assert {r.customer_id for r in lake.read("customers").collect()} == {pid(c.customer_id) for c in customers[2:]}
    assert lake.read("erasure_requests").count() == 0
    reopened, _ = build_app(settings, env={"LAKECDP_LINK_SECRET": LINK_SECRET}, clock=FrozenClock(NOW))
    with TestClient(reopened) as client:  # the erased customer's link no longer opens anything
        assert client.get(url).status_code == 403
