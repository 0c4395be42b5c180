"""Roles and scoped tokens: token verification, role -> scope checks, every command's declared scope, contact masking."""

from __future__ import annotations

import typing
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from pyspark.sql import types as T

from lakecdp.cli import build_parser, leaf_commands
from lakecdp.cli_scopes import COMMAND_SCOPES
from lakecdp.config import ConfigError, load_settings
from lakecdp.config.models import AccessSettings, CustomerSettings, RoleName
from lakecdp.privacy.roles import (
    ANONYMOUS,
    LOCAL_OPERATOR,
    ROLES,
    AccessDenied,
    Credential,
    Scope,
    authorize,
    bearer_token,
    digest_of,
    new_token,
    presented_token,
    require_declared,
    resolve_principal,
)

ANALYST_TOKEN, OFFICER_TOKEN, LEGACY_TOKEN = "lakecdp_analyst-1", "lakecdp_officer-1", "lakecdp_legacy-1"
CONFIGURED = AccessSettings.model_validate(
    {
        "tokens": [
            {"name": "ann", "role": "analyst", "sha256": digest_of(ANALYST_TOKEN)},
            {"name": "dpo", "role": "privacy_officer", "sha256": digest_of(OFFICER_TOKEN).upper()},
        ]
    }
)


def test_every_command_declares_a_scope_and_the_table_names_only_real_commands():
    commands = dict(leaf_commands(build_parser()))
    assert len(commands) > 50 and "privacy erase" in commands and "experiments holdout draw" in commands
    assert sorted(set(commands) - set(COMMAND_SCOPES)) == []  # a command nobody declared a scope for
    assert sorted(set(COMMAND_SCOPES) - set(commands)) == []  # a stale entry for a command that is gone
    without_token = [path for path, parser in commands.items() if "--token" not in parser._option_string_actions]
    assert without_token == []


def test_every_command_takes_a_token_and_knows_its_own_path():
    args = build_parser().parse_args(["privacy", "access", "cust_1", "--token", "lakecdp_x"])
    assert (args.token, args.command_path) == ("lakecdp_x", "privacy access")
    assert build_parser().parse_args(["sql", "select 1"]).token is None


def test_the_role_table_covers_the_configurable_roles():
    assert set(ROLES) == set(typing.get_args(RoleName))
    assert ROLES["admin"] == frozenset(Scope)
    assert Scope.PII_READ not in ROLES["analyst"] and Scope.PII_READ in ROLES["privacy_officer"]
    holders = {scope: {role for role, scopes in ROLES.items() if scope in scopes} for scope in Scope}
    assert all(holders[scope] - {"admin"} for scope in Scope)  # each scope reaches a role besides admin


def test_configured_tokens_resolve_to_their_name_and_role():
    analyst = resolve_principal(CONFIGURED, {}, ANALYST_TOKEN)
    assert (analyst.name, analyst.role, analyst.scopes) == ("ann", "analyst", ROLES["analyst"])
    assert resolve_principal(CONFIGURED, {}, OFFICER_TOKEN).role == "privacy_officer"  # digest compared lower-case
    with pytest.raises(AccessDenied, match="matches no entry of access.tokens") as refused:
        resolve_principal(CONFIGURED, {}, "lakecdp_guess")
    assert refused.value.status == 401


def test_without_a_token_the_caller_is_the_local_operator_until_tokens_are_configured():
    assert resolve_principal(AccessSettings(), {}, None) == LOCAL_OPERATOR
    assert resolve_principal(CONFIGURED, {}, None) == ANONYMOUS
    assert Scope.PIPELINE_RUN in LOCAL_OPERATOR.scopes
    assert not {Scope.PII_READ, Scope.PRIVACY_ADMIN, Scope.COLLECTOR_ADMIN} & LOCAL_OPERATOR.scopes
    with pytest.raises(AccessDenied, match="no token is configured"):
        resolve_principal(AccessSettings(), {}, ANALYST_TOKEN)


