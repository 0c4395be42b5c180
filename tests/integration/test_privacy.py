"""Consent ledger, the admin-only privacy commands, the access bundle and PII access logging.

(The planted-PII scan of everything the demo prints is in test_demo.py.)"""

from __future__ import annotations

import hashlib
import io
import json
import re
from contextlib import redirect_stdout
from datetime import timedelta
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakecdp.cli import main
from lakecdp.clock import FrozenClock
from lakecdp.config import load_settings
from lakecdp.lake import open_lake
from lakecdp.privacy.ledger import PERSONALIZATION, PROFILING, refused_ids
from lakecdp.stream import run_stream
from tests.worlds import END, copy_world, stream_planted

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token-5d1e"


def consent_lines(end, customers: list[str]) -> str:
    a, b, c = customers[:3]

    def at(hours):
        return (end - timedelta(hours=hours)).isoformat().replace("+00:00", "Z")

    events = [
        {"type": "identify", "messageId": "consent-1", "userId": a, "timestamp": at(5), "traits": {"consent": {"profiling": False}}},
        {
            "type": "track",
            "event": "Consent Updated",
            "messageId": "consent-2",
            "userId": b,
            "timestamp": at(4),
            "properties": {"purpose": "personalization", "status": "withdrawn", "channel": "web"},
        },
        {"type": "track", "event": "Subscribed", "messageId": "consent-3", "userId": c, "timestamp": at(3)},
        {"type": "track", "event": "Unsubscribed", "messageId": "consent-4", "userId": c, "timestamp": at(2)},
        {
            "type": "track",
            "event": "Consent Updated",
            "messageId": "consent-5",
            "userId": c,
            "timestamp": at(1),
            "properties": {"purpose": "teleportation", "status": "granted"},
        },  # not a purpose: no fact
    ]
    return "".join(json.dumps(e) + "\n" for e in events)


@pytest.fixture(scope="module")
def world(spark, demo_world, tmp_path_factory):
    root = copy_world(demo_world, tmp_path_factory.mktemp("privacy"))
    settings = load_settings(env={})
    lake = open_lake(spark, settings.lake, root=str(root / "lake"))
    customers = sorted(r.customer_id for r in lake.with_plain_contacts(lake.read("customers")).collect())
    planted = stream_planted(spark, lake, settings, root, "consent.jsonl", consent_lines(END, customers))
    return {"lake": lake, "root": root, "customers": customers, "settings": settings, "end": END, "planted": planted}


def ledger(lake, customer: str) -> list[dict]:
    """The customer's facts from the CRM import and the planted events (not the generator's own)."""
    facts = lake.read("consent_ledger").filter(F.col("customer_id") == customer).orderBy("recorded_at").collect()
    return [f.asDict() for f in facts if f.source.startswith("import:") or f.proof.startswith("message:consent-")]


def test_every_source_of_consent_lands_in_the_ledger_with_its_proof(world):
    lake, (a, b, c) = world["lake"], world["customers"][:3]
    crm = lake.with_plain_contacts(lake.read("customers")).filter(F.col("customer_id") == a).first()
    facts = ledger(lake, a)
    assert [(f["purpose"], f["status"], f["source"]) for f in facts] == [
        (PROFILING, "withdrawn", "identify traits"),
        ("email_marketing", "granted" if crm.marketing_opt_in else "withdrawn", "import:crm-import"),
    ]
    assert facts[0]["proof"] == "message:consent-1" and facts[1]["proof"].startswith(f"crm:{a}@")
    assert [(f["purpose"], f["channel"], f["status"]) for f in ledger(lake, b) if f["source"] != "import:crm-import"] == [
        (PERSONALIZATION, "web", "withdrawn")
    ]
    c_facts = [(f["purpose"], f["status"], f["source"]) for f in ledger(lake, c) if f["source"] != "import:crm-import"]
    assert c_facts == [("email_marketing", "granted", "event:Subscribed"), ("email_marketing", "withdrawn", "event:Unsubscribed")]
    assert refused_ids(lake, PROFILING) == [a] and refused_ids(lake, PERSONALIZATION) == [b]


