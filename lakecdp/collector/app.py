"""The collector's HTTP app (Starlette): Segment's tracking API plus email open/click links.

Protocol: https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/
  - auth (#authentication): HTTP Basic with the write key as username and an empty password,
    or `writeKey` in the JSON body; OAuth bearer tokens are not supported here.
  - size (#max-request-size): 32 KB per event, 500 KB per batch request. Segment answers 400
    for both; this collector answers 413 for an oversized request body (the HTTP status
    for exactly that) and 400 for an oversized single event, each with the limit in the message.
  - responses: 200 {"success": true}; errors carry "code" and "message" (what Segment's SDKs
    read) plus "error". A batch with invalid messages is still 200 (Segment's SDKs drop a
    whole batch on a 400): its valid messages land, and "refused" lists each invalid one's
    "index", "code" and "error"; the stream quarantines those with that reason.
A 200 means every message of the request is fsynced in the landing zone (refused ones as
quarantine-bound lines).

Nothing here logs a payload, an email or an IP address: only counts and reason codes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import zlib
from collections import Counter
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from lakecdp.clock import Clock, SystemClock
from lakecdp.collector.landing import LandingUnavailable, LandingWriter
from lakecdp.collector.links import PIXEL_GIF, EmailLink, LinkError, Purpose, verify_token
from lakecdp.collector.messages import (
    BATCH_ENDPOINTS,
    MAX_BATCH_BYTES,
    SINGLE_ENDPOINTS,
    Envelope,
    RejectedRequest,
    body_write_key,
    envelope,
    landing_lines,
    parse_json_body,
)
from lakecdp.collector.revocations import Revocations
from lakecdp.privacy.roles import Access, Credential, require_declared

log = logging.getLogger(__name__)

_NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}


@dataclass
class CollectorStats:
    """Counts only (no payloads): what /health reports and shutdown logs."""

    requests: int = 0
    events: int = 0
    rejected: Counter = field(default_factory=Counter)
    email_opens: int = 0
    email_clicks: int = 0
    bad_links: int = 0


@dataclass(frozen=True)
class CollectorConfig:
    write_keys: Mapping[str, str]  # write key -> source name
    email_source: str = "email"
    link_secret: bytes | None = None
    revocations: Revocations | None = None  # sources revoked while running (`lakecdp collect revoke`)


# What each route needs (lakecdp.privacy.roles): tracking takes the source's write key, never a role token.
ROUTE_ACCESS: dict[str, Access] = {
    **{f"/v1/{name}": Credential.SOURCE_WRITE_KEY for name in (*SINGLE_ENDPOINTS, *BATCH_ENDPOINTS)},
    "/v1/o/{token}.gif": Credential.SIGNED_LINK,
    "/v1/c/{token}": Credential.SIGNED_LINK,
    "/health": Credential.PUBLIC,
}


def create_app(config: CollectorConfig, writer: LandingWriter, *, clock: Clock | None = None) -> Starlette:
    """The collector app; the writer starts and stops with the app's lifespan."""
    handlers = _Handlers(config, writer, clock or SystemClock())
    routes = [Route(f"/v1/{name}", handlers.tracking, methods=["POST"]) for name in (*SINGLE_ENDPOINTS, *BATCH_ENDPOINTS)]
    routes += [
        Route("/v1/o/{token}.gif", handlers.open_pixel, methods=["GET", "HEAD"]),
        Route("/v1/c/{token}", handlers.click, methods=["GET", "HEAD"]),
        Route("/health", handlers.health, methods=["GET"]),
    ]
    require_declared(routes, ROUTE_ACCESS)
    app = Starlette(routes=routes, lifespan=handlers.lifespan)
    app.state.stats = handlers.stats
    return app


