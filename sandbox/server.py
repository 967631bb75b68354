"""The HTTP layer: a threaded stdlib server on 127.0.0.1 that hands requests to
sandbox.api (Autotask paths) or sandbox.control (``/_sandbox/``).

Threaded because the thread limit and the timeout faults only mean something when requests
are really concurrent; HTTP/1.1 keep-alive and TCP_NODELAY because the per-page overhead
budget (20 ms for 500 invoices) leaves no room for Nagle/delayed-ACK stalls.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from sandbox import control
from sandbox.api import AutotaskApi, Request, Response
from sandbox.state import SandboxDatabase


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    server: _HTTPServer

    def log_message(self, format: str, *args) -> None:
        """Silence per-request stderr lines; the request log is on the database."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        req = Request(method, parts.path, parse_qs(parts.query), self.headers, body)
        sandbox = self.server.sandbox
        if parts.path.lower().startswith("/_sandbox/") or parts.path.lower() == "/_sandbox":
            response = control.handle(sandbox, req)
        else:
            response = sandbox.api.handle(req)
        if response.hold_then_drop is not None:
            sandbox.sleep(response.hold_then_drop)
            self.close_connection = True
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address, sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self.connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request_thread(self, request, client_address) -> None:
        with self._connections_lock:
            self.connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self.connections.discard(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class SandboxServer:
    """A local Autotask: one HTTP server, one or more databases (each with its own zone URL,
    credentials, data, threshold and faults)."""

    def __init__(
        self,
        databases: list[SandboxDatabase] | SandboxDatabase,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if isinstance(databases, SandboxDatabase):
            databases = [databases]
        self.databases: list[SandboxDatabase] = []
        self.host, self.port = host, port
        self.api = AutotaskApi(self)
        self._stop = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        for db in databases:
            self.add_database(db)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SandboxServer:
        if self._httpd is not None:
            return self
        self._stop.clear()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        for db in self.databases:
            db.base_url = self.base_url
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"autotask-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stop.set()  # wakes requests sleeping in latency or timeout faults
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Block until stop() or KeyboardInterrupt (for the management command)."""
        self.start()
        try:
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def sleep(self, seconds: float) -> None:
        """Sleep that ends early when the server stops (so stop() never waits on a fault)."""
        if seconds > 0:
            self._stop.wait(seconds)

    # -- addresses and databases -----------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def zone_lookup_url(self) -> str:
        return f"{self.base_url}/atservicesrest/v1.0/zoneInformation"

    @property
    def control_url(self) -> str:
        return f"{self.base_url}/_sandbox/"

    def add_database(self, db: SandboxDatabase) -> SandboxDatabase:
        if self.find_database(db.username) is not None:
            raise ValueError(f"a database for {db.username} already exists")
        if any(other.ci == db.ci for other in self.databases):
            raise ValueError(f"a database with ci {db.ci} already exists")
        if self._httpd is not None:
            db.base_url = self.base_url
        self.databases = [*self.databases, db]
        return db

    def find_database(self, username: str) -> SandboxDatabase | None:
        """Usernames are matched case-insensitively, like Autotask's."""
        wanted = username.strip().lower()
        for db in self.databases:
            if db.username.lower() == wanted:
                return db
        return None

    def database(self, username: str) -> SandboxDatabase:
        db = self.find_database(username)
        if db is None:
            raise KeyError(f"no sandbox database for {username!r}")
        return db

    def database_by_key(self, key: str) -> SandboxDatabase:
        """A database by ci (digits) or username: how control routes name one."""
        for db in self.databases:
            if key.isdigit() and db.ci == int(key):
                return db
        return self.database(key)

    @property
    def db(self) -> SandboxDatabase:
        """The only database (handy in tests of a single tenant)."""
        if len(self.databases) != 1:
            raise AttributeError(f".db needs exactly one database; there are {len(self.databases)}")
        return self.databases[0]


__all__ = ["Response", "SandboxDatabase", "SandboxServer"]