def test_the_legacy_admin_digest_still_means_admin_without_switching_enforcement_on():
    legacy = {"admin_token_sha256": digest_of(LEGACY_TOKEN)}
    admin = resolve_principal(AccessSettings(), legacy, LEGACY_TOKEN)
    assert (admin.role, admin.legacy, admin.scopes) == ("admin", True, frozenset(Scope))
    assert resolve_principal(AccessSettings(), legacy, None) == LOCAL_OPERATOR
    assert resolve_principal(CONFIGURED, legacy, LEGACY_TOKEN).role == "admin"
    with pytest.raises(AccessDenied, match="matches no entry"):
        resolve_principal(AccessSettings(), legacy, "lakecdp_wrong")


def test_a_refusal_names_the_scope_the_roles_holding_it_and_the_fix():
    analyst = resolve_principal(CONFIGURED, {}, ANALYST_TOKEN)
    authorize(analyst, Scope.LAKE_READ, "`lakecdp sql`")
    authorize(ANONYMOUS, Credential.PUBLIC, "`lakecdp access roles`")
    with pytest.raises(AccessDenied) as refused:
        authorize(analyst, Scope.PRIVACY_ADMIN, "`lakecdp privacy erase`")
    message = str(refused.value)
    assert "`lakecdp privacy erase` needs scope privacy:admin, which role analyst lacks" in message
    assert "roles holding it: admin, privacy_officer" in message
    assert "lakecdp access new-token --role privacy_officer" in message and refused.value.status == 403
    with pytest.raises(AccessDenied, match="a caller without a token") as anonymous:
        authorize(ANONYMOUS, Scope.LAKE_READ, "`lakecdp status`")
    assert anonymous.value.status == 401 and "--role analyst" in str(anonymous.value)
    with pytest.raises(AccessDenied, match="the local operator"):
        authorize(LOCAL_OPERATOR, Scope.PII_READ, "`lakecdp sql`")


def test_the_token_comes_from_the_option_then_the_environment():
    env = {"LAKECDP_TOKEN": "from-env", "LAKECDP_ADMIN_TOKEN": "legacy"}
    assert presented_token("explicit", env) == "explicit"
    assert presented_token(None, env) == "from-env"
    assert presented_token(None, {"LAKECDP_ADMIN_TOKEN": "legacy"}) == "legacy"
    assert presented_token(None, {}) is None


def test_new_tokens_are_unique_and_only_their_digest_is_configured():
    (a, digest_a), (b, _) = new_token(), new_token()
    assert a != b and a.startswith("lakecdp_") and digest_a == digest_of(a) and a not in digest_a
    assert resolve_principal(AccessSettings.model_validate({"tokens": [{"name": "x", "role": "engineer", "sha256": digest_a}]}), {}, a)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"name": "ann", "role": "intern", "sha256": "a" * 64}, "access.tokens.0.role: Input should be 'admin', 'privacy_officer'"),
        ({"name": "ann", "role": "analyst", "sha256": "lakecdp_oops"}, "not a SHA-256 hex digest"),
        ({"name": "ann", "role": "analyst"}, "access.tokens.0.sha256: Field required"),
    ],
)
def test_a_bad_token_entry_fails_at_load_naming_file_key_and_fix(tmp_path, entry, expected):
    from pathlib import Path

    import yaml

    conf = tmp_path / "conf"
    (conf / "base").mkdir(parents=True)
    (conf / "local").mkdir()
    (conf / "base" / "access.yaml").write_text((Path(__file__).resolve().parents[2] / "conf/base/access.yaml").read_text())
    (conf / "local" / "access.yaml").write_text(yaml.safe_dump({"access": {"tokens": [entry]}}))
    with pytest.raises(ConfigError) as failed:
        load_settings(conf, env={})
    assert expected in str(failed.value)
    assert str(conf / "local" / "access.yaml") in str(failed.value) and "Fix:" in str(failed.value)


def test_two_holders_never_share_a_token():
    twice = [{"name": n, "role": "analyst", "sha256": "b" * 64} for n in ("ann", "bob")]
    with pytest.raises(ValueError, match="two tokens share a sha256"):
        AccessSettings.model_validate({"tokens": twice})


