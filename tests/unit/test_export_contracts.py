"""The Klaviyo contract files as validators: what our adapter builds passes, a broken request fails."""

from __future__ import annotations

import pytest

from lakecdp.export.adapters.klaviyo import profile_document
from lakecdp.export.batches import Member
from lakecdp.sandbox.openapi import CONTRACTS_DIR, allow_nulls, load_operations

pytestmark = pytest.mark.skipif(not (CONTRACTS_DIR / "klaviyo").is_dir(), reason=f"Klaviyo contracts not found in {CONTRACTS_DIR}")


@pytest.fixture(scope="module")
def operations():
    return {op.operation_id: op for op in load_operations(CONTRACTS_DIR / "klaviyo")}


def job(profiles, lists=("L1",)):
    return {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": profiles}},
            "relationships": {"lists": {"data": [{"type": "list", "id": i} for i in lists]}},
        }
    }


def test_every_operation_file_loads_with_its_rate_limits(operations):
    assert {
        "bulk_import_profiles",
        "get_bulk_import_profiles_job",
        "get_errors_for_bulk_import_profiles_job",
        "remove_profiles_from_list",
        "add_profiles_to_list",
    } <= set(operations)
    assert operations["bulk_import_profiles"].rate_limits == [(10, 1.0), (150, 60.0)]
    assert operations["bulk_import_profiles"].media_type == "application/vnd.api+json"
    revision = [p for p in operations["bulk_import_profiles"].parameters if p.name == "revision"]
    assert revision and revision[0].required and revision[0].location == "header"


def test_the_adapters_profiles_validate_including_nulls(operations):
    member = Member("c1", "create", "c1", "h", "ada@example.com", {"first_name": "Ada", "last_name": None, "country": "GB", "city": None})
    body = job([profile_document(member, ["first_name", "last_name", "country", "city"])])
    assert operations["bulk_import_profiles"].body_errors(body) == []


@pytest.mark.parametrize(
    ("broken", "where"),
    [
        ({"data": {"type": "profile-bulk-import-job"}}, "/data"),  # attributes required
        (job([{"type": "person", "attributes": {"email": "a@b.co"}}]), "/data/attributes/profiles/data/0/type"),
        (job([{"type": "profile", "attributes": {"email": 42}}]), "/data/attributes/profiles/data/0/attributes/email"),
        (
            job([{"type": "profile", "attributes": {"location": {"latitude": True}}}]),
            "/data/attributes/profiles/data/0/attributes/location",
        ),
    ],
)
def test_a_request_that_breaks_the_schema_is_caught(operations, broken, where):
    errors = operations["bulk_import_profiles"].body_errors(broken)
    assert errors and any(e.startswith(where) for e in errors), errors


def test_nullable_becomes_a_null_alternative():
    converted = allow_nulls({"type": "string", "nullable": True, "enum": ["a"]})
    assert converted == {"type": ["string", "null"], "enum": ["a", None]}
    assert allow_nulls({"$ref": "#/x", "nullable": True}) == {"anyOf": [{"$ref": "#/x"}, {"type": "null"}]}


def test_response_documents_are_checked_too(operations):
    op = operations["get_bulk_import_profiles_job"]
    assert op.response_errors(200, {"data": {"type": "profile-bulk-import-job"}})  # id, attributes, links missing
    assert op.response_errors(400, {"errors": [{"id": "1", "code": "invalid", "title": "t", "detail": "d"}]}) == []
