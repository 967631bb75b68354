"""Pooled HTTP sessions (integrations/autotask/sessions.py, issue 19): clients without a session
of their own share the process's sessions per origin, one checked out per request, with
keep-alive and without cookies."""

from __future__ import annotations

import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("sandbox.server")

from integrations.autotask import AutotaskClient, NoopLimiter, RetryPolicy
from integrations.autotask.sessions import SessionPool, origin_of
from integrations.autotask.zones import ZoneCache


def client_for(server, pool: SessionPool) -> AutotaskClient:
    db = server.db
    return AutotaskClient(
        db.username,
        db.secret,
        integration_code=db.integration_code,
        zone_lookup_url=server.zone_lookup_url,
        zone_cache=ZoneCache(),
        limiter=NoopLimiter(),
        retry_policy=RetryPolicy(max_attempts=1),
        session_pool=pool,
    )


def new_connections(pool: SessionPool) -> int:
    """TCP connections the pool's sessions opened (urllib3 counts them per host pool)."""
    adapters = {
        id(adapter): adapter  # one adapter is mounted for http:// and https://
        for sessions in pool._idle.values()
        for session in sessions
        for adapter in session.adapters.values()
    }
    return sum(
        adapter.poolmanager.pools[key].num_connections
        for adapter in adapters.values()
        for key in list(adapter.poolmanager.pools.keys())
    )


@pytest.mark.django_db
def test_patches_of_several_clients_reuse_one_session_and_connection(autotask_sandbox):
    """Write-backs build a client per outbox row: 3 clients x 3 PATCHes go out on one pooled
    session per origin over one kept-alive connection. Kills: a new session per client (the
    old default: 3 sessions, 3 connections)."""
    pool = SessionPool()
    invoices = [row["id"] for row in autotask_sandbox.db.invoices()[:9]]
    for n in range(3):
        client = client_for(autotask_sandbox, pool)
        for invoice_id in invoices[3 * n : 3 * n + 3]:
            assert client.set_invoice_paid_date(invoice_id, date(2026, 3, 2)) == invoice_id
        client.close()
    origins = {origin_of(autotask_sandbox.zone_lookup_url), origin_of(client.zone.base_url)}
    assert pool.created == len(origins)
    assert new_connections(pool) == len(origins)
    assert len(autotask_sandbox.db.requests(entity="Invoices", method="PATCH")) == 9
    paid = {row["id"]: row["paidDate"] for row in autotask_sandbox.db.invoices()}
    assert all(paid[i].startswith("2026-03-02") for i in invoices)


class WatchedPool(SessionPool):
    """Records any session handed to two threads at once."""

    def __init__(self):
        super().__init__()
        self.in_use: set[int] = set()
        self.shared: list[int] = []
        self.watch = threading.Lock()

    def session(self, url):
        inner = super().session(url)
        pool = self

        class Watched:
            def __enter__(self):
                self.session = inner.__enter__()
                with pool.watch:
                    if id(self.session) in pool.in_use:
                        pool.shared.append(id(self.session))
                    pool.in_use.add(id(self.session))
                return self.session

            def __exit__(self, *exc):
                with pool.watch:
                    pool.in_use.discard(id(self.session))
                return inner.__exit__(*exc)

        return Watched()


@pytest.mark.django_db
def test_threads_never_share_a_session_in_use(make_sandbox):
    """8 threads x 12 reads through one pool: a session serves one request at a time, at most
    one session per thread is made, every answer is the right record. Kills: one shared
    session for every thread (WatchedPool records it in use twice)."""
    server = make_sandbox(companies=4, invoices=40, latency_ms=5, switches={"thread_limit": 100})
    pool = WatchedPool()
    ids = [row["id"] for row in server.db.invoices()[:12]]
    errors: list[BaseException] = []
    wrong: list[tuple] = []
    start = threading.Barrier(8)

    def work():
        try:
            client = client_for(server, pool)
            start.wait(timeout=10)
            for invoice_id in ids:
                got = client.get_invoice(invoice_id)
                if got is None or got.id != invoice_id:
                    wrong.append((invoice_id, got))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not wrong, (errors, wrong)
    assert pool.shared == []
    assert 2 <= pool.created <= 8 + 1  # concurrent threads need their own (+1: zone lookup)
    assert len(server.db.requests(entity="Invoices", method="GET")) == 8 * len(ids)


class _CookieHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = (self.headers.get("Cookie") or "").encode()
        self.send_response(200)
        self.send_header("Set-Cookie", "ARRAffinity=abc; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_pooled_sessions_keep_no_cookies():
    """A cookie one partner's response sets never rides on the next request of the session.
    Kills: the default cookie policy (the second answer echoes ARRAffinity=abc)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _CookieHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        pool = SessionPool()
        for _ in range(2):
            with pool.session(url) as session:
                answer = session.get(url, timeout=5)
                assert answer.text == ""
                assert len(session.cookies) == 0
        assert pool.created == 1
    finally:
        httpd.shutdown()
        httpd.server_close()