def test_bearer_headers():
    assert bearer_token("Bearer lakecdp_abc") == "lakecdp_abc"
    assert bearer_token("bearer  lakecdp_abc ") == "lakecdp_abc"
    assert bearer_token("Basic dXNlcjo=") is None and bearer_token(None) is None and bearer_token("Bearer ") is None


def test_an_app_route_without_a_declared_scope_is_refused():
    from starlette.routing import Route

    from lakecdp.collector.app import ROUTE_ACCESS as COLLECTOR
    from lakecdp.content.api import ROUTE_ACCESS as CONTENT

    assert CONTENT["/v1/content/{customer_id}"] is Scope.CONTENT_READ
    assert COLLECTOR["/v1/track"] is Credential.SOURCE_WRITE_KEY and COLLECTOR["/v1/c/{token}"] is Credential.SIGNED_LINK

    async def endpoint(request):  # never called
        raise AssertionError

    require_declared([Route("/healthz", endpoint)], CONTENT)
    with pytest.raises(ValueError, match=r"routes \['/v1/admin'\] declare no scope"):
        require_declared([Route("/healthz", endpoint), Route("/v1/admin", endpoint)], CONTENT)


PII_CUSTOMERS = CustomerSettings.model_validate(
    {
        "attributes": {"phone": {"pii": True}, "loyalty_tier": {}},
        "enrichment": {
            "sources": {
                "vendor": {"legal_basis": "consent", "attributes": {"company_size": {"type": "int"}, "home_address": {"pii": True}}}
            }
        },
    }
)


def customer_rows(at: datetime) -> list[tuple]:
    return [
        ("pc_1", "cust_1", "ann@example.com", "Ann", "Lee", "DE", "+49 30 1234567", "gold", at),
        ("pc_2", None, None, None, None, None, None, None, at),
    ]


CUSTOMER_COLUMNS = ["customer_id", "external_id", "email", "first_name", "last_name", "country", "phone", "loyalty_tier", "updated_at"]
ENRICHMENT_ROWS = [
    ("pc_1", "vendor", "company_size", "120"),
    ("pc_1", "vendor", "home_address", "1 Main St"),
    ("pc_2", "vendor", None, None),
]


def test_spark_masking_nulls_contact_columns_and_personal_enrichment_values(spark):
    from lakecdp.privacy.masking import without_contacts

    at = datetime(2026, 11, 1, tzinfo=UTC)
    schema = T.StructType([T.StructField(c, T.TimestampType() if c == "updated_at" else T.StringType()) for c in CUSTOMER_COLUMNS])
    masked = without_contacts(spark.createDataFrame(customer_rows(at), schema), "customers", PII_CUSTOMERS)
    assert masked.columns == CUSTOMER_COLUMNS and masked.schema == schema
    assert [tuple(r)[:8] for r in masked.orderBy("customer_id").collect()] == [
        ("pc_1", None, None, None, None, "DE", None, "gold"),
        ("pc_2", None, None, None, None, None, None, None),
    ]
    enrichment = spark.createDataFrame(ENRICHMENT_ROWS, "customer_id string, source string, attribute string, value string")
    values = {(r.attribute, r.value) for r in without_contacts(enrichment, "customer_enrichment", PII_CUSTOMERS).collect()}
    assert values == {("company_size", "120"), ("home_address", None), (None, None)}


def test_duckdb_masking_is_the_same_projection():
    import duckdb

    from lakecdp.privacy.masking import duckdb_projection

    at = datetime(2026, 11, 1, tzinfo=UTC)
    connection = duckdb.connect()
    customers = pa.Table.from_pylist([dict(zip(CUSTOMER_COLUMNS, row)) for row in customer_rows(at)])
    relation = connection.from_arrow(customers)
    projection = duckdb_projection("customers", relation.columns, dict(zip(relation.columns, map(str, relation.types))), PII_CUSTOMERS)
    assert projection is not None
    masked = relation.project(projection).order("customer_id")
    assert masked.columns == CUSTOMER_COLUMNS
    assert [row[:8] for row in masked.fetchall()] == [
        ("pc_1", None, None, None, None, "DE", None, "gold"),
        ("pc_2", None, None, None, None, None, None, None),
    ]
    enrichment = connection.from_arrow(
        pa.Table.from_pylist([dict(zip(("customer_id", "source", "attribute", "value"), r)) for r in ENRICHMENT_ROWS])
    )
    enrichment_projection = duckdb_projection("customer_enrichment", enrichment.columns, {}, PII_CUSTOMERS)
    assert enrichment_projection is not None
    assert set(enrichment.project(enrichment_projection).project("attribute, value").fetchall()) == {
        ("company_size", "120"),
        ("home_address", None),
        (None, None),
    }
    assert duckdb_projection("profile_features", ["customer_id"], {"customer_id": "VARCHAR"}, PII_CUSTOMERS) is None


