"""`sync-unsubscribes` for Klaviyo, Braze and SFMC end to end: real Spark + Delta, each ESP's contract
server on 127.0.0.1 answering its documented opt-out API (Mailchimp's is in test_export_run.py).

One lake is exported to the three ESPs; then each ESP reports one unsubscribe and one hard bounce
among lakecdp's customers, plus enough opt-outs of strangers to need several pages. Klaviyo's are
synced through `sync_unsubscribes` (twice: the second adds nothing), Braze's and SFMC's through the
`lakecdp export sync-unsubscribes` command; each ESP's opt-out reads are also checked without a sync.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from pyspark.sql import functions as F

from lakecdp.clock import FrozenClock
from lakecdp.config import ConfigError
from lakecdp.config.models import EventSettings, LakeSettings
from lakecdp.export.adapters import Runtime, build_adapter
from lakecdp.export.adapters.base import BOUNCED, UNSUBSCRIBED
from lakecdp.export.http import DestinationError
from lakecdp.export.identifiers import email_sha256
from lakecdp.export.runner import ExportRunner
from lakecdp.export.settings import load_esp_settings
from lakecdp.export.unsubscribes import sync_unsubscribes
from lakecdp.lake import open_lake
from lakecdp.sandbox import BrazeServer, KlaviyoServer, SfmcServer
from lakecdp.sandbox.scenario import AS_OF, SECRETS, SEGMENTS, email_of, esp_section, population, write_conf, write_lake
from tests.integration.test_export_run import run_export_command
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

ESPS = ("klaviyo", "braze", "sfmc")
# Who opts out where: (unsubscribed, bounced); all six are contactable and exported before the sync.
OPTED_OUT = {"klaviyo": ("c006", "c007"), "braze": ("c008", "c009"), "sfmc": ("c010", "c011")}
STRANGERS = {"klaviyo": 120, "braze": 600, "sfmc": 5}  # beyond one page: Klaviyo 100, Braze 500, SFMC (here) 2
UNSUBSCRIBED_AT = AS_OF - timedelta(hours=5)
NOW = AS_OF + timedelta(days=1)
RETAILER_ID = {pid(f"c{i:03d}"): f"c{i:03d}" for i in range(12)}


@dataclass
class World:
    lake: Any
    esp: Any
    runner: ExportRunner
    servers: dict[str, Any]
    conf: Any


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    servers: dict[str, Any] = {
        "klaviyo": KlaviyoServer(api_key=SECRETS["LAKECDP_TEST_KLAVIYO_KEY"]),
        "braze": BrazeServer(api_key=SECRETS["LAKECDP_TEST_BRAZE_KEY"]),
        "sfmc": SfmcServer(
            client_id=SECRETS["LAKECDP_TEST_SFMC_ID"],
            client_secret=SECRETS["LAKECDP_TEST_SFMC_SECRET"],
            data_extension_key="lakecdp_members",
        ),
    }
    servers["sfmc"].soap_page_size = 2
    for server in servers.values():
        server.start()
    section = esp_section({name: s.url for name, s in servers.items()})
    esp = load_esp_settings(section, segment_names=SEGMENTS)
    root = tmp_path_factory.mktemp("unsubscribes")
    lake = open_lake(spark, LakeSettings(), root=str(root / "lake"))
    customers, pop = population(12)
    write_lake(spark, lake, customers, {SEGMENTS[0]: [c.customer_id for c in customers]}, pop)
    runner = ExportRunner(lake, esp, Runtime(env=SECRETS, clock=FrozenClock(AS_OF)))
    report = runner.run(list(ESPS))
    assert all(server.violations == [] for server in servers.values()), report
    _record_opt_outs_at_the_esps(servers)
    yield World(lake, esp, runner, servers, write_conf(root / "conf", section, lake_root=root / "lake"))
    for server in servers.values():
        server.stop()


def _record_opt_outs_at_the_esps(servers: dict[str, Any]) -> None:
    klaviyo, braze, sfmc = servers["klaviyo"], servers["braze"], servers["sfmc"]
    (k_unsub, k_bounce), (b_unsub, b_bounce), (s_unsub, s_held) = OPTED_OUT.values()
    klaviyo.suppress(k_unsub, email_of(k_unsub), "UNSUBSCRIBE", UNSUBSCRIBED_AT)
    klaviyo.suppress(k_bounce, email_of(k_bounce), "HARD_BOUNCE", UNSUBSCRIBED_AT)
    braze.unsubscribe(email_of(b_unsub), UNSUBSCRIBED_AT)
    braze.hard_bounce(email_of(b_bounce), UNSUBSCRIBED_AT)
    sfmc.set_subscriber(s_unsub, email_of(s_unsub), "Unsubscribed", UNSUBSCRIBED_AT)
    sfmc.set_subscriber(s_held, email_of(s_held), "Held")
    sfmc.set_subscriber("c000", email_of("c000"), "Active")
    for i in range(STRANGERS["klaviyo"]):
        klaviyo.suppress(f"x{i:03d}", f"x{i:03d}@elsewhere.example", "UNSUBSCRIBE", UNSUBSCRIBED_AT - timedelta(minutes=i))
    for i in range(STRANGERS["braze"]):
        braze.unsubscribe(f"x{i:03d}@elsewhere.example", UNSUBSCRIBED_AT - timedelta(minutes=i))
    for i in range(STRANGERS["sfmc"]):
        sfmc.set_subscriber(f"x{i:03d}", f"x{i:03d}@elsewhere.example", "Unsubscribed", UNSUBSCRIBED_AT - timedelta(minutes=i))


def sync(world: World, name: str, env=SECRETS, since=None):
    return sync_unsubscribes(world.lake, world.esp, name, Runtime(env=env, clock=FrozenClock(NOW)), events=EventSettings(), since=since)


def opt_out_kinds(world: World, name: str, since=None) -> Counter:
    """What the ESP reports, read by its adapter alone: the requests and counts, without the lake writes of a sync."""
    adapter = build_adapter(name, world.esp.destinations[name], world.esp.attributes, Runtime(env=SECRETS, clock=FrozenClock(NOW)))
    try:
        return Counter(o.kind for o in adapter.opt_outs(since))
    finally:
        adapter.close()


def assert_the_lake_holds_the_opt_outs(world: World, name: str) -> None:
    """The ESP's unsubscribe is one event and one withdrawn ledger fact; its hard bounce is one suppression."""
    unsubscribed, bounced = OPTED_OUT[name]
    events = world.lake.read("events").filter(F.col("event") == "Unsubscribed").filter(F.col("source_file") == f"esp://{name}/unsubscribed")
    assert [RETAILER_ID[r["customer_id"]] for r in events.collect()] == [unsubscribed]
    ledger = world.lake.read("consent_ledger").filter(F.col("source") == f"esp://{name}/unsubscribed").collect()
    assert {(RETAILER_ID[r["customer_id"]], r["status"]) for r in ledger} == {(unsubscribed, "withdrawn")}
    suppression = world.lake.read("export_suppressions").filter(F.col("source") == name).collect()
    assert [(r["email_sha256"], RETAILER_ID[r["customer_id"]]) for r in suppression] == [(email_sha256(email_of(bounced)), bounced)]
    assert world.servers[name].violations == []


