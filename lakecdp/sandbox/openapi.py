"""Validate requests against OpenAPI 3.0 operation files with jsonschema (openapi-core is not usable here).

OpenAPI 3.0 schemas are a JSON Schema draft-4 dialect plus `nullable`; `nullable: true` is
rewritten to allow null (type lists, or anyOf with {"type": "null"} around a $ref / oneOf), then
each operation's request body, header, path and query parameters get a Draft4Validator whose
$refs resolve inside the operation's own document through a `referencing` registry.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from referencing import Registry
from referencing.jsonschema import DRAFT4

REPO = Path(__file__).resolve().parents[2]
# The contracts live in ../shared beside the repo (as CI clones it); override with LAKECDP_CONTRACTS_DIR.
CONTRACTS_DIR = Path(os.environ.get("LAKECDP_CONTRACTS_DIR") or REPO.parent / "shared" / "contracts")


def allow_nulls(node: Any) -> Any:
    """OpenAPI 3.0 `nullable: true` as draft-4 JSON Schema."""
    if isinstance(node, list):
        return [allow_nulls(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: allow_nulls(value) for key, value in node.items()}
    if node.pop("nullable", False):
        if "enum" in node and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        if isinstance(node.get("type"), str) and not ({"$ref", "oneOf", "anyOf", "allOf"} & set(node)):
            node["type"] = [node["type"], "null"]
        else:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


@dataclass
class Parameter:
    name: str
    location: str
    required: bool
    validator: Draft4Validator
    is_array: bool


@dataclass
class Operation:
    operation_id: str
    method: str
    template: str
    pattern: re.Pattern[str]
    parameters: list[Parameter]
    body: Draft4Validator | None
    body_required: bool
    media_type: str | None
    responses: dict[str, Draft4Validator] = field(default_factory=dict)
    rate_limits: list[tuple[int, float]] = field(default_factory=list)
    security_header: str | None = None
    document: dict[str, Any] = field(default_factory=dict)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        found = self.pattern.fullmatch(path)
        return found.groupdict() if found else None

    def body_errors(self, document: Any) -> list[str]:
        if self.body is None:
            return []
        return [
            f"{'/' + '/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in sorted(self.body.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
        ]

    def response_errors(self, status: int, document: Any) -> list[str]:
        validator = self.responses.get(str(status)) or self.responses.get(f"{str(status)[0]}XX")
        if validator is None or document is None:
            return []
        return [e.message for e in validator.iter_errors(document)]


def _rate(text: str) -> tuple[int, float]:
    count, unit = text.split("/")
    return int(count), {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}[unit]


def load_operations(folder: Path) -> list[Operation]:
    """Every operation in every *.json OpenAPI file of `folder`."""
    operations = []
    for path in sorted(folder.glob("*.json")):
        document = allow_nulls(json.loads(path.read_text()))
        uri = f"urn:lakecdp:contract:{path.name}"
        # create_resource, not Resource(...): referencing's stubs hide the attrs __init__ from mypy.
        registry = Registry().with_resource(uri, DRAFT4.create_resource(document))

        def validator(pointer: str, uri: str = uri, registry: Registry = registry) -> Draft4Validator:
            return Draft4Validator({"$ref": f"{uri}#{pointer}"}, registry=registry)

        schemes = document.get("components", {}).get("securitySchemes", {})
        header = next((s["name"] for s in schemes.values() if s.get("in") == "header"), None)
        for template, item in document["paths"].items():
            for method, op in item.items():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                base = f"/paths/{_escape(template)}/{method}"
                operations.append(_operation(document, template, method, op, base, validator, header))
    return operations


def _operation(document: dict, template: str, method: str, op: dict, base: str, validator: Any, header: str | None) -> Operation:
    params = []
    for index, param in enumerate(op.get("parameters", [])):
        schema = param.get("schema", {})
        params.append(
            Parameter(
                param["name"],
                param["in"],
                bool(param.get("required")),
                validator(f"{base}/parameters/{index}/schema"),
                schema.get("type") == "array",
            )
        )
    body, media_type, required = None, None, False
    if "requestBody" in op:
        media_type = next(iter(op["requestBody"]["content"]))
        required = bool(op["requestBody"].get("required"))
        body = validator(f"{base}/requestBody/content/{_escape(media_type)}/schema")
    responses = {}
    for status, response in op["responses"].items():
        content = response.get("content") or {}
        if "$ref" in response:
            ref = response["$ref"].lstrip("#")
            content = _resolve(document, ref).get("content") or {}
            pointer = f"{ref}/content"
        else:
            pointer = f"{base}/responses/{status}/content"
        if content:
            media = next(iter(content))
            responses[status] = validator(f"{pointer}/{_escape(media)}/schema")
    pattern = re.compile("^" + re.sub(r"{([^}]+)}", lambda m: f"(?P<{m.group(1)}>[^/]+)", template) + "$")
    limits = op.get("x-klaviyo-ratelimit") or {}
    return Operation(
        op["operationId"],
        method.upper(),
        template,
        pattern,
        params,
        body,
        required,
        media_type,
        responses,
        [_rate(v) for v in limits.values()],
        header,
        document,
    )


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _resolve(document: dict, pointer: str) -> dict:
    node: Any = document
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return copy.deepcopy(node)