def test_the_cli_refuses_before_the_handler_and_nested_commands_run_as_their_caller(monkeypatch, capsys):
    from pathlib import Path

    from lakecdp.cli import main
    from lakecdp.privacy.roles import Principal, acting_as

    conf = str(Path(__file__).resolve().parents[2] / "conf")
    for name in ("LAKECDP_TOKEN", "LAKECDP_ADMIN_TOKEN", "LAKECDP__ACCESS__TOKENS", "LAKECDP__PRIVACY__ADMIN_TOKEN_SHA256"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--conf", conf, "privacy", "consent", "cust_1", "--lake", "/nonexistent"]) == 2
    assert "needs scope privacy:admin, which the local operator" in capsys.readouterr().err
    assert main(["--conf", conf, "access", "whoami"]) == 0
    assert capsys.readouterr().out.startswith("(unnamed): role local; scopes content:read")
    with acting_as(Principal("ann", "analyst", ROLES["analyst"])):
        assert main(["--conf", conf, "access", "whoami"]) == 0
        assert capsys.readouterr().out == "ann: role analyst; scopes lake:read\n"
        assert main(["--conf", conf, "stream", "run", "--lake", "/nonexistent"]) == 2
        assert "`lakecdp stream run` needs scope pipeline:run, which role analyst lacks" in capsys.readouterr().err


def test_new_token_prints_the_token_once_and_a_conf_line_that_accepts_it(capsys):
    from pathlib import Path

    import yaml

    from lakecdp.cli import main

    conf = str(Path(__file__).resolve().parents[2] / "conf")
    assert main(["--conf", conf, "access", "new-token", "--role", "marketer", "--name", "mia"]) == 0
    lines = capsys.readouterr().out.splitlines()
    token = lines[0].rsplit(" ", 1)[1]
    entry = yaml.safe_load(lines[2].strip().removeprefix("- "))
    assert entry["name"] == "mia" and entry["role"] == "marketer" and token not in "\n".join(lines[1:])
    principal = resolve_principal(AccessSettings.model_validate({"tokens": [entry]}), {}, token)
    assert (principal.name, principal.role) == ("mia", "marketer")
    assert main(["--conf", conf, "access", "new-token", "--role", "analyst", "--name", "ann lee"]) == 2
    assert "--name 'ann lee'" in capsys.readouterr().err


def test_the_legacy_admin_token_still_works_from_the_cli_with_a_deprecation_warning(monkeypatch, capsys, caplog):
    from pathlib import Path

    from lakecdp.cli import main

    conf = str(Path(__file__).resolve().parents[2] / "conf")
    monkeypatch.delenv("LAKECDP_TOKEN", raising=False)
    monkeypatch.delenv("LAKECDP__ACCESS__TOKENS", raising=False)
    monkeypatch.setenv("LAKECDP__PRIVACY__ADMIN_TOKEN_SHA256", digest_of(LEGACY_TOKEN))
    monkeypatch.setenv("LAKECDP_ADMIN_TOKEN", LEGACY_TOKEN)
    with caplog.at_level("WARNING"):
        assert main(["--conf", conf, "access", "whoami"]) == 0
    assert capsys.readouterr().out.startswith("(unnamed): role admin; scopes collector:admin, content:read")
    assert "privacy.admin_token_sha256 and $LAKECDP_ADMIN_TOKEN are deprecated" in caplog.text
