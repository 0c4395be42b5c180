"""Erasure reaches the ESPs: export to every contract server on 127.0.0.1 (S3 on moto's real server),
erase a customer, and find them at no server; an ESP that fails keeps the request queued until it recovers.
"""

from __future__ import annotations

import json
import logging
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
from lakecdp.export.forget import EspEraser
from lakecdp.export.identifiers import email_sha256, mailchimp_subscriber_hash
from lakecdp.export.runner import ExportRunner
from lakecdp.export.settings import load_esp_settings
from lakecdp.lake import open_lake
from lakecdp.privacy.erasure import process_erasures, request_erasure
from lakecdp.sandbox import BrazeServer, KlaviyoServer, MailchimpServer, Response, SfmcServer, WebhookServer
from lakecdp.sandbox.scenario import AS_OF, SECRETS, SEGMENTS, email_of, esp_section, population, write_lake
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

KEPT = "c000"  # contactable, exported everywhere, never erased
S3_OUTCOME = "not supported: a file drop cannot recall files already delivered; ask the importer to delete the customer"


@dataclass
class World:
    lake: Any
    esp: Any
    servers: dict[str, Any]


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    servers = {
        "mailchimp": MailchimpServer(api_key=SECRETS["LAKECDP_TEST_MAILCHIMP_KEY"], list_id="aud1"),
        "klaviyo": KlaviyoServer(api_key=SECRETS["LAKECDP_TEST_KLAVIYO_KEY"]),
        "braze": BrazeServer(api_key=SECRETS["LAKECDP_TEST_BRAZE_KEY"]),
        "sfmc": SfmcServer(
            client_id=SECRETS["LAKECDP_TEST_SFMC_ID"],
            client_secret=SECRETS["LAKECDP_TEST_SFMC_SECRET"],
            data_extension_key="lakecdp_members",
        ),
        "webhook": WebhookServer(secret=SECRETS["LAKECDP_TEST_WEBHOOK_SECRET"]),
    }
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    httpx.post(f"http://{host}:{port}/moto-api/reset")  # moto keeps one backend per process: start empty
    s3 = boto3.client(
        "s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    s3.create_bucket(Bucket="lakecdp-drop")
    for server in servers.values():
        server.start()
    urls = {name: server.url for name, server in servers.items()} | {"s3_drop": f"http://{host}:{port}"}
    esp = load_esp_settings(esp_section(urls), segment_names=SEGMENTS)
    lake = open_lake(spark, LakeSettings(), root=str(tmp_path_factory.mktemp("erasure_esp") / "lake"))
    customers, pop = population(10)
    write_lake(spark, lake, customers, {SEGMENTS[0]: [c.customer_id for c in customers], SEGMENTS[1]: ["c000", "c006", "c007"]}, pop)
    report = ExportRunner(lake, esp, Runtime(env=SECRETS)).run()
    assert report.ok, report.format()
    yield World(lake, esp, servers)
    for server in servers.values():
        server.stop()
    moto.stop()


def held_by(world: World, customer_id: str) -> dict[str, bool]:
    """Which servers still hold anything about the customer."""
    email, s = email_of(customer_id), world.servers
    return {
        "mailchimp": s["mailchimp"].holds(email),
        "klaviyo": s["klaviyo"].holds(customer_id, email),
        "braze": s["braze"].holds(customer_id),
        "sfmc": s["sfmc"].holds(customer_id),
        "webhook": s["webhook"].holds(customer_id),
    }


def local_rows(world: World, customer_id: str) -> dict[str, int]:
    return {
        name: world.lake.read(name).filter(F.col("customer_id") == pid(customer_id)).count()
        for name in ("customers", "segment_membership", "export_log")
    }


def pii_of(customer_id: str) -> list[str]:
    email = email_of(customer_id)
    return [customer_id, pid(customer_id), email, email_sha256(email), mailchimp_subscriber_hash(email), "Ada", "Lovelace"]


def erase(world: World, customer_id: str, at) -> list:
    request_erasure(world.lake, pid(customer_id), at)
    with EspEraser(world.esp, Runtime(env=SECRETS)) as forget:
        return process_erasures(world.lake, None, at + timedelta(minutes=1), forget=forget)


def test_an_erased_customer_is_deleted_at_every_esp_with_a_pii_free_proof(world):
    assert all(held_by(world, "c006").values()) and all(held_by(world, KEPT).values())
    klaviyo_jobs, sfmc_deletes = len(world.servers["klaviyo"].deletion_jobs), len(world.servers["sfmc"].contact_deletes)

    [proof] = erase(world, "c006", AS_OF)

    assert proof.esp_outcomes == {
        "mailchimp": "deleted",
        "klaviyo": "deletion requested",
        "braze": "deletion requested",
        "sfmc": "deletion requested",
        "webhook": "notified",
        "s3_drop": S3_OUTCOME,
    }
    assert held_by(world, "c006") == dict.fromkeys(world.servers, False)
    assert all(held_by(world, KEPT).values()), "other customers stay at every ESP"
    assert world.servers["webhook"].erased == {"c006"}
    assert world.servers["klaviyo"].deletion_jobs[klaviyo_jobs:] == ["id", "email"]  # our profile, then any with the address
    assert world.servers["sfmc"].contact_deletes[sfmc_deletes:] == [["c006"]]
    [record] = [r.asDict() for r in world.lake.read("erasure_log").collect() if r.request_id == proof.request_id]
    assert json.loads(record["esp_outcomes_json"]) == proof.esp_outcomes
    assert not any(trace in str({k: v for k, v in record.items() if k != "request_id"}) for trace in pii_of("c006"))
    assert local_rows(world, "c006") == {"customers": 0, "segment_membership": 0, "export_log": 0}
    assert world.lake.read("erasure_requests").count() == 0
    for name, server in world.servers.items():
        assert server.violations == [], name


def test_a_failing_esp_keeps_the_request_queued_and_the_lake_untouched_until_a_rerun(world, caplog):
    before = local_rows(world, "c007")
    assert all(before.values()) and all(held_by(world, "c007").values())
    braze = world.servers["braze"]
    braze.inject("POST", "/users/delete", Response(500, {"message": "Internal Server Error"}), times=1000)

    with caplog.at_level(logging.WARNING, logger="lakecdp.privacy.erasure"):
        proofs = erase(world, "c007", AS_OF + timedelta(hours=1))

    assert proofs == []
    [queued] = world.lake.read("erasure_requests").collect()
    assert queued.customer_id == pid("c007")
    assert local_rows(world, "c007") == before, "nothing is deleted locally while an ESP still holds the customer"
    assert held_by(world, "c007")["braze"]
    [warning] = [r.getMessage() for r in caplog.records if r.name == "lakecdp.privacy.erasure" and r.levelno == logging.WARNING]
    assert queued.request_id in warning and "braze" in warning and "HTTP 500" in warning
    assert not any(trace in warning.replace(queued.request_id, "") for trace in pii_of("c007"))

    braze.faults.clear()
    with EspEraser(world.esp, Runtime(env=SECRETS)) as forget:
        [proof] = process_erasures(world.lake, None, AS_OF + timedelta(hours=2), forget=forget)

    assert proof.request_id == queued.request_id
    # Mailchimp deleted the member in the failed run already: asking again finds nothing.
    assert proof.esp_outcomes["mailchimp"] == "not found" and proof.esp_outcomes["braze"] == "deletion requested"
    assert held_by(world, "c007") == dict.fromkeys(world.servers, False)
    assert all(held_by(world, KEPT).values())
    assert local_rows(world, "c007") == {"customers": 0, "segment_membership": 0, "export_log": 0}
    assert world.lake.read("erasure_requests").count() == 0
    for name, server in world.servers.items():
        assert server.violations == [], name


def test_a_customer_without_an_address_is_still_erased_where_an_esp_knows_them_by_id(world):
    [proof] = erase(world, "c005", AS_OF + timedelta(hours=3))  # no email: never exported

    assert proof.esp_outcomes == {
        "mailchimp": "not found",
        "klaviyo": "not found",
        "braze": "not found",
        "sfmc": "deletion requested",
        "webhook": "notified",
        "s3_drop": S3_OUTCOME,
    }
    [notice] = [json.loads(r.body) for r in world.servers["webhook"].requests if b'"c005"' in r.body]
    assert notice == {"destination": "webhook", "event": "customer.erased", "customer_id": "c005", "email_sha256": None}
    assert all(held_by(world, KEPT).values())
    for name, server in world.servers.items():
        assert server.violations == [], name
