"""`export plan` / `run` / `status` / `sync-unsubscribes` end to end: real Spark + Delta, every ESP's
contract server, and S3 on moto's real server.

One lake goes through a story: plan (dry run), first run, a second run after changes (the diff),
a full refresh, and unsubscribes synced back from Mailchimp.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from pyspark.sql import functions as F

from lakecdp.config.models import LakeSettings
from lakecdp.export.adapters import Runtime
from lakecdp.export.identifiers import email_sha256, mailchimp_subscriber_hash
from lakecdp.export.runner import ExportRunner
from lakecdp.export.settings import load_esp_settings
from lakecdp.lake import open_lake
from lakecdp.sandbox import BrazeServer, KlaviyoServer, MailchimpServer, SfmcServer, WebhookServer
from lakecdp.sandbox.scenario import (
    AS_OF,
    SECRETS,
    SEGMENTS,
    Customer,
    add_event,
    email_of,
    esp_section,
    population,
    set_customers,
    set_members,
    write_conf,
    write_lake,
)
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

INVALID, FLAKY = "c006", "c007"  # rejected by every ESP for good / once inside a batch
SEG0, SEG1 = SEGMENTS
HTTP_DESTINATIONS = ("mailchimp", "klaviyo", "braze", "sfmc", "webhook")
DESTINATIONS = (*HTTP_DESTINATIONS, "s3_drop")


@dataclass
class Story:
    lake: Any
    runner: ExportRunner
    servers: dict[str, Any]
    s3: Any
    contactable: set[str]
    blocked: set[str]
    members: dict[str, list[str]]
    conf: Any


@pytest.fixture(scope="module")
def story(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("export_run")
    invalid, flaky = [email_of(INVALID)], [email_of(FLAKY)]
    servers = {
        "mailchimp": MailchimpServer(
            api_key=SECRETS["LAKECDP_TEST_MAILCHIMP_KEY"], list_id="aud1", invalid_emails=invalid, flaky_emails=flaky
        ),
        "klaviyo": KlaviyoServer(api_key=SECRETS["LAKECDP_TEST_KLAVIYO_KEY"], invalid_emails=invalid, flaky_emails=flaky),
        "braze": BrazeServer(api_key=SECRETS["LAKECDP_TEST_BRAZE_KEY"], invalid_emails=invalid, flaky_emails=flaky),
        "sfmc": SfmcServer(
            client_id=SECRETS["LAKECDP_TEST_SFMC_ID"],
            client_secret=SECRETS["LAKECDP_TEST_SFMC_SECRET"],
            data_extension_key="lakecdp_members",
            invalid_emails=invalid,
        ),
        "webhook": WebhookServer(secret=SECRETS["LAKECDP_TEST_WEBHOOK_SECRET"], invalid_customers=[INVALID], flaky_customers=[FLAKY]),
    }
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    httpx.post(f"http://{host}:{port}/moto-api/reset")  # moto keeps one backend per process: start empty
    for server in servers.values():
        server.start()
    s3 = boto3.client(
        "s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    s3.create_bucket(Bucket="lakecdp-drop")
    urls = {name: server.url for name, server in servers.items()} | {"s3_drop": f"http://{host}:{port}"}
    section = esp_section(urls, klaviyo={"batch_size": 10_000})
    esp = load_esp_settings(section, segment_names=SEGMENTS + ("viewed_shoes_24h", "engaged_email_clickers"))
    lake = open_lake(spark, LakeSettings(), root=str(root / "lake"))
    customers, pop = population(24)
    members = {SEG0: [c.customer_id for c in customers], SEG1: [c.customer_id for c in customers[:12]]}
    write_lake(spark, lake, customers, members, pop)
    yield Story(
        lake,
        ExportRunner(lake, esp, Runtime(env=SECRETS)),
        servers,
        s3,
        set(pop.contactable),
        set(pop.blocked),
        members,
        write_conf(root / "conf", section, lake_root=root / "lake"),
    )
    for server in servers.values():
        server.stop()
    moto.stop()


# The log and plans name customers by pseudonym; these tests name them by the retailer's id.
RETAILER_ID = {pid(f"c{i:03d}"): f"c{i:03d}" for i in range(100)}


def log_rows(lake, run_id: str | None = None) -> list[dict]:
    log = lake.read("export_log")
    if run_id:
        log = log.filter(F.col("run_id") == run_id)
    return [{**r.asDict(), "customer_id": RETAILER_ID[r.customer_id]} for r in log.collect()]


def changes(plans) -> list[dict]:
    return [{**c, "customer_id": RETAILER_ID[c["customer_id"]]} for p in plans for c in p.changes()]


def s3_objects(story: Story) -> dict[str, bytes]:
    listing = story.s3.list_objects_v2(Bucket="lakecdp-drop").get("Contents", [])
    return {o["Key"]: story.s3.get_object(Bucket="lakecdp-drop", Key=o["Key"])["Body"].read() for o in listing}


@pytest.fixture(scope="module")
def first_run(story):
    plans = story.runner.plan()
    requests_during_plan = {name: len(server.requests) for name, server in story.servers.items()}
    objects_during_plan = len(s3_objects(story))
    report = story.runner.run()
    return plans, requests_during_plan, objects_during_plan, report


def test_plan_sends_nothing_and_lists_exactly_what_run_sends(story, first_run):
    plans, requests_during_plan, objects_during_plan, report = first_run
    assert requests_during_plan == {name: 0 for name in HTTP_DESTINATIONS} and objects_during_plan == 0
    planned = {(c["destination"], c["segment"], c["action"], c["customer_id"]) for c in changes(plans)}
    sent = {
        (r["destination"], r["segment"], r["action"], r["customer_id"])
        for r in log_rows(story.lake, report.run_id)
        if r["state"] != "pending"
    }
    assert planned == sent and len(planned) == len(DESTINATIONS) * (
        len(story.contactable) + len(story.contactable & set(story.members[SEG1]))
    )


def test_every_member_ends_sent_or_failed_with_the_esps_reason_exactly_once(story, first_run):
    report = first_run[3]
    rows = log_rows(story.lake, report.run_id)
    terminal = Counter((r["destination"], r["segment"], r["customer_id"]) for r in rows if r["state"] != "pending")
    pending = Counter((r["destination"], r["segment"], r["customer_id"]) for r in rows if r["state"] == "pending")
    assert set(terminal.values()) == {1} and terminal.keys() == pending.keys()  # each planned member: one outcome
    failed = {(r["destination"], r["customer_id"]): r["reason"] for r in rows if r["state"] == "failed"}
    assert {cid for _, cid in failed} == {INVALID}  # the flaky one made it alone
    assert failed[("mailchimp", INVALID)].startswith("ERROR_GENERIC: <email> looks fake or invalid")
    assert failed[("braze", INVALID)] == "'email' is not a valid email address"
    assert failed[("webhook", INVALID)] == "unknown recipient"
    assert not any("@" in reason for reason in failed.values())
    assert report.ok and report.counts("mailchimp", SEG0).failed == Counter({failed[("mailchimp", INVALID)]: 1})
    assert report.counts("mailchimp", SEG0).skipped == Counter(
        {"no marketing opt-in": 1, "unsubscribed after latest opt-in": 1, "suppressed: bounced": 1, "no valid email": 1}
    )
    # Mailchimp reports created vs updated (matched) members; those in both segments match on their second upsert.
    assert 0.0 <= report.counts("mailchimp", SEG0).match_rate() < 0.5
    for name in HTTP_DESTINATIONS:
        assert story.servers[name].violations == [], name


def test_consent_blocked_customers_never_reach_any_server(story, first_run):
    traces = set()
    for cid in story.blocked:
        email = email_of(cid)
        traces |= {f'"{cid}"', email, email_sha256(email), mailchimp_subscriber_hash(email)}
    for name in HTTP_DESTINATIONS:
        for request in story.servers[name].requests:
            seen = request.path + request.body.decode()
            assert not any(trace in seen for trace in traces), (name, request.path)
    for key, body in s3_objects(story).items():
        assert not any(trace.strip('"') in body.decode() for trace in traces), key


def test_esps_are_told_the_retailers_ids_never_the_lakes_pseudonyms(story, first_run):
    pseudonyms = set(RETAILER_ID)
    told = 0
    for name in HTTP_DESTINATIONS:
        for request in story.servers[name].requests:
            seen = request.path + request.body.decode()
            assert not any(p in seen for p in pseudonyms), (name, request.path)
            told += any(f'"{c}"' in seen for c in story.contactable)
    for key, body in s3_objects(story).items():
        assert not any(p in body.decode() for p in pseudonyms), key
    assert told > 0, "some request must name customers by the retailer's id"


def test_servers_hold_exactly_the_contactable_members(story, first_run):
    expected = {seg: (set(ids) & story.contactable) - {INVALID} for seg, ids in story.members.items()}
    servers = story.servers
    for i, segment in enumerate(SEGMENTS):
        assert servers["mailchimp"].tagged(f"lakecdp_{segment}") == {email_of(c) for c in expected[segment]}
        assert servers["klaviyo"].members_of(f"L{i}") == expected[segment]
        assert servers["braze"].in_segment("lakecdp_segments", segment) == expected[segment]
        assert servers["sfmc"].members(segment) == expected[segment]
        assert servers["webhook"].members[segment] == expected[segment]
    manifests = {k: json.loads(v) for k, v in s3_objects(story).items() if k.endswith("manifest.json")}
    assert {m["segment"]: m["counts"]["create"] for m in manifests.values()} == {s: len(expected[s]) + 1 for s in SEGMENTS}
    upserts = {mailchimp_subscriber_hash(email_of(c)): sum(c in expected[s] for s in SEGMENTS) for c in expected[SEG0]}
    assert dict(servers["mailchimp"].deliveries) == upserts  # one upsert per member and segment


@pytest.fixture(scope="module")
def second_run(story, first_run):
    spark = story.lake.spark
    validated = story.lake.version("segment_membership")
    seg0 = [c for c in story.members[SEG0] if c != "c008"] + ["c030"]
    set_members(spark, story.lake, {SEG0: seg0})  # c008 leaves, c030 joins
    set_customers(spark, story.lake, [Customer("c009", first_name="Grace"), Customer("c030")])
    add_event(spark, story.lake, "c010", "Unsubscribed", AS_OF - timedelta(hours=1))
    pinned = ExportRunner(story.lake, story.runner.esp, story.runner.runtime, membership_version=validated).plan()
    before = {name: Counter(server.deliveries) for name, server in story.servers.items()}
    report = story.runner.run()
    return report, before, pinned


def test_a_plan_pinned_to_a_membership_version_ignores_later_membership_changes(story, second_run):
    """What the export quality gate validated is what is sent: membership from the pinned version,
    consent and attributes as they are now (c010's unsubscribe and c009's new name still count)."""
    pinned = {(c["segment"], c["action"], c["customer_id"]) for c in changes([second_run[2][0]])}
    assert pinned == {(SEG0, "update", "c009"), (SEG0, "remove", "c010"), (SEG1, "update", "c009"), (SEG1, "remove", "c010")}


def test_second_run_sends_only_the_diff(story, second_run):
    report, before, _ = second_run
    changes = {
        (r["destination"], r["segment"], r["action"], r["customer_id"]) for r in log_rows(story.lake, report.run_id) if r["state"] == "sent"
    }
    expected = set()
    for name in DESTINATIONS:
        expected |= {
            (name, SEG0, "remove", "c008"),
            (name, SEG0, "update", "c009"),
            (name, SEG0, "remove", "c010"),
            (name, SEG0, "create", "c030"),
            (name, SEG1, "update", "c009"),
            (name, SEG1, "remove", "c010"),
        }
    assert changes == expected
    assert all(report.counts(name, SEG0).held == 1 for name in HTTP_DESTINATIONS)  # the permanent failure is not resent
    webhook = story.servers["webhook"]
    assert webhook.members[SEG0] >= {"c009", "c030"} and not webhook.members[SEG0] & {"c008", "c010"}
    assert "c010" not in story.servers["braze"].in_segment("lakecdp_segments", SEG1)
    assert story.servers["braze"].users["c009"]["first_name"] == "Grace"
    assert email_of("c008") not in story.servers["mailchimp"].tagged(f"lakecdp_{SEG0}")
    assert not story.servers["klaviyo"].members_of("L0") & {"c008", "c010"}
    assert not story.servers["sfmc"].members(SEG1) & {"c010"}
    unchanged = story.contactable - {"c008", "c009", "c010", INVALID}
    assert all(story.servers["braze"].deliveries[c] == before["braze"][c] for c in unchanged)
    for name in HTTP_DESTINATIONS:
        assert story.servers[name].violations == [], name


def test_full_refresh_resends_every_member(story, second_run):
    webhook = story.servers["webhook"]
    before = Counter(webhook.deliveries)
    report = story.runner.run(["webhook"], full=True)
    in_segments = {c for seg in (SEG0, SEG1) for c in webhook.members[seg]}
    planned = Counter()
    for segment in SEGMENTS:
        planned.update(report.counts("webhook", segment).planned)
    # Everyone held there is resent as an update; the permanent failure (never held there) is retried as a create.
    assert planned == Counter({"update": sum(len(webhook.members[s]) for s in SEGMENTS), "create": 2})
    assert all(webhook.deliveries[c] > before[c] for c in in_segments)


def test_sync_unsubscribes_records_events_and_bounces_then_the_next_plan_removes_them(story, second_run):
    from lakecdp.config.models import EventSettings
    from lakecdp.export.unsubscribes import sync_unsubscribes

    mailchimp = story.servers["mailchimp"]
    mailchimp.set_status(email_of("c011"), "unsubscribed", "2026-10-31T23:00:00+00:00")
    mailchimp.set_status(email_of("c012"), "cleaned")
    esp = story.runner.esp
    first = sync_unsubscribes(story.lake, esp, "mailchimp", Runtime(env=SECRETS), events=EventSettings())
    again = sync_unsubscribes(story.lake, esp, "mailchimp", Runtime(env=SECRETS), events=EventSettings())
    assert (first.unsubscribed, first.bounced, first.matched, first.events_added, first.suppressions_added) == (1, 1, 2, 1, 1)
    assert (again.events_added, again.suppressions_added) == (0, 0)
    events = story.lake.read("events").filter((F.col("customer_id") == pid("c011")) & (F.col("event") == "Unsubscribed")).collect()
    assert len(events) == 1 and events[0]["source_file"] == "esp://mailchimp/unsubscribed"
    assert all("fields" in r.query and r.query["fields"][0].startswith("members.id") for r in mailchimp.requests if r.method == "GET")
    removes = {(c["destination"], c["customer_id"]) for c in changes(story.runner.plan()) if c["action"] == "remove"}
    assert {(name, cid) for name in DESTINATIONS for cid in ("c011", "c012")} <= removes


def run_export_command(conf, *argv: str) -> int:
    """`lakecdp export ...` through the module's own parser and handler (as lakecdp.cli dispatches it)."""
    import argparse

    from lakecdp.config import load_settings
    from lakecdp.export import commands

    parser = argparse.ArgumentParser(prog="lakecdp")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", *argv])
    return args.handler(args, load_settings(conf, env={}))