def test_unsubscribes_become_events_and_ledger_facts_bounces_suppressions_and_a_resync_adds_nothing(world):
    """Klaviyo through sync_unsubscribes; Braze and SFMC go the same way through the command (below)."""
    name = "klaviyo"
    first, again = sync(world, name), sync(world, name)

    assert (first.unsubscribed, first.bounced, first.matched) == (1 + STRANGERS[name], 1, 2)
    assert (first.events_added, first.suppressions_added) == (1, 1)
    assert (again.matched, again.events_added, again.suppressions_added) == (2, 0, 0)
    assert_the_lake_holds_the_opt_outs(world, name)


def test_the_next_export_removes_whoever_opted_out_at_that_esp(world):
    """Klaviyo's opt-outs; test_export_run.py has Mailchimp's reach every destination's plan."""
    name = "klaviyo"
    sync(world, name)
    removes = {
        RETAILER_ID[c["customer_id"]]
        for plan in world.runner.plan([name])
        for c in plan.changes()
        if c["action"] == "remove" and c["destination"] == name
    }
    # Consent is one per customer: an opt-out at any ESP also removes them here, so compare a superset.
    assert set(OPTED_OUT[name]) <= removes and "c000" not in removes


def test_every_page_is_read_and_no_address_is_asked_for(world):
    seen = {name: len(server.requests) for name, server in world.servers.items()}
    for name in ESPS:
        opt_out_kinds(world, name)
    klaviyo, braze, sfmc = (world.servers[name].requests[seen[name] :] for name in ESPS)
    profiles = [r for r in klaviyo if r.path == "/api/profiles"]
    assert [r.param("page[cursor]") for r in profiles] == [None, "100"]  # 120 strangers + 2 at 100 a page
    assert all("email" not in (r.param("fields[profile]") or "email").split(",") for r in profiles)
    assert [r.param("offset") for r in braze if r.path == "/email/unsubscribes"] == ["0", "500"]
    soap = [r.body for r in sfmc if r.path == "/Service.asmx"]
    assert sum(b"<ContinueRequest>" in body for body in soap) == 2  # 6 unsubscribed at 2 a page, 1 held
    assert all(b"EmailAddress" not in body for body in soap)


