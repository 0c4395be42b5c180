"""The content API: GET /v1/content/{customer_id} answers from the in-memory snapshot.

Answers carry the chosen block per slot, token values and experiment variants. Nothing is
logged per request (uvicorn's access log is off): no names or emails reach a log line.
"""
from __future__ import annotations

import contextlib
import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lakecdp.content.service import ContentService

MAX_ID_CHARS = 128


def create_app(service: ContentService, *, refresh_in_background: bool = True) -> Starlette:
    """The ASGI app over a ContentService; the snapshot refresher runs for the app's lifetime."""

    async def content(request: Request) -> Response:
        customer_id = request.path_params["customer_id"]
        if not customer_id or len(customer_id) > MAX_ID_CHARS:
            return _json({"error": f"customer_id must be 1-{MAX_ID_CHARS} characters"}, 400)
        return _json(service.answer(customer_id))

    async def health(request: Request) -> Response:
        snapshot = service.store.snapshot
        return _json({"status": "ok", "customers": len(snapshot.contexts), "versions": snapshot.versions, "loaded_at": snapshot.loaded_at.isoformat()})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        if refresh_in_background:
            service.store.start()
        try:
            yield
        finally:
            service.store.stop()

    return Starlette(
        routes=[Route("/v1/content/{customer_id}", content, methods=["GET"]), Route("/healthz", health, methods=["GET"])],
        lifespan=lifespan,
    )


def _json(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":"), default=str), status_code=status, media_type="application/json")
