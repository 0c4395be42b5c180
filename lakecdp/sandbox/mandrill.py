"""Mailchimp Transactional (Mandrill): POST /messages/send-template
(https://mailchimp.com/developer/transactional/api/messages/send-using-message-template/).

Enforced: JSON body (also served at the legacy `.json` path) with `key` (the API key; a wrong
one gets Mandrill's Invalid_Key), `template_name` of a template the account has (else
Unknown_Template), `template_content` an array of {name, content} (required, may be empty), and
`message` with a non-empty `to` of {email, name?, type to|cc|bcc}; `merge_vars` entries
{rcpt, vars: [{name, content}]} whose rcpt is one of the recipients; `global_merge_vars`
[{name, content}]; merge var names not starting with an underscore (reserved by Mandrill);
`merge_language` mailchimp|handlebars; `metadata` an object; `tags` strings not starting with an
underscore. Mandrill answers every error with HTTP 500 and {status: "error", code, name, message}
(its documented convention, which clients must not retry blindly). Success is 200 and one result
per recipient {email, status: sent|queued|rejected|invalid, reject_reason, _id}. Mandrill has no
idempotency key: `messages` keeps every accepted message and `deliveries` counts them by
metadata.trigger_id (else recipient), so a duplicate shows as 2.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from lakecdp.sandbox.base import ContractServer, Request, Response

ROUTES = ("/messages/send-template", "/messages/send-template.json")
RECIPIENT_TYPES = {"to", "cc", "bcc"}
MESSAGE_KEYS = {
    "html",
    "text",
    "subject",
    "from_email",
    "from_name",
    "to",
    "headers",
    "important",
    "track_opens",
    "track_clicks",
    "auto_text",
    "auto_html",
    "inline_css",
    "url_strip_qs",
    "preserve_recipients",
    "view_content_link",
    "bcc_address",
    "tracking_domain",
    "signing_domain",
    "return_path_domain",
    "merge",
    "merge_language",
    "global_merge_vars",
    "merge_vars",
    "tags",
    "subaccount",
    "google_analytics_domains",
    "google_analytics_campaign",
    "metadata",
    "recipient_metadata",
    "attachments",
    "images",
}
BODY_KEYS = {"key", "template_name", "template_content", "message", "async", "ip_pool", "send_at"}


def mandrill_error(name: str, message: str, code: int = -2) -> Response:
    return Response(500, {"status": "error", "code": code, "name": name, "message": message})


class MandrillServer(ContractServer):
    name = "mandrill"

    def __init__(self, *, api_key: str, templates: Iterable[str], rejected_emails: Iterable[str] = (), latency: float = 0.0) -> None:
        super().__init__(latency=latency)
        self.api_key = api_key
        self.templates = set(templates)
        self.rejected = {e.lower() for e in rejected_emails}
        self.messages: list[dict[str, Any]] = []  # accepted send-template bodies, without the key

    def handle(self, request: Request) -> Response:
        if request.method != "POST" or request.path not in ROUTES:
            self.violation(f"unknown route {request.method} {request.path}")
            return mandrill_error("GeneralError", "Unknown method", -1)
        try:
            body = request.json()
        except ValueError:
            self.violation("send-template: body is not JSON")
            return mandrill_error("ValidationError", "You must specify a key value", -2)
        if not isinstance(body, dict) or not body.get("key"):
            self.violation("send-template: the API key belongs in the body as `key`")
            return mandrill_error("ValidationError", "You must specify a key value", -2)
        if body["key"] != self.api_key:
            return mandrill_error("Invalid_Key", "Invalid API key", -1)
        problem = _problem(body)
        if problem:
            self.violation(f"send-template: {problem}")
            return mandrill_error("ValidationError", problem)
        if body["template_name"] not in self.templates:
            return mandrill_error("Unknown_Template", f'No such template "{body["template_name"]}"', 5)
        message = body["message"]
        results = []
        with self.lock:
            for recipient in message["to"]:
                email = recipient["email"].lower()
                if email in self.rejected:
                    results.append(
                        {
                            "email": email,
                            "status": "rejected",
                            "reject_reason": "hard-bounce",
                            "queued_reason": None,
                            "_id": secrets.token_hex(16),
                        }
                    )
                    continue
                results.append(
                    {"email": email, "status": "sent", "reject_reason": None, "queued_reason": None, "_id": secrets.token_hex(16)}
                )
                key = str((message.get("metadata") or {}).get("trigger_id") or email)
                self.deliveries[key] += 1
            self.messages.append({k: v for k, v in body.items() if k != "key"})
        return Response(200, results)


def _problem(body: dict[str, Any]) -> str:
    """The first breach of the send-template contract, or ''."""
    unknown = sorted(set(body) - BODY_KEYS)
    if unknown:
        return f"unknown parameters {unknown}"
    if not isinstance(body.get("template_name"), str) or not body["template_name"]:
        return "template_name is required"
    content = body.get("template_content")
    if not isinstance(content, list) or any(not isinstance(c, dict) or set(c) - {"name", "content"} or "name" not in c for c in content):
        return "template_content is required: an array of {name, content}"
    message = body.get("message")
    if not isinstance(message, dict):
        return "message is required"
    unknown = sorted(set(message) - MESSAGE_KEYS)
    if unknown:
        return f"message has unknown parameters {unknown}"
    to = message.get("to")
    if not isinstance(to, list) or not to:
        return "message.to must be a non-empty array of recipients"
    for index, recipient in enumerate(to):
        if not isinstance(recipient, dict) or not isinstance(recipient.get("email"), str) or "@" not in recipient["email"]:
            return f"message.to[{index}].email is required"
        if recipient.get("type", "to") not in RECIPIENT_TYPES:
            return f"message.to[{index}].type must be one of {sorted(RECIPIENT_TYPES)}"
    if message.get("merge_language", "mailchimp") not in {"mailchimp", "handlebars"}:
        return "message.merge_language must be mailchimp or handlebars"
    addresses = {r["email"].lower() for r in to}
    for index, entry in enumerate(message.get("merge_vars") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("rcpt"), str) or not isinstance(entry.get("vars"), list):
            return f"message.merge_vars[{index}] must be {{rcpt, vars: [...]}}"
        if entry["rcpt"].lower() not in addresses:
            return f"message.merge_vars[{index}].rcpt is not one of the message's recipients"
        problem = _vars_problem(entry["vars"], f"message.merge_vars[{index}].vars")
        if problem:
            return problem
    problem = _vars_problem(message.get("global_merge_vars") or [], "message.global_merge_vars")
    if problem:
        return problem
    if "metadata" in message and not isinstance(message["metadata"], dict):
        return "message.metadata must be an object"
    tags = message.get("tags") or []
    if not isinstance(tags, list) or any(not isinstance(t, str) or t.startswith("_") for t in tags):
        return "message.tags must be strings not starting with an underscore"
    return ""


def _vars_problem(variables: Any, where: str) -> str:
    if not isinstance(variables, list):
        return f"{where} must be an array"
    for index, var in enumerate(variables):
        if not isinstance(var, dict) or not isinstance(var.get("name"), str) or not var["name"]:
            return f"{where}[{index}] must be {{name, content}}"
        if var["name"].startswith("_"):
            return f"{where}[{index}].name {var['name']!r} starts with an underscore (reserved)"
    return ""