def test_since_narrows_what_each_esp_is_asked_for(world):
    since = UNSUBSCRIBED_AT - timedelta(minutes=2)
    braze = opt_out_kinds(world, "braze", since=since)
    assert world.servers["braze"].requests[-1].param("start_date") == since.date().isoformat()
    assert braze[UNSUBSCRIBED] == 1 + STRANGERS["braze"]  # Braze reads whole days
    klaviyo = opt_out_kinds(world, "klaviyo", since=since)
    assert (klaviyo[UNSUBSCRIBED], klaviyo[BOUNCED]) == (1 + 3, 1)  # strangers x000..x002 are within 2 minutes
    sfmc = opt_out_kinds(world, "sfmc", since=since)
    assert (sfmc[UNSUBSCRIBED], sfmc[BOUNCED]) == (1 + 3, 1)  # Held has no date: always read
    assert all(server.violations == [] for server in world.servers.values())


@pytest.mark.parametrize(
    ("name", "secret", "words"),
    [
        ("klaviyo", "LAKECDP_TEST_KLAVIYO_KEY", "Klaviyo refused the API key"),
        ("braze", "LAKECDP_TEST_BRAZE_KEY", "Braze refused the REST API key"),
        ("sfmc", "LAKECDP_TEST_SFMC_SECRET", "Marketing Cloud refused the client credentials"),
    ],
)
def test_a_wrong_credential_is_a_clear_error(world, name, secret, words):
    with pytest.raises(DestinationError, match=words):
        sync(world, name, env={**SECRETS, secret: "not-the-key"})


def test_an_expired_sfmc_token_is_renewed_once(world):
    sfmc = world.servers["sfmc"]
    runtime = Runtime(env=SECRETS, clock=FrozenClock(NOW))
    adapter = build_adapter("sfmc", world.esp.destinations["sfmc"], world.esp.attributes, runtime)
    try:
        adapter._auth.access_token()
        sfmc.revoke_tokens()
        before = sfmc.tokens_issued
        assert sum(1 for _ in adapter.opt_outs(None)) == 2 + STRANGERS["sfmc"]
        assert sfmc.tokens_issued == before + 1
    finally:
        adapter.close()


def test_a_destination_without_an_opt_out_api_is_refused_by_name(world):
    with pytest.raises(ConfigError, match="esp.destinations.nowhere is not configured"):
        sync(world, "nowhere")


def test_the_command_reads_any_of_the_four_esp_types(world, monkeypatch, capsys):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    assert run_export_command(world.conf, "sync-unsubscribes", "-d", "braze", "-d", "sfmc", "--since", "2026-10-01") == 0
    out = capsys.readouterr().out
    assert f"braze: {1 + STRANGERS['braze']} unsubscribed and 1 bounced at the ESP, 2 matched to customers" in out
    assert f"sfmc: {1 + STRANGERS['sfmc']} unsubscribed and 1 bounced at the ESP, 2 matched to customers" in out
    assert "@" not in out  # no address in what the command prints
    for name in ("braze", "sfmc"):  # the first sync of either: it wrote what Klaviyo's did
        assert_the_lake_holds_the_opt_outs(world, name)


def test_the_help_names_every_esp_it_reads(world, capsys):
    with pytest.raises(SystemExit):
        run_export_command(world.conf, "sync-unsubscribes", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in ("Mailchimp, Klaviyo, Braze and SFMC", "--since"))