class _Handlers:
    def __init__(self, config: CollectorConfig, writer: LandingWriter, clock: Clock) -> None:
        self.config, self.writer, self.clock = config, writer, clock
        self.stats = CollectorStats()

    async def tracking(self, request: Request) -> Response:
        endpoint = request.url.path.rsplit("/", 1)[-1]
        try:
            source = _source_from_header(request, self.config.write_keys)
            body = parse_json_body(await _read_body(request, MAX_BATCH_BYTES))
            if source is None:
                source = _source_from_key(body_write_key(body), self.config.write_keys)
            if self.config.revocations is not None and self.config.revocations.is_revoked(source):
                raise RejectedRequest(401, "unauthorized", "write key is not valid (unknown or revoked)")
            landed = landing_lines(envelope(body, endpoint), source=source, received_at=self.clock.now())
            await self.writer.write(landed.lines)
        except RejectedRequest as exc:
            self.stats.rejected[exc.code] += 1
            log.debug("rejected /v1/%s request: %s (index %s)", endpoint, exc.code, exc.index)
            headers = {"WWW-Authenticate": 'Basic realm="lakecdp collector"'} if exc.status == 401 else None
            return JSONResponse(exc.body(), status_code=exc.status, headers=headers)
        except ClientDisconnect:
            # Nothing was stored and nobody is there to answer: one line, not a traceback.
            self.stats.rejected["client_disconnected"] += 1
            log.warning("/v1/%s: the client disconnected before sending the whole body; nothing was stored", endpoint)
            return Response(status_code=400)
        except LandingUnavailable as exc:
            self.stats.rejected["unavailable"] += 1
            body = RejectedRequest(503, "unavailable", f"events were not stored, retry later ({exc})").body()
            return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
        self.stats.requests += 1
        self.stats.events += len(landed.lines) - len(landed.refused)
        if landed.refused:
            self.stats.rejected["invalid_event"] += len(landed.refused)
            log.debug("/v1/%s: %s of %s messages refused (quarantined)", endpoint, len(landed.refused), len(landed.lines))
            return JSONResponse({"success": True, "refused": landed.refused})
        return JSONResponse({"success": True})

    async def open_pixel(self, request: Request) -> Response:
        link = self._verified_link(request, "open")
        # A mail client shows the pixel whatever happens: a bad token only goes unrecorded.
        if link is not None and request.method == "GET":
            try:
                await self.writer.write([_email_line(link, "Email Opened", self.config.email_source, self.clock)])
                self.stats.email_opens += 1
            except LandingUnavailable:
                self.stats.rejected["unavailable"] += 1
                return Response(status_code=503, headers={**_NO_STORE, "Retry-After": "1"})
        return Response(PIXEL_GIF, media_type="image/gif", headers=_NO_STORE)

    async def click(self, request: Request) -> Response:
        if self.config.link_secret is None:
            body = RejectedRequest(503, "links_disabled", "email links are disabled: the collector has no link secret").body()
            return JSONResponse(body, status_code=503, headers=_NO_STORE)
        link = self._verified_link(request, "click")
        if link is None or link.url is None:  # a click link verifies only with its target (links._check_link)
            # Never redirect on a link we did not sign: that would be an open redirect.
            body = RejectedRequest(400, "invalid_link", "this link is not valid (its signature does not verify)").body()
            return JSONResponse(body, status_code=400, headers=_NO_STORE)
        # HEAD is what link scanners send: redirect, but do not count a click.
        if request.method == "GET":
            try:
                await self.writer.write([_email_line(link, "Email Link Clicked", self.config.email_source, self.clock)])
                self.stats.email_clicks += 1
            except LandingUnavailable:
                # The reader still gets where they were going; the click goes uncounted.
                self.stats.rejected["unavailable"] += 1
                log.error("an email click could not be stored: landing writer unavailable")
        return RedirectResponse(link.url, status_code=302, headers=_NO_STORE)

    async def health(self, request: Request) -> Response:
        stats = self.stats
        return JSONResponse(
            {
                "status": "ok",
                "requests": stats.requests,
                "events": stats.events,
                "rejected": dict(stats.rejected),
                "email_opens": stats.email_opens,
                "email_clicks": stats.email_clicks,
                "bad_links": stats.bad_links,
                "landing": vars(self.writer.stats),
            }
        )

    @asynccontextmanager
    async def lifespan(self, app: Starlette):
        recovered = self.writer.start()
        if not self.config.write_keys:
            log.warning("no source has a write key: every tracking request will get 401")
        if self.config.link_secret is None:
            log.warning("email link secret is not set: click links answer 503 and opens go unrecorded")
        sources = len(set(self.config.write_keys.values()))
        log.info("collector up: %d sources with keys, %d landing files recovered", sources, len(recovered))
        try:
            yield
        finally:
            # Requests have finished by now; closing commits, fsyncs and publishes off the event loop.
            await asyncio.to_thread(self.writer.close)
            log.info(
                "collector stopped: %d requests, %d events accepted, rejected %s, %d files published",
                self.stats.requests,
                self.stats.events,
                dict(self.stats.rejected),
                self.writer.stats.published,
            )

    def _verified_link(self, request: Request, purpose: Purpose) -> EmailLink | None:
        if self.config.link_secret is None:
            return None
        try:
            return verify_token(request.path_params["token"], self.config.link_secret, purpose=purpose)
        except LinkError as exc:
            self.stats.bad_links += 1
            log.info("refused an email %s link: %s", purpose, exc)
            return None