def test_replaying_the_events_adds_no_fact(world, spark, tmp_path):
    lake, settings = world["lake"], world["settings"]
    before = lake.read("consent_ledger").count()
    run_stream(spark, lake, settings, source=str(world["planted"]), checkpoint=str(tmp_path / "fresh"), clock=FrozenClock(world["end"]))
    assert lake.read("consent_ledger").count() == before


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["--conf", str(REPO / "conf"), *argv])
    return code, out.getvalue()


def test_privacy_commands_need_the_admin_token(world, monkeypatch, capsys):
    lake_root = str(world["root"] / "lake")
    monkeypatch.delenv("LAKECDP_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("LAKECDP_TOKEN", raising=False)
    assert run_cli("privacy", "consent", world["customers"][0], "--lake", lake_root)[0] == 2
    refusal = capsys.readouterr().err
    assert "`lakecdp privacy consent` needs scope privacy:admin, which the local operator" in refusal
    assert "roles holding it: admin, privacy_officer" in refusal and "lakecdp access new-token --role privacy_officer" in refusal
    monkeypatch.setenv("LAKECDP__PRIVACY__ADMIN_TOKEN_SHA256", hashlib.sha256(TOKEN.encode()).hexdigest())
    assert run_cli("privacy", "access", world["customers"][0], "--lake", lake_root, "--token", "wrong")[0] == 2
    assert "the token matches no entry of access.tokens (nor privacy.admin_token_sha256)" in capsys.readouterr().err


def test_consent_command_shows_the_history_and_what_is_enforced(world, monkeypatch):
    monkeypatch.setenv("LAKECDP__PRIVACY__ADMIN_TOKEN_SHA256", hashlib.sha256(TOKEN.encode()).hexdigest())
    monkeypatch.setenv("LAKECDP_ADMIN_TOKEN", TOKEN)
    code, text = run_cli("privacy", "consent", world["customers"][2], "--lake", str(world["root"] / "lake"), "--json")
    report = json.loads(text)
    assert code == 0
    assert report["current"]["email_marketing"] == {"status": "withdrawn", "why": "unsubscribed after latest opt-in"} or (
        report["current"]["email_marketing"]["why"] == "no marketing opt-in"
    )
    assert report["current"][PROFILING]["status"] == "granted"
    planted = [f["proof"] for f in report["history"] if f["proof"].startswith("message:consent-")]
    assert planted == ["message:consent-3", "message:consent-4"]


def test_access_bundle_holds_the_customer_everywhere_and_the_read_is_logged(world, monkeypatch, tmp_path):
    monkeypatch.setenv("LAKECDP__PRIVACY__ADMIN_TOKEN_SHA256", hashlib.sha256(TOKEN.encode()).hexdigest())
    monkeypatch.setenv("LAKECDP_ACTOR", "dpo@retailer")
    lake, customer = world["lake"], world["customers"][1]
    out = tmp_path / "bundle.json"
    code, text = run_cli("privacy", "access", customer, "--lake", lake.root, "--token", TOKEN, "--out", str(out))
    assert code == 0 and "access bundle written" in text
    bundle = json.loads(out.read_text())
    email = lake.with_plain_contacts(lake.read("customers")).filter(F.col("customer_id") == customer).first().email
    assert bundle["tables"]["customers"][0]["email"] == email
    assert {"events", "profile_features", "consent_ledger", "customers"} <= set(bundle["tables"])
    assert len(bundle["tables"]["events"]) == lake.read("events").filter(F.col("customer_id") == customer).count()
    logged = [r.asDict() for r in lake.read("pii_access_log").filter(F.col("action") == "privacy access").collect()]
    assert [(r["actor"], r["customer_id"]) for r in logged] == [("dpo@retailer", customer)]
    assert email not in json.dumps(logged, default=str)


def test_sql_on_contact_tables_is_logged(world, monkeypatch):
    monkeypatch.setenv("LAKECDP_ACTOR", "analyst")
    lake = world["lake"]
    code, _ = run_cli("sql", "--engine", "duckdb", "--lake", lake.root, "select count(*) from customers")
    assert code == 0
    logged = lake.read("pii_access_log").filter(F.col("action") == "sql (duckdb)").collect()
    assert [(r.actor, r.tables) for r in logged] == [("analyst", "customers")]


ROLE_TOKENS = {"analyst": "lakecdp_test-analyst", "privacy_officer": "lakecdp_test-dpo", "engineer": "lakecdp_test-engineer"}


@pytest.fixture
def role_tokens(monkeypatch):
    """access.tokens configured (through the environment, as conf/local would): enforcement is on."""
    entries = [{"name": f"test-{role}", "role": role, "sha256": hashlib.sha256(t.encode()).hexdigest()} for role, t in ROLE_TOKENS.items()]
    monkeypatch.setenv("LAKECDP__ACCESS__TOKENS", json.dumps(entries))  # JSON is YAML
    for name in ("LAKECDP_TOKEN", "LAKECDP_ADMIN_TOKEN", "LAKECDP_ACTOR"):
        monkeypatch.delenv(name, raising=False)
    return ROLE_TOKENS


def test_a_command_outside_the_callers_role_is_refused_before_it_runs(world, role_tokens, capsys):
    lake, customer = world["lake"], world["customers"][4]
    code, out = run_cli("privacy", "erase", customer, "--lake", lake.root, "--token", role_tokens["analyst"])
    refusal = capsys.readouterr().err
    assert (code, out) == (2, "")
    assert "`lakecdp privacy erase` needs scope privacy:admin, which role analyst lacks" in refusal
    assert "--role privacy_officer" in refusal
    assert not lake.exists("erasure_requests") or lake.read("erasure_requests").count() == 0
    assert run_cli("status", "--lake", lake.root)[0] == 2  # tokens configured: no token, no command
    assert "`lakecdp status` needs scope lake:read, which a caller without a token lacks" in capsys.readouterr().err


def test_a_command_inside_the_callers_role_runs(world, role_tokens, monkeypatch):
    code, text = run_cli(
        "privacy", "consent", world["customers"][2], "--lake", world["lake"].root, "--json", "--token", role_tokens["privacy_officer"]
    )
    assert code == 0 and json.loads(text)["current"][PROFILING]["status"] == "granted"
    monkeypatch.setenv("LAKECDP_TOKEN", role_tokens["engineer"])
    code, text = run_cli("access", "whoami")
    assert code == 0 and text.startswith("test-engineer: role engineer; scopes collector:admin, experiments:run")


@pytest.mark.parametrize("engine", ["spark", "duckdb"])
def test_analysts_never_see_contact_columns(world, role_tokens, engine):
    lake = world["lake"]
    crm = lake.read("customers").collect()
    contacts = [value for row in crm for value in (row.email, row.first_name, row.last_name, row.external_id) if value]
    rows = "SELECT customer_id, external_id, email, first_name, last_name, country FROM customers ORDER BY customer_id"
    shown = "SELECT count(email) + count(first_name) + count(last_name) + count(external_id) AS shown FROM customers"

    def sql(role: str, query: str) -> str:
        code, text = run_cli("sql", query, "--engine", engine, "--lake", lake.root, "--limit", "100", "--token", role_tokens[role])
        assert code == 0
        return text

    assert re.findall(r"\b\d+\b", sql("privacy_officer", shown)) == [str(len(contacts))]  # masking follows the role
    assert re.findall(r"\b\d+\b", sql("analyst", shown)) == ["0"]
    analyst = sql("analyst", rows)
    assert [c for c in contacts if c in analyst] == []
    assert sum(row.customer_id in analyst for row in crm) >= 10  # the rows are there, their contacts null
    logged = lake.read("pii_access_log").filter(F.col("action") == f"sql ({engine})").filter(F.col("actor").startswith("test-"))
    assert sorted((r.actor, r.role) for r in logged.collect()) == [
        ("test-analyst", "analyst"),
        ("test-analyst", "analyst"),
        ("test-privacy_officer", "privacy_officer"),
    ]


def test_an_analyst_cannot_read_the_lakes_files_around_the_masking(world, role_tokens):
    import duckdb
    from pyspark.errors import AnalysisException

    from lakecdp.privacy.roles import resolve_principal
    from lakecdp.query import run_query

    settings, root = load_settings(REPO / "conf"), world["lake"].root
    analyst = resolve_principal(settings.access, settings.privacy, role_tokens["analyst"])
    with pytest.raises(AnalysisException):
        run_query(settings, f"SELECT email FROM delta.`{root}/customers`", lake_root=root, engine="spark", limit=5, principal=analyst)
    with pytest.raises(duckdb.InvalidInputException, match="configuration has been locked"):
        run_query(settings, "SET enable_external_access = true; SELECT 1", lake_root=root, engine="duckdb", limit=5, principal=analyst)
    with pytest.raises(duckdb.PermissionException):
        run_query(
            settings,
            f"SELECT email FROM read_parquet('{root}/customers/*.parquet')",
            lake_root=root,
            engine="duckdb",
            limit=5,
            principal=analyst,
        )
    officer = resolve_principal(settings.access, settings.privacy, role_tokens["privacy_officer"])
    direct = run_query(
        settings, f"SELECT count(email) AS n FROM delta.`{root}/customers`", lake_root=root, engine="spark", limit=5, principal=officer
    )
    assert f"|{len(world['customers'])}|" in direct.replace(" ", "")


def test_profile_show_holds_no_contact_data_for_an_analyst(world, role_tokens):
    lake, customer = world["lake"], world["customers"][1]
    row = lake.read("customers").filter(F.col("customer_id") == customer).first()
    code, text = run_cli("profile", "show", customer, "--lake", lake.root, "--token", role_tokens["analyst"])
    assert code == 0 and f"profile of {customer}" in text and "customer.country" in text
    assert [v for v in (row.email, row.first_name, row.last_name, row.external_id) if v and v in text] == []


def test_the_access_log_gains_the_role_column_on_a_lake_written_before_roles(spark, tmp_path):
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from lakecdp.privacy.access import log_pii_access
    from lakecdp.privacy.roles import ROLES, Principal

    before_roles = pa.table(
        {
            "access_id": ["old"],
            "actor": ["ops"],
            "action": ["privacy access"],
            "customer_id": pa.array([None], pa.string()),
            "tables": ["customers"],
            "rows": pa.array([1], pa.int64()),
            "accessed_at": pa.array([END], pa.timestamp("us", tz="UTC")),
        }
    )
    write_deltalake(str(tmp_path / "pii_access_log"), before_roles)
    log_pii_access(str(tmp_path), None, "sql (duckdb)", None, ["customers"], 0, END, Principal("ann", "analyst", ROLES["analyst"]))
    rows = sorted(DeltaTable(str(tmp_path / "pii_access_log")).to_pyarrow_table().to_pylist(), key=lambda r: r["access_id"] == "old")
    assert [(r["actor"], r["role"]) for r in rows] == [("ann", "analyst"), ("ops", None)]
    lake = open_lake(spark, load_settings(env={}).lake, root=str(tmp_path))
    assert sorted(lake.read("pii_access_log").select("role").collect(), key=str) == sorted([(None,), ("analyst",)], key=str)


def test_content_falls_back_for_a_customer_who_withdrew_personalization(world):
    from lakecdp.content.settings import parse_content_settings
    from lakecdp.content.store import PERSONALIZATION_WITHDRAWN, SnapshotLoader

    settings, (a, b) = world["settings"], world["customers"][:2]
    snapshot = SnapshotLoader(world["lake"].root, parse_content_settings(settings.content), FrozenClock(world["end"])).load()
    assert snapshot.get(b).block_reason == PERSONALIZATION_WITHDRAWN
    assert snapshot.get(a).block_reason != PERSONALIZATION_WITHDRAWN
