"""The machinery every contract server shares: a threaded HTTP/1.1 server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lakecdp.clock import Clock, SystemClock


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message  # case-insensitive
    body: bytes
    arrived_at: float

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    body: Any = None  # dict/list -> JSON, bytes as is, None -> empty
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


@dataclass
class Fault:
    """Answer the next `times` requests matching (method, path prefix) with this response instead."""

    method: str
    path_prefix: str
    response: Response
    times: int = 1


class SlidingWindow:
    """At most `limit` arrivals in any window of `seconds` (stricter than fixed windows)."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.seconds = limit, seconds
        self.arrivals: deque[float] = deque()
        self.peak = 0

    def admit(self, now: float) -> bool:
        while self.arrivals and self.arrivals[0] <= now - self.seconds:
            self.arrivals.popleft()
        if len(self.arrivals) >= self.limit:
            return False
        self.arrivals.append(now)
        self.peak = max(self.peak, len(self.arrivals))
        return True

    def retry_after(self, now: float) -> float:
        return max(0.0, self.arrivals[0] + self.seconds - now) if self.arrivals else 0.0


class ContractServer:
    """Subclasses implement `handle(request) -> Response`; the base adds recording, faults, latency."""

    name = "esp"

    def __init__(self, *, latency: float = 0.0) -> None:
        self.latency = latency
        self.clock: Clock = SystemClock()  # the server's own time (signature freshness, rate-limit resets); tests may freeze it
        self.lock = threading.RLock()
        self.requests: list[Request] = []
        self.violations: list[str] = []
        self.faults: list[Fault] = []
        self.deliveries: Counter = Counter()  # member key -> times the ESP applied a change for it
        self.in_flight = 0
        self.peak_in_flight = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> ContractServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # no access log: paths can carry member hashes
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    self.command, parts.path, parse_qs(parts.query, keep_blank_values=True), self.headers, body, time.monotonic()
                )
                response = server._dispatch(request)
                payload = response.encoded()
                self.send_response(response.status)
                if payload:
                    self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(payload)))
                for key, value in response.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if payload:
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client killed mid-request (the crash tests do that on purpose) is not a server error.
                import sys

                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"{self.name}-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ContractServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- request path ---------------------------------------------------------------------------
    def _dispatch(self, request: Request) -> Response:
        with self.lock:
            self.requests.append(request)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            concurrent = self.in_flight
        try:
            if self.latency:
                time.sleep(self.latency)
            limited = self.check_concurrency(request, concurrent)
            if limited is not None:
                return limited
            fault = self._take_fault(request)
            if fault is not None:
                return fault
            try:
                return self.handle(request)
            except Exception as exc:  # noqa: BLE001 - a server bug must fail the test (a violation), not hang the client
                self.violation(f"server error on {request.method} {request.path}: {exc!r}")
                return Response(500, {"message": "contract server error"})
        finally:
            # Decrement before the response is written: the client may start its next request
            # the moment it reads this one, and must not be blamed for our bookkeeping.
            with self.lock:
                self.in_flight -= 1

    def check_concurrency(self, request: Request, concurrent: int) -> Response | None:
        return None

    def _take_fault(self, request: Request) -> Response | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == request.method and request.path.startswith(fault.path_prefix):
                    fault.times -= 1
                    return fault.response
        return None

    def inject(self, method: str, path_prefix: str, response: Response, times: int = 1) -> None:
        with self.lock:
            self.faults.append(Fault(method, path_prefix, response, times))

    def violation(self, message: str) -> None:
        with self.lock:
            self.violations.append(message)

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    # ---- helpers for tests ----------------------------------------------------------------------
    def count(self, method: str, path_prefix: str = "") -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.method == method and r.path.startswith(path_prefix))

    def wait_for_deliveries(self, at_least: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if sum(self.deliveries.values()) >= at_least:
                    return True
            time.sleep(0.01)
        return False


def rate_limited(windows: list[SlidingWindow], now: float) -> SlidingWindow | None:
    """The first window that refuses this arrival (arrivals are only recorded when all admit)."""
    for window in windows:
        while window.arrivals and window.arrivals[0] <= now - window.seconds:
            window.arrivals.popleft()
        if len(window.arrivals) >= window.limit:
            return window
    for window in windows:
        window.admit(now)
    return None
