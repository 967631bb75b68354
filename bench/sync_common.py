"""Shared by the sync benches: PostgreSQL, Redis, a migrated database, a sandbox subprocess.

Without DATABASE_URL / REDIS_URL, a throwaway PostgreSQL (fsync off, like bin/test) and Redis
are started on free ports and removed at exit. Each bench gets a fresh database, migrated with
`manage.py migrate`. The sandbox runs in its own process (`manage.py autotask_sandbox`) so its
memory and CPU are not the sync's.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SANDBOX_USER = "bench@sandbox.test"
SANDBOX_SECRET = "bench-sandbox-secret"
INTEGRATION_CODE = "PAYSYNC-TEST-INTEGRATION-CODE"  # = config.settings.test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_pg(args: list[str]) -> list[str]:
    if os.geteuid() == 0:  # initdb and pg_ctl refuse to run as root
        return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(map(_quote, args))]
    return args


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up in {timeout:.0f} s")


def start_services() -> None:
    """Set DATABASE_URL (a fresh database) and REDIS_URL in os.environ, starting throwaway
    servers when they are not given."""
    tmp = tempfile.mkdtemp(prefix="paysync-bench-")
    os.chmod(tmp, 0o755)
    atexit.register(shutil.rmtree, tmp, True)
    if not os.environ.get("DATABASE_URL"):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            sys.exit("PostgreSQL binaries not found: set DATABASE_URL")
        pg_bin, port, data = bins[-1], free_port(), f"{tmp}/pg"
        if os.geteuid() == 0:
            shutil.chown(tmp, "postgres")
        subprocess.run(
            _as_pg(
                [f"{pg_bin}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        opts = (
            f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            _as_pg(
                [f"{pg_bin}/pg_ctl", "-D", data, "-l", f"{tmp}/pg.log", "-w", "-o", opts, "start"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        stop = [f"{pg_bin}/pg_ctl", "-D", data, "-m", "immediate", "stop"]
        atexit.register(lambda: subprocess.run(_as_pg(stop), stdout=subprocess.DEVNULL))
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{port}/postgres"
        print(f"==> throwaway PostgreSQL on 127.0.0.1:{port} (fsync off)")
    if not os.environ.get("REDIS_URL"):
        port = free_port()
        proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
        )
        atexit.register(proc.kill)
        os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        _wait(lambda: _connectable(port), 10, "redis")
        print(f"==> throwaway Redis on 127.0.0.1:{port}")
    _fresh_database()
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    if not os.environ.get("FIELD_ENCRYPTION_KEYS"):
        from cryptography.fernet import Fernet

        os.environ["FIELD_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()


def _connectable(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def _fresh_database() -> None:
    import psycopg2

    url = urlsplit(os.environ["DATABASE_URL"])
    name = f"paysync_bench_{os.getpid()}"
    admin = psycopg2.connect(os.environ["DATABASE_URL"])
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    base = os.environ["DATABASE_URL"]

    def drop():
        conn = psycopg2.connect(base)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()

    atexit.register(drop)
    os.environ["DATABASE_URL"] = urlunsplit(url._replace(path=f"/{name}"))


def migrate() -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True, env=os.environ
    )


class Sandbox:
    """`manage.py autotask_sandbox` in a subprocess, with a control-route client."""

    def __init__(self, *, companies: int, invoices: int, latency_ms: int, seed: int = 1):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "autotask_sandbox",
                "--port",
                str(self.port),
                "--seed",
                str(seed),
                "--companies",
                str(companies),
                "--invoices",
                str(invoices),
                "--latency-ms",
                str(latency_ms),
                "--username",
                SANDBOX_USER,
                "--secret",
                SANDBOX_SECRET,
                "--integration-code",
                INTEGRATION_CODE,
            ],
            cwd=ROOT,
            env=os.environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        atexit.register(self.stop)
        self.base = f"http://127.0.0.1:{self.port}"
        _wait(lambda: _connectable(self.port), 120, "sandbox")
        self.zone_lookup_url = f"{self.base}/atservicesrest/v1.0/zoneInformation"
        os.environ["AUTOTASK_ZONE_LOOKUP_URL"] = self.zone_lookup_url

    def _control(self, method: str, path: str, body: dict | None = None):
        req = urllib.request.Request(
            f"{self.base}/_sandbox/databases/{SANDBOX_USER}{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        req.method = method
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"null")

    def control(self, method: str, path: str, body: dict | None = None):
        """A control route of the bench's database (sandbox/control.py), e.g. PATCH
        `/invoices/{id}` with `{"paidDate": …}`."""
        return self._control(method, path, body)

    def requests(self) -> list[dict]:
        return self._control("GET", "/requests")["requests"]

    def reset_log(self) -> None:
        self._control("DELETE", "/requests")

    def summary(self) -> dict:
        return self._control("GET", "")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def setup_django():
    import django

    django.setup()


def capture_clients() -> list:
    """Every Autotask client the sync builds from now on, in order (for their request stats)."""
    from integrations import clients as factory

    clients = []
    build = factory.build_client

    def build_client(connection, **options):
        client = build(connection, **options)
        clients.append(client)
        return client

    factory.build_client = build_client
    return clients


def connect_partner(name: str = "Bench MSP", *, filters: dict | None = None):
    """A partner connected to the sandbox the way the Connect form does; its first run is
    created but not enqueued (no worker here). Returns the connection."""
    from integrations import connect as integration_connect
    from partners.models import Partner
    from sync import tasks

    tasks.run_sync.delay = lambda *a, **k: None  # the bench executes runs itself
    partner = Partner.objects.create(name=name, primary_integration=Partner.Integration.AUTOTASK)
    return integration_connect.autotask_connect(
        partner=partner,
        actor=None,
        account_email="ops@example.test",
        username=SANDBOX_USER,
        secret=SANDBOX_SECRET,
        identifier="invoice_number",
        filters=filters or {},
    )


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