def _source_from_header(request: Request, write_keys: Mapping[str, str]) -> str | None:
    """The source whose key is in the Authorization header; None when there is no header."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic":
        raise RejectedRequest(401, "unauthorized", "use HTTP Basic auth with the source's write key as username and an empty password")
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise RejectedRequest(401, "unauthorized", "Authorization header is not valid Basic credentials") from None
    # Segment: "writeKey:" (empty password); a key sent without the colon still works there.
    return _source_from_key(decoded.partition(":")[0], write_keys)


def _source_from_key(key: str | None, write_keys: Mapping[str, str]) -> str:
    if not key:
        raise RejectedRequest(401, "unauthorized", "missing write key: send it as the Basic auth username or as writeKey in the body")
    source = None
    for known, name in write_keys.items():
        # Every key is compared in constant time, so timing does not reveal a near miss.
        if hmac.compare_digest(known.encode(), key.encode()):
            source = name
    if source is None:
        raise RejectedRequest(401, "unauthorized", "write key is not valid (unknown or revoked)")
    return source


async def _read_body(request: Request, limit: int) -> bytes:
    """The (decompressed) body, refusing more than `limit` bytes without reading it all."""
    too_large = RejectedRequest(
        413,
        "request_too_large",
        f"request body is larger than {limit // 1024} KB (Segment HTTP API max request size): send fewer events per batch",
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise RejectedRequest(415, "unsupported_encoding", f"Content-Encoding {encoding[:20]!r} is not supported: send gzip or no encoding")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    received, body = 0, bytearray()
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large
        if inflater is None:
            body += chunk
            continue
        try:
            # max_length bounds the output: a small gzip bomb cannot inflate past the limit.
            body += inflater.decompress(chunk, limit + 1 - len(body))
        except zlib.error:
            raise RejectedRequest(400, "invalid_gzip", "body is not valid gzip") from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise too_large
    if inflater is not None and not inflater.eof:
        raise RejectedRequest(400, "invalid_gzip", "gzip body is truncated")
    return bytes(body)


def _email_line(link: EmailLink, event: str, source: str, clock: Clock) -> bytes:
    properties = {"campaign_id": link.campaign_id, "email_id": link.email_id}
    if link.url is not None:
        properties["url"] = link.url
    message = {"type": "track", "event": event, "userId": link.customer_id, "properties": properties}
    return landing_lines(Envelope([message], {}, is_batch=False), source=source, received_at=clock.now()).lines[0]


__all__ = ["CollectorConfig", "CollectorStats", "create_app"]