def test_status_command_reports_the_log(story, second_run, capsys):
    assert run_export_command(story.conf, "status", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    runs = {r["run_id"] for r in rows}
    assert len(runs) >= 2 and all(r["pending"] == 0 for r in rows)
    mailchimp_first = [r for r in rows if r["destination"] == "mailchimp" and r["segment"] == SEG0][0]
    assert mailchimp_first["failed"] == 1 and list(mailchimp_first["failed_by_reason"].values()) == [1]


def test_config_secrets_are_names_only(story):
    text = (story.conf / "base" / "esp.yaml").read_text()
    assert not any(secret in text for secret in SECRETS.values())
    assert all(name in text for name in SECRETS)


def test_a_resumed_batch_rechecks_consent_before_sending(story, second_run):
    spark, runner, webhook = story.lake.spark, story.runner, story.servers["webhook"]
    set_customers(spark, story.lake, [Customer("c040"), Customer("c041")])
    set_members(spark, story.lake, {SEG1: story.members[SEG1] + ["c040", "c041"]})
    # A run that died right after its write-ahead commit: its batches are pending, nothing was sent.
    crashed = runner.plan_all(["webhook"], run_id="crashed-run")
    runner.log.record_pending(crashed["webhook"].batches)
    add_event(spark, story.lake, "c041", "Unsubscribed", AS_OF)  # withdrawn before the rerun

    report = runner.run(["webhook"])
    rows = {r["customer_id"]: r for r in log_rows(story.lake, "crashed-run") if r["state"] != "pending"}
    assert rows["c040"]["state"] == "sent" and report.counts("webhook", SEG1).resumed >= 1  # resent under its old batch id
    assert rows["c041"]["state"] == "failed" and rows["c041"]["reason"] == "consent withdrawn before send: unsubscribed after latest opt-in"
    assert rows["c041"]["is_retryable"]  # a later opt-in lets it go out again
    assert "c040" in webhook.members[SEG1] and "c041" not in webhook.members[SEG1]
    # The crashed batch may have reached the ESP before the kill, so c041 gets a remove, which carries
    # no address or attributes; nothing that would let the ESP market to them ever leaves.
    mentions = [m for r in webhook.requests for m in json.loads(r.body)["members"] if m["customer_id"] == "c041"]
    assert mentions and all(m["action"] == "remove" and set(m) == {"action", "customer_id", "email_sha256"} for m in mentions)
