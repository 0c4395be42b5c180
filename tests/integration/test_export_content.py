"""Exports carry the content decision as ESP merge fields (`content_fields: true`): the block chosen
per slot, token values and the experiment variant, from the real content engine over the lake.
Mailchimp's and the webhook's contract servers receive them; a change in the decision re-sends
exactly the customers it changed."""

from __future__ import annotations

import json

import pytest
from pyspark.sql import functions as F

from lakecdp.clock import FrozenClock
from lakecdp.config import load_settings
from lakecdp.config.models import LakeSettings
from lakecdp.content import open_content_service
from lakecdp.experiments.settings import GLOBAL_HOLDOUT
from lakecdp.export.adapters import Runtime
from lakecdp.export.identifiers import mailchimp_subscriber_hash
from lakecdp.export.runner import ExportRunner, export_runner
from lakecdp.export.settings import load_esp_settings
from lakecdp.lake import open_lake
from lakecdp.lake.tables import table
from lakecdp.preferences.merge import MERGE_FIELD
from lakecdp.preferences.tokens import verify_link
from lakecdp.privacy.email_consent import HELD_OUT
from lakecdp.sandbox import MailchimpServer, WebhookServer
from lakecdp.sandbox.scenario import AS_OF, SECRETS, SEGMENTS, email_of, esp_section, population, write_conf, write_lake
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

LOYAL = "c008"  # gets 3 orders between the runs: loyalty_offer becomes their offer block
CLOCK = FrozenClock(AS_OF)  # fixes the holdout epoch: the same customers are held out whenever this runs
LINK_SECRET = "preference-link-secret-0123456789"  # members also carry their preference-centre link (PREFS_URL)


def profile_rows(frequencies: dict[str, int]) -> list[tuple]:
    """profile_features rows: zero counts, no other data, and the given order frequency."""
    schema = table("profile_features").schema
    zero = {"long": 0, "integer": 0, "double": 0.0, "boolean": False}
    rows = []
    for customer_id, frequency in frequencies.items():
        values = {f.name: None if f.nullable else zero.get(f.dataType.typeName()) for f in schema.fields}
        values.update(customer_id=pid(customer_id), frequency=frequency, as_of=AS_OF)
        rows.append(tuple(values.values()))
    return rows


def webhook_members(server: WebhookServer) -> list[dict]:
    return [m for r in server.requests if r.path.endswith("/hook") for m in json.loads(r.body)["members"]]


