"""The content API: GET /v1/content/{customer_id} answers from the in-memory snapshot.

`customer_id` is the retailer's id (or its pseudonym): it is pseudonymized before the lookup
and the answer echoes it as it was asked.

Answers carry the chosen block per slot, token values and experiment variants. Nothing is
logged per request (uvicorn's access log is off): no names or emails reach a log line. Answers
carry first names, so their count per caller goes to pii_access_log every PII_LOG_EVERY_S and at shutdown.

Each route declares what it needs (ROUTE_ACCESS). Once access.tokens is configured, content needs
`Authorization: Bearer TOKEN` of a role with content:read: 401 without a known token, 403 without the scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lakecdp.content.service import ContentService
from lakecdp.privacy.pseudonyms import load_pseudonymizer
from lakecdp.privacy.roles import (
    LOCAL_OPERATOR,
    Access,
    AccessDenied,
    Credential,
    Principal,
    Scope,
    authorize,
    bearer_token,
    require_declared,
)
from lakecdp.tls import HttpsPolicy, TlsSettings

MAX_ID_CHARS = 128
PII_LOG_EVERY_S = 60.0
CONTENT_ROUTE = "/v1/content/{customer_id}"
ROUTE_ACCESS: dict[str, Access] = {CONTENT_ROUTE: Scope.CONTENT_READ, "/healthz": Credential.PUBLIC}

log = logging.getLogger(__name__)


def create_app(
    service: ContentService,
    *,
    refresh_in_background: bool = True,
    tls: TlsSettings | None = None,
    principal_of: Callable[[str | None], Principal] | None = None,
) -> Starlette:
    """The ASGI app over a ContentService; the snapshot refresher runs for the app's lifetime.
    `tls` (content.api.tls): HSTS on HTTPS answers, and plain HTTP refused when it requires HTTPS.
    `principal_of`: bearer token (or None) -> caller or AccessDenied (roles.resolve_principal); default: the local operator."""
    unlogged: Counter[Principal] = Counter()
    pseudonyms = load_pseudonymizer()
    identify = principal_of or (lambda token: LOCAL_OPERATOR)

    async def content(request: Request) -> Response:
        try:
            principal = _caller(request, identify, CONTENT_ROUTE)
        except AccessDenied as exc:
            return _refused(exc)
        customer_id = request.path_params["customer_id"]
        if not customer_id or len(customer_id) > MAX_ID_CHARS:
            return _json({"error": f"customer_id must be 1-{MAX_ID_CHARS} characters"}, 400)
        unlogged[principal] += 1
        return _json({**service.answer(pseudonyms.of(customer_id)), "customer_id": customer_id})

    async def flush_reads() -> None:
        # Taken on the event loop, where requests count: no increment can slip between read and reset.
        for principal in list(unlogged):
            count = unlogged.pop(principal)
            try:
                await asyncio.to_thread(service.log_reads, "content api", None, count, principal)
            except Exception:
                unlogged[principal] += count
                log.exception("could not write pii_access_log; retrying at the next flush")

    async def flush_periodically() -> None:
        while True:
            await asyncio.sleep(PII_LOG_EVERY_S)
            await flush_reads()

    async def health(request: Request) -> Response:
        snapshot = service.store.snapshot
        return _json(
            {
                "status": "ok",
                "customers": len(snapshot.contexts),
                "versions": snapshot.versions,
                "loaded_at": snapshot.loaded_at.isoformat(),
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        if refresh_in_background:
            service.store.start()
        flusher = asyncio.create_task(flush_periodically())
        try:
            yield
        finally:
            flusher.cancel()
            service.store.stop()
            await flush_reads()

    routes = [Route(CONTENT_ROUTE, content, methods=["GET"]), Route("/healthz", health, methods=["GET"])]
    require_declared(routes, ROUTE_ACCESS)
    return Starlette(
        routes=routes,
        middleware=[Middleware(HttpsPolicy, tls=tls or TlsSettings())],
        lifespan=lifespan,
    )


def _caller(request: Request, identify: Callable[[str | None], Principal], route: str) -> Principal:
    """The caller behind the request's bearer token, if it holds what `route` declares; else AccessDenied."""
    principal = identify(bearer_token(request.headers.get("authorization")))
    authorize(principal, ROUTE_ACCESS[route], f"{request.method} {route}")
    return principal


def _refused(exc: AccessDenied) -> Response:
    challenge = {"WWW-Authenticate": 'Bearer realm="lakecdp content"'} if exc.status == 401 else None
    return _json({"error": str(exc)}, exc.status, headers=challenge)


def _json(body: dict, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), default=str), status_code=status, media_type="application/json", headers=headers
    )
