"""Roles, scopes and scoped tokens: who may run which command or call which route.

A token is a random string handed to one person or service; conf holds only its SHA-256, with a
name and one of five roles (`access.tokens`). A role is a set of scopes; every CLI command
(lakecdp/cli_scopes.py) and API route declares the one scope it needs.

With no `access.tokens` configured, the caller is the local operator: every scope except
`pii:read`, `privacy:admin` and `collector:admin`, so the demo and a laptop install run without
tokens while contact columns stay hidden and what needed the admin token still refuses. Once tokens are configured, every command
that needs a scope needs a token holding it.

No pyspark here: every command module imports this at registration, and `lakecdp --help` stays fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from lakecdp.config.models import AccessSettings, RoleName

TOKEN_ENV = "LAKECDP_TOKEN"
# Deprecated since roles (#26): still read, as the admin role, so existing deployments keep working.
LEGACY_TOKEN_ENV = "LAKECDP_ADMIN_TOKEN"
LEGACY_CONF_KEY = "privacy.admin_token_sha256"
LOCAL_ROLE = "local"
ANONYMOUS_ROLE = "anonymous"


class Scope(StrEnum):
    PII_READ = "pii:read"  # contact columns (emails, names, the retailer's id, pii attributes, raw lines)
    PRIVACY_ADMIN = "privacy:admin"  # erasure, access bundles, consent history
    LAKE_READ = "lake:read"  # read-only commands over the lake (contact columns still need pii:read)
    PIPELINE_RUN = "pipeline:run"  # ingest, imports, stream, quality gates, services, the demo
    MODELS_TRAIN = "models:train"  # train, score, promote
    EXPORT_RUN = "export:run"  # exports and triggers to ESPs, unsubscribe sync, signed email links
    EXPERIMENTS_RUN = "experiments:run"  # assign, materialize, draw holdouts
    CONTENT_READ = "content:read"  # rendered content (first names in merge fields): preview, render, the content API
    COLLECTOR_ADMIN = "collector:admin"  # revoke/restore source write keys


class Credential(StrEnum):
    """What a command or route needs when it is not a role's scope."""

    PUBLIC = "public"  # reads no lake data and writes none (conf checks, token generation)
    SOURCE_WRITE_KEY = "source write key"  # collector tracking routes: the source's own key (collector.sources)
    SIGNED_LINK = "signed link"  # open pixel and click redirects: the HMAC in the link


Access = Scope | Credential

ROLES: Mapping[RoleName, frozenset[Scope]] = {
    "admin": frozenset(Scope),
    "privacy_officer": frozenset({Scope.PRIVACY_ADMIN, Scope.PII_READ, Scope.LAKE_READ, Scope.CONTENT_READ}),
    "marketer": frozenset({Scope.LAKE_READ, Scope.CONTENT_READ, Scope.EXPORT_RUN, Scope.EXPERIMENTS_RUN}),
    "analyst": frozenset({Scope.LAKE_READ}),
    "engineer": frozenset(
        {Scope.LAKE_READ, Scope.PIPELINE_RUN, Scope.MODELS_TRAIN, Scope.EXPORT_RUN, Scope.EXPERIMENTS_RUN, Scope.COLLECTOR_ADMIN}
    ),
}
# What needed the admin token before roles (privacy operations, source revocation) or shows contacts stays out.
LOCAL_SCOPES = frozenset(Scope) - {Scope.PII_READ, Scope.PRIVACY_ADMIN, Scope.COLLECTOR_ADMIN}


class AccessDenied(PermissionError):
    """A missing, unknown or insufficient token; `status` is the HTTP answer (401 unknown, 403 lacking the scope)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Principal:
    """Who is calling: a configured token's name and role, or the local operator (no token)."""

    name: str | None
    role: str
    scopes: frozenset[Scope]
    legacy: bool = False  # matched the deprecated privacy.admin_token_sha256

    def has(self, scope: Access) -> bool:
        return isinstance(scope, Credential) or scope in self.scopes


LOCAL_OPERATOR = Principal(name=None, role=LOCAL_ROLE, scopes=LOCAL_SCOPES)
# No token while access.tokens is configured: only what needs no scope.
ANONYMOUS = Principal(name=None, role=ANONYMOUS_ROLE, scopes=frozenset())
_current: ContextVar[Principal | None] = ContextVar("lakecdp_principal", default=None)


