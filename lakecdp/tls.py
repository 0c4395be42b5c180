"""HTTPS for lakecdp's servers (the collector and the content API): TLS from a configured certificate
and key, HSTS on every HTTPS answer, and, behind a TLS-terminating proxy, refusal of plain HTTP.

Both servers take a `tls:` block of the same shape (conf/base/collector.yaml `collector.tls`,
conf/base/content.yaml `content.api.tls`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lakecdp.config import ConfigError

# RFC 6797 §7.2: HSTS is only sent over a secure transport. A year is what browsers' preload lists ask for.
ONE_YEAR_S = 365 * 24 * 3600


class TlsSettings(BaseModel):
    """`tls:` of a server. With certfile and keyfile it speaks HTTPS only (a plain request fails its handshake)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    certfile: str | None = None  # PEM: the certificate, then any intermediates
    keyfile: str | None = None  # PEM private key; keep it out of git (conf/local or a mounted secret)
    hsts_seconds: int = Field(default=ONE_YEAR_S, ge=0)  # Strict-Transport-Security max-age on HTTPS answers; 0: no header
    # Refuse (403) a request that did not arrive over HTTPS. For a server behind a proxy that ends TLS: uvicorn
    # takes the scheme from X-Forwarded-Proto when the proxy is in its forwarded_allow_ips (default 127.0.0.1).
    require_https: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("set both certfile and keyfile (PEM files), or neither")
        return self

    @property
    def enabled(self) -> bool:
        return self.certfile is not None

    def scheme(self) -> str:
        return "https" if self.enabled else "http"

    def uvicorn_options(self, section: str) -> dict[str, Any]:
        """ssl_certfile/ssl_keyfile for uvicorn; a file that is not there is a ConfigError naming `section`."""
        if not self.enabled:
            return {}
        for key in ("certfile", "keyfile"):
            path = getattr(self, key)
            if not Path(path).is_file():
                raise ConfigError(
                    f"{section}.tls.{key}: {path} is not a file. Fix: point it at the PEM file, or remove tls to serve plain HTTP."
                )
        return {"ssl_certfile": self.certfile, "ssl_keyfile": self.keyfile}


class HttpsPolicy:
    """ASGI middleware: HSTS on HTTPS answers; with `require_https`, a 403 for anything else."""

    def __init__(self, app: ASGIApp, *, tls: TlsSettings) -> None:
        self.app, self.tls = app, tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secure = scope.get("scheme") == "https"
        if not secure and self.tls.require_https:
            refused = JSONResponse({"error": "HTTPS required: send this request to the server's https:// address"}, status_code=403)
            await refused(scope, receive, send)
            return
        if not secure or not self.tls.hsts_seconds:
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("Strict-Transport-Security", f"max-age={self.tls.hsts_seconds}")
            await send(message)

        await self.app(scope, receive, send_with_hsts)
