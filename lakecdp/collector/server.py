"""Run the collector: from settings to a uvicorn server, in the foreground or in a thread."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, TypedDict

import uvicorn
from starlette.applications import Starlette

from lakecdp.clock import Clock, SystemClock
from lakecdp.collector.app import CollectorConfig, create_app
from lakecdp.collector.landing import LandingWriter
from lakecdp.collector.revocations import Revocations
from lakecdp.collector.settings import CollectorSettings, load_collector_settings, resolve_link_secret, resolve_write_keys
from lakecdp.config import Settings
from lakecdp.preferences.app import open_preference_centre, preference_routes
from lakecdp.tls import HttpsPolicy, TlsSettings


class _UvicornOptions(TypedDict):
    access_log: bool
    server_header: bool
    lifespan: Literal["auto", "on", "off"]
    timeout_graceful_shutdown: int | None


# Uvicorn's access log would write client IPs and pixel/click tokens (customer ids): off.
_UVICORN_DEFAULTS: _UvicornOptions = {"access_log": False, "server_header": False, "lifespan": "on", "timeout_graceful_shutdown": 15}


def events_dir(settings: Settings, collector: CollectorSettings) -> Path:
    """collector.events_dir, else <landing.root>/events (the folder `lakecdp stream run` reads)."""
    return Path(collector.events_dir or f"{settings.landing.root.rstrip('/')}/events")


def revocations_path(settings: Settings, collector: CollectorSettings) -> Path:
    """collector.revocations_file, else <landing.root>/_collector/revoked_sources.json."""
    return Path(collector.revocations_file or f"{settings.landing.root.rstrip('/')}/_collector/revoked_sources.json")


def build_app(
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    events_dir_override: str | Path | None = None,
) -> tuple[Starlette, CollectorSettings]:
    """The collector app for these settings; keys and link secret come from `env` (default os.environ)."""
    env = os.environ if env is None else env
    collector = load_collector_settings(settings.collector)
    publisher = None
    if collector.publish == "kafka":
        from lakecdp.collector.publish import KafkaPublisher

        publisher = KafkaPublisher(settings.kafka)
    writer = LandingWriter(
        events_dir_override or events_dir(settings, collector),
        roll_bytes=collector.roll_bytes,
        roll_seconds=collector.roll_seconds,
        clock=clock,
        publisher=publisher,
    )
    config = CollectorConfig(
        write_keys=resolve_write_keys(collector, env),
        email_source=collector.email_source,
        link_secret=resolve_link_secret(collector, env),
        revocations=Revocations(revocations_path(settings, collector)),
    )
    app = create_app(config, writer, clock=clock)
    centre = open_preference_centre(settings, collector, env)
    if centre is not None:
        app.router.routes.extend(preference_routes(centre, writer, clock or SystemClock()))
    app.add_middleware(HttpsPolicy, tls=collector.tls)
    return app, collector


def serve(app: Starlette, *, host: str, port: int, tls: TlsSettings | None = None, log_level: str = "info") -> None:
    """Serve until SIGINT/SIGTERM (HTTPS with `tls`); shutdown publishes the open landing file."""
    ssl = (tls or TlsSettings()).uvicorn_options("collector")
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, **_UVICORN_DEFAULTS, **ssl)).run()


class CollectorThread:
    """A real uvicorn server (the collector, or any lakecdp app) on 127.0.0.1 in a background thread: for
    tests, benchmarks and the demo. With `tls`, it speaks HTTPS."""

    def __init__(self, app: Starlette, *, host: str = "127.0.0.1", port: int = 0, tls: TlsSettings | None = None) -> None:
        self.app, self.host, self.port, self.tls = app, host, port, tls or TlsSettings()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.tls.scheme()}://{self.host}:{self.port}"

    def __enter__(self) -> CollectorThread:
        # Bind first and hand uvicorn the socket: the port is known and nobody can take it meanwhile.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", **_UVICORN_DEFAULTS, **self.tls.uvicorn_options("server"))
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name="lakecdp-collector", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the collector did not start (see the log above)")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Graceful shutdown, as on SIGTERM: in-flight requests finish, the open file is published."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(30)