def current_principal() -> Principal:
    """The caller the CLI verified for this command (the local operator outside the CLI: Airflow tasks, library use)."""
    return _current.get() or LOCAL_OPERATOR


def calling_principal() -> Principal | None:
    """The caller of the command running now, None outside one (a command run by another, as the demo does, runs as its caller)."""
    return _current.get()


@contextlib.contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    """Make `principal` the caller that masking and pii_access_log see, for the duration of the block."""
    reset = _current.set(principal)
    try:
        yield principal
    finally:
        _current.reset(reset)


def new_token() -> tuple[str, str]:
    """(token, its sha256): the token goes to its holder, only the digest into conf."""
    # A prefix, because one urlsafe token in 64 starts with "-", which `--token TOKEN` then reads as an option.
    token = "lakecdp_" + secrets.token_urlsafe(32)
    return token, digest_of(token)


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def roles_with(scope: Scope) -> list[RoleName]:
    return [role for role, scopes in ROLES.items() if scope in scopes]


def presented_token(explicit: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """--token, else $LAKECDP_TOKEN, else the deprecated $LAKECDP_ADMIN_TOKEN."""
    env = os.environ if env is None else env
    return explicit or env.get(TOKEN_ENV) or env.get(LEGACY_TOKEN_ENV) or None


def resolve_principal(access: AccessSettings, privacy: Mapping[str, Any], token: str | None) -> Principal:
    """The principal `token` stands for; no token: the local operator, or ANONYMOUS once tokens are configured.

    The legacy `privacy.admin_token_sha256` counts as an admin token but does not by itself switch
    enforcement on: deployments that set only it keep running their other commands without a token.
    """
    legacy = str((privacy or {}).get("admin_token_sha256") or "").lower()
    if token is None:
        return ANONYMOUS if access.tokens else LOCAL_OPERATOR
    digest = digest_of(token)
    for entry in access.tokens:
        # Constant-time: the timing does not tell how much of a digest a guess matched.
        if hmac.compare_digest(digest, entry.sha256):
            return Principal(name=entry.name, role=entry.role, scopes=ROLES[entry.role])
    if legacy and hmac.compare_digest(digest, legacy):
        return Principal(name=None, role="admin", scopes=ROLES["admin"], legacy=True)
    if not access.tokens and not legacy:
        raise AccessDenied(
            "a token was presented but no token is configured. Fix: create one with "
            "`lakecdp access new-token --role ROLE --name NAME` and add its line to access.tokens in conf/local/access.yaml",
            401,
        )
    raise AccessDenied(
        f"the token matches no entry of access.tokens (nor {LEGACY_CONF_KEY}). Fix: check --token / ${TOKEN_ENV}, "
        "or ask an admin for a token (`lakecdp access new-token`)",
        401,
    )


def authorize(principal: Principal, needed: Access, what: str) -> None:
    """Raise AccessDenied (403) unless `principal` holds `needed`; the message names the scope, its roles and the fix."""
    if isinstance(needed, Credential) or needed in principal.scopes:
        return
    roles = roles_with(needed)
    narrowest = min(roles, key=lambda role: len(ROLES[role]))
    who = {
        LOCAL_ROLE: "the local operator (no token, access.tokens not configured)",
        ANONYMOUS_ROLE: "a caller without a token",
    }.get(principal.role, f"role {principal.role}")
    raise AccessDenied(
        f"{what} needs scope {needed}, which {who} lacks; roles holding it: {', '.join(roles)}. "
        f"Fix: pass --token (or set ${TOKEN_ENV}) with a token of one of those roles; an admin creates one with "
        f"`lakecdp access new-token --role {narrowest} --name NAME` and adds the printed line to access.tokens",
        401 if principal.role == ANONYMOUS_ROLE else 403,
    )


def actor_of(principal: Principal, fallback: str) -> str:
    """The name pii_access_log records: the token's name (verified), else the fallback ($LAKECDP_ACTOR or the OS user)."""
    return principal.name or fallback


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header (None when absent or another scheme)."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def require_declared(routes: Sequence[Any], declared: Mapping[str, Access]) -> None:
    """Refuse to build an app serving a route (anything with a `.path`) whose scope or credential is not declared."""
    missing = [route.path for route in routes if route.path not in declared]
    if missing:
        raise ValueError(f"routes {missing} declare no scope or credential. Fix: add them to the app's ROUTE_ACCESS")