@pytest.fixture(scope="module")
def setup(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("export_content")
    servers = {
        "mailchimp": MailchimpServer(api_key=SECRETS["LAKECDP_TEST_MAILCHIMP_KEY"], list_id="aud1"),
        "webhook": WebhookServer(secret=SECRETS["LAKECDP_TEST_WEBHOOK_SECRET"], tolerance_s=10**9),  # signed at AS_OF
    }
    for server in servers.values():
        server.start()
    section = esp_section(
        {name: s.url for name, s in servers.items()}, mailchimp={"content_fields": True}, webhook={"content_fields": True}
    )
    conf = write_conf(root / "conf", section, lake_root=root / "lake")
    settings = load_settings(conf)
    lake = open_lake(spark, LakeSettings(), root=str(root / "lake"))
    customers, pop = population(24)
    write_lake(spark, lake, customers, {SEGMENTS[0]: [c.customer_id for c in customers]}, pop)
    lake.append("profile_features", spark.createDataFrame(profile_rows({LOYAL: 1}), schema=lake.spec("profile_features").schema))
    esp = load_esp_settings(section, segment_names=[s["name"] for s in settings.segments])
    runner = export_runner(settings, lake, esp, Runtime(env={**SECRETS, "LAKECDP_LINK_SECRET": LINK_SECRET}, clock=CLOCK))
    yield settings, lake, runner, servers, pop
    for server in servers.values():
        server.stop()


def test_members_arrive_with_the_content_engines_merge_fields_and_the_global_holdout_is_skipped(setup):
    settings, lake, runner, servers, pop = setup
    report = runner.run()
    assert report.ok, report.errors
    by_pseudonym = open_content_service(settings, lake_root=lake.root, clock=CLOCK).merge_fields_for([pid(c) for c in pop.contactable])
    expected = {c: by_pseudonym[pid(c)] for c in pop.contactable}
    assert {"BLK_HERO", "BLK_OFFER", "BLK_GRID", "EXPCONTENT", "DISCOUNT"} <= set(expected[pop.contactable[0]])
    assert expected[LOYAL]["BLK_OFFER"] != "loyalty_offer"  # one order: not a frequent buyer yet
    held_out = {c for c in pop.contactable if expected[c]["EXPCONTENT"] == GLOBAL_HOLDOUT}
    sent = set(pop.contactable) - held_out
    assert held_out == {"c020"}  # the hash test of the epoch at AS_OF on the pseudonyms (no persisted draw)
    assert report.counts("mailchimp", SEGMENTS[0]).skipped[HELD_OUT] == len(held_out)

    held = {m["email_address"]: m["merge_fields"] for m in servers["mailchimp"].members.values()}
    assert set(held) == {email_of(c) for c in sent}
    for customer_id in sent:
        fields = held[email_of(customer_id)]
        assert {k: fields[k] for k in expected[customer_id]} == expected[customer_id]
    delivered = {m["customer_id"]: m["merge_fields"] for m in webhook_members(servers["webhook"])}
    links = {c: fields.pop(MERGE_FIELD) for c, fields in delivered.items()}
    assert delivered == {c: expected[c] for c in sent}
    for customer_id, url in links.items():
        assert verify_link(url.rsplit("/", 1)[1], LINK_SECRET.encode(), now=AS_OF).customer_id == pid(customer_id)
        assert held[email_of(customer_id)][MERGE_FIELD] == url
    assert {f["EXPCONTENT"] for f in delivered.values()} == {"control", "personalized"}


def test_the_spark_holdout_test_matches_the_python_assigner(spark):
    from lakecdp.experiments.assign import unit_hash
    from lakecdp.experiments.columns import unit_hash_col

    ids = [f"cust-{i}" for i in range(3000)]
    df = spark.createDataFrame([(i,) for i in ids], "customer_id string")
    got = dict(df.select("customer_id", unit_hash_col(F.lit("salt"), F.lit("x"), F.col("customer_id")).alias("u")).collect())
    assert all(abs(got[i] - unit_hash("salt", "x", i)) < 1e-15 for i in ids)
    assert sum(got[i] < 0.05 for i in ids) == sum(unit_hash("salt", "x", i) < 0.05 for i in ids) > 100


def test_a_changed_decision_resends_only_the_customers_it_changed(setup, spark):
    settings, lake, runner, servers, pop = setup
    before = len(webhook_members(servers["webhook"]))
    assert not [c for plan in runner.plan() for c in plan.changes()]  # nothing changed yet: nothing to send

    lake.merge("profile_features", spark.createDataFrame(profile_rows({LOYAL: 3}), schema=lake.spec("profile_features").schema))
    changes = [c for plan in runner.plan() for c in plan.changes()]
    assert {(c["destination"], c["customer_id"], c["action"]) for c in changes} == {
        ("mailchimp", pid(LOYAL), "update"),
        ("webhook", pid(LOYAL), "update"),
    }
    report = runner.run()
    assert report.ok, report.errors
    resent = webhook_members(servers["webhook"])[before:]
    assert [m["customer_id"] for m in resent] == [LOYAL]
    assert resent[0]["merge_fields"]["BLK_OFFER"] == "loyalty_offer"
    member = servers["mailchimp"].members[mailchimp_subscriber_hash(email_of(LOYAL))]
    assert member["merge_fields"]["BLK_OFFER"] == "loyalty_offer"


def test_a_destination_without_content_fields_sends_none(setup):
    settings, lake, runner, servers, pop = setup
    esp = load_esp_settings(esp_section({"webhook": servers["webhook"].url}), segment_names=[s["name"] for s in settings.segments])
    plain = ExportRunner(lake, esp, Runtime(env=SECRETS), content=None)
    members = [m for plan in plain.plan() for b in plan.batches for m in b.members]
    assert members and all(not m.merge_fields for m in members)
