"""kill -9 mid-export, then rerun: every member ends in exactly one of sent / failed-with-reason.

`lakecdp export run` runs as a subprocess in its own process group (Spark's JVM included) and is
SIGKILLed the moment the contract servers have applied a seeded random number of deliveries, i.e.
while batches are in flight and before their outcome is in export_log. The webhook receiver
honours Idempotency-Key, so it must apply each member once however often a batch is resent;
Mailchimp has no idempotency keys, so resends are upserts: its audience must hold each member
once and export_log must record each member once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakecdp.config.models import LakeSettings
from lakecdp.export.identifiers import mailchimp_subscriber_hash
from lakecdp.lake import open_lake
from lakecdp.sandbox import MailchimpServer, WebhookServer
from lakecdp.sandbox.scenario import REPO, SECRETS, SEGMENTS, email_of, esp_section, population, write_conf, write_lake
from tests.pseudonyms import pid

pytestmark = [pytest.mark.integration, pytest.mark.extended]

SEED = 20261123
INVALID, FLAKY = "c006", "c007"
SEG0, SEG1 = SEGMENTS


def run_export(conf: Path, env: dict[str, str], log: Path, kill_when: Callable[[], bool] | None, timeout: float = 300) -> int:
    """`lakecdp export run` in its own process group; SIGKILL the group once `kill_when()` holds."""
    command = [sys.executable, "-m", "lakecdp.cli", "--conf", str(conf), "export", "run"]
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            if (kill_when is not None and kill_when()) or time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                assert time.monotonic() <= deadline, f"export run did not finish in {timeout}s; see {log}"
                return -9
            time.sleep(0.002)
        return process.returncode


@pytest.fixture(scope="module")
def crashed_and_resumed(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("export_crash")
    customers, pop = population(48)
    members = {SEG0: [c.customer_id for c in customers], SEG1: [c.customer_id for c in customers[:24]]}
    lake = open_lake(spark, LakeSettings(), root=str(root / "lake"))
    write_lake(spark, lake, customers, members, pop)
    mailchimp = MailchimpServer(
        api_key=SECRETS["LAKECDP_TEST_MAILCHIMP_KEY"],
        list_id="aud1",
        invalid_emails=[email_of(INVALID)],
        flaky_emails=[email_of(FLAKY)],
        latency=0.05,
    ).start()
    webhook = WebhookServer(
        secret=SECRETS["LAKECDP_TEST_WEBHOOK_SECRET"], invalid_customers=[INVALID], flaky_customers=[FLAKY], latency=0.01
    ).start()
    # Mailchimp is exported first, then the webhook: one kill lands in each.
    section = esp_section(
        {"mailchimp": mailchimp.url, "webhook": webhook.url},
        mailchimp={"batch_size": 2, "max_in_flight": 3, "log_flush_batches": 3},
        webhook={"batch_size": 2, "log_flush_batches": 3},
    )
    conf = write_conf(root / "conf", section, lake_root=root / "lake")
    # No global holdout here: the hash test would hold out INVALID and FLAKY, the members this test is about.
    (conf / "local" / "no_holdout.yaml").write_text("experiments:\n  global_holdout:\n    share: 0.0\n")
    env = {**os.environ, **SECRETS, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    env.pop("LAKECDP_CONF_DIR", None)
    expected = {seg: set(ids) & set(pop.contactable) for seg, ids in members.items()}
    per_destination = sum(len(ids) for ids in expected.values())

    rng = random.Random(SEED)
    in_mailchimp, in_webhook = rng.randint(3, per_destination // 2), rng.randint(3, per_destination // 2)
    log = root / "export.log"
    try:
        outcomes = [
            run_export(conf, env, log, lambda: sum(mailchimp.deliveries.values()) >= in_mailchimp),
            run_export(conf, env, log, lambda: sum(webhook.raw_deliveries.values()) >= in_webhook),
        ]
        # The rerun that finishes the job: the same command's handler, in this process (saves a JVM start).
        outcomes.append(run_export_command(conf, env))
    finally:
        webhook.stop()
        mailchimp.stop()
    yield lake, webhook, mailchimp, expected, outcomes, log


def run_export_command(conf: Path, env: dict[str, str]) -> int:
    import argparse

    from lakecdp.config import load_settings
    from lakecdp.export import commands

    parser = argparse.ArgumentParser(prog="lakecdp")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", "run"])
    saved = {k: os.environ.get(k) for k in SECRETS}
    os.environ.update(SECRETS)
    try:
        return args.handler(args, load_settings(conf, env={}))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_runs_were_killed_mid_export_and_the_last_one_finished(crashed_and_resumed):
    _, webhook, mailchimp, _, outcomes, log = crashed_and_resumed
    assert outcomes[:2] == [-9, -9], log.read_text()[-3000:]
    assert outcomes[2] == 0
    assert webhook.violations == [] and mailchimp.violations == []
    assert webhook.replays > 0 or sum(webhook.raw_deliveries.values()) == sum(webhook.deliveries.values())


def test_every_member_is_recorded_once_as_sent_or_failed_with_a_reason(crashed_and_resumed):
    lake, _, _, expected, _, _ = crashed_and_resumed
    retailer_id = {pid(c): c for ids in expected.values() for c in ids}
    rows = [{**r.asDict(), "customer_id": retailer_id[r.customer_id]} for r in lake.read("export_log").collect()]
    terminal = [r for r in rows if r["state"] != "pending"]
    per_member = Counter((r["destination"], r["segment"], r["customer_id"]) for r in terminal)
    planned = Counter((r["destination"], r["segment"], r["customer_id"]) for r in rows if r["state"] == "pending")
    want = {(d, seg, cid) for d in ("webhook", "mailchimp") for seg, ids in expected.items() for cid in ids}
    assert set(per_member) == want and set(per_member.values()) == {1}  # none lost, none recorded twice
    assert set(planned.values()) == {1}  # nobody planned twice across runs
    failed = {(r["destination"], r["customer_id"]) for r in terminal if r["state"] == "failed"}
    assert {cid for _, cid in failed} == {INVALID} and all(r["reason"] for r in terminal if r["state"] == "failed")
    unfinished = lake.read("export_log").groupBy("batch_id").agg(F.count(F.when(F.col("state") != "pending", 1)).alias("done"))
    assert unfinished.filter("done = 0").count() == 0


def test_the_idempotent_webhook_applied_each_member_exactly_once(crashed_and_resumed):
    _, webhook, _, expected, _, _ = crashed_and_resumed
    sent = {seg: ids - {INVALID} for seg, ids in expected.items()}
    assert webhook.members == sent
    per_customer = Counter(cid for ids in sent.values() for cid in ids)
    assert dict(webhook.deliveries) == dict(per_customer)  # resends were replays, not deliveries
    assert sum(webhook.raw_deliveries.values()) >= sum(per_customer.values())


def test_mailchimp_resends_were_harmless_upserts(crashed_and_resumed):
    _, _, mailchimp, expected, _, _ = crashed_and_resumed
    sent = {seg: ids - {INVALID} for seg, ids in expected.items()}
    for segment, ids in sent.items():
        assert mailchimp.tagged(f"lakecdp_{segment}") == {email_of(c) for c in ids}
    assert set(mailchimp.members) == {mailchimp_subscriber_hash(email_of(c)) for c in sent[SEG0]}  # each address once
    resends = sum(mailchimp.deliveries.values()) - sum(len(ids) for ids in sent.values())
    assert resends >= 0  # > 0 when the kill fell between a send and its log commit (seed-dependent)
    print(f"mailchimp: {resends} member upserts resent after the kill; webhook: {webhook_replays(crashed_and_resumed)} replays")


def webhook_replays(story) -> int:
    return story[1].replays
