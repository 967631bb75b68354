"""Bench: our companies sync side by side with django-autotask's (`atsync account --full`).

    .venv/bin/python bench/companies_vs_django_autotask.py [--companies 2000]
        [--latency-ms 100,0] [--timeout 900]

Both sides read the same sandbox (same seed, N companies, no invoices) at the same latency and
write to the same throwaway PostgreSQL server (fsync off), each into its own database:

- ours: a partner connected with the "active companies only" filter, then its initial sync run
  (`sync.services.runs.execute_run`) in a subprocess of this script. "companies phase" is
  from the end of PaymentTerms to the commit of the last companies page (POST `Companies/query`
  pages of 500, bulk upsert per page);
  "whole run" adds what an initial run always does (ThresholdInformation, PaymentTerms, one empty
  Invoices page).
- theirs: django-autotask 1.16.0 (PyPI) with Django 5.2 in its own virtualenv, cached in
  var/bench/djautotask-venv (created on first use: `pip install` from the package registry; it is
  never added to our pyproject). A throwaway Django project (settings written to a temp dir,
  `AUTOTASK_SERVER_URL` and `AUTOTASK_CREDENTIALS` pointing at the sandbox) runs
  `manage.py migrate` once into a template database, then per latency `manage.py atsync account
  --full` on a fresh copy. That command looks the zone up, then reads
  `GET Companies/query?search={"filter":[{"op":"eq","field":"isActive","value":true}]}` and
  follows `pageDetails.nextPageUrl` (GET, 500 a page), saving row by row (a SELECT by id, a SELECT
  per foreign key: companyType, parentCompanyID, ownerResourceID; an INSERT; one transaction each)
  and finally prunes. Its wall time is measured inside manage.py, from just before the command
  runs (after `django.setup()`) to its end; the process time (interpreter + Django start) is
  printed apart. Its requests are counted by wrapping `requests.Session.request` in that process
  and checked against the sandbox's request log.

Both sides filter `isActive = true`, so they fetch the same rows. The sandbox serves no Resources
and this bench does not run `atsync account_type`, so django-autotask's owner and type foreign
keys stay NULL (it logs a warning per missing one; the log goes to a file). "Rows written" is the
row count in each side's table afterwards (customers of the partner / djautotask_account).

The ratio printed is ours / theirs (lower = ours cheaper). The bench talks only to 127.0.0.1
(apart from the one-time pip install), every subprocess has a timeout, and everything it starts
is stopped at exit. Uses DATABASE_URL when set, else a throwaway PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sync_common as common

ROOT = common.ROOT
VENV = ROOT / "var" / "bench" / "djautotask-venv"
# django-autotask imports pytz without declaring it; psycopg2 for PostgreSQL.
REQUIREMENTS = ["django-autotask==1.16.0", "Django>=5.2,<5.3", "psycopg2-binary", "pytz"]


# --- our side (runs in a subprocess: --child) -----------------------------------------------


def child(args) -> None:
    common.setup_django()
    from sync.engine import SyncEngine
    from sync.models import SyncRun
    from sync.services.runs import execute_run

    # The companies phase: from the end of PaymentTerms (the reader starts on Companies) to the
    # commit that marks the phase done. The reader may already be reading the (empty) Invoices
    # page while the last companies page is written; that request is not counted here.
    marks: dict[str, float] = {}
    original_terms, original_state = SyncEngine._payment_terms, SyncEngine._commit_state

    def payment_terms(self):
        try:
            return original_terms(self)
        finally:
            marks["start"] = time.perf_counter()

    def commit_state(self, phase_name):
        try:
            return original_state(self, phase_name)
        finally:
            if phase_name == "companies":
                marks["end"] = time.perf_counter()

    SyncEngine._payment_terms = payment_terms
    SyncEngine._commit_state = commit_state
    clients = common.capture_clients()
    conn = common.connect_partner(args.partner, filters={"active_only": True})
    partner = conn.partner
    print(json.dumps({"marker": "connected"}), flush=True)
    sys.stdin.readline()  # the parent resets the sandbox log, then says go
    started = time.perf_counter()
    run = execute_run(partner=partner, run_id=conn.first_run.id)
    wall = time.perf_counter() - started
    assert run.status == SyncRun.Status.SUCCEEDED, (run.error_kind, run.error_message)
    from customers.models import Customer

    stats = clients[0].stats.as_dict()
    print(
        json.dumps(
            {
                "wall": wall,
                "requests": run.requests_used,
                "by_entity": stats["by_entity"],
                "phase_wall": marks["end"] - marks["start"],
                "phase_requests": stats["by_entity"].get("Companies", 0),
                "created": run.created,
                "rows": Customer.objects.filter(partner=partner).count(),
            }
        ),
        flush=True,
    )


def run_ours(sandbox: common.Sandbox, name: str, timeout: float) -> dict:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", "--partner", name],
        env=os.environ,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # connected (connect check requests happen before)
        if not line:
            _, err = proc.communicate(timeout=timeout)
            sys.exit(f"our sync subprocess failed:\n{err[-4000:]}")
        sandbox.reset_log()
        out, err = proc.communicate("go\n", timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        sys.exit(f"our sync took longer than {timeout:.0f} s: stopped")
    if proc.returncode != 0:
        sys.exit(f"our sync subprocess failed:\n{err[-4000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["sandbox_requests"] = _authenticated(sandbox.requests())
    return result


def _authenticated(log: list[dict]) -> int:
    return sum(1 for r in log if r.get("entity") != "zoneInformation")


# --- their side -----------------------------------------------------------------------------


def ensure_venv(timeout: float) -> Path:
    """var/bench/djautotask-venv with REQUIREMENTS, created once (the marker lists them)."""
    python = VENV / "bin" / "python"
    marker = VENV / "bench-requirements.txt"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    shutil.rmtree(VENV, ignore_errors=True)
    print(f"==> creating {VENV.relative_to(ROOT)}: pip install {' '.join(REQUIREMENTS)}")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(VENV)], check=True, timeout=timeout)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
        check=True,
        timeout=timeout,
    )
    marker.write_text(wanted)
    return python


SETTINGS = """\
import os

SECRET_KEY = "django-autotask-bench"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.postgres",
    "django_extensions",
    "djautotask",
]
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["BENCH_DB_NAME"],
        "USER": {user!r},
        "HOST": {host!r},
        "PORT": {port!r},
        "PASSWORD": {password!r},
    }}
}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# djautotask.api.get_zone_info: GET {{AUTOTASK_SERVER_URL}}v1.0/zoneInformation?user=...
AUTOTASK_SERVER_URL = os.environ["BENCH_AUTOTASK_SERVER_URL"]
AUTOTASK_CREDENTIALS = {{
    "username": {username!r},
    "password": {secret!r},
    "integration_code": {code!r},
    "rest_api_version": "1.0",
}}
CACHES = {{"default": {{"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}}}
# djautotask logs an INFO line per record and a WARNING per unresolved foreign key: kept, to a
# file, as a deployment would.
LOGGING = {{
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {{
        "file": {{"class": "logging.FileHandler", "filename": os.environ["BENCH_LOG_FILE"]}}
    }},
    "root": {{"handlers": ["file"], "level": "WARNING"}},
}}
"""

MANAGE = """\
#!/usr/bin/env python
import atexit
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
import django

django.setup()
from django.core.management import execute_from_command_line

result_file = os.environ.get("BENCH_RESULT_FILE")
if result_file:
    # Count HTTP requests (django-autotask calls requests.request / requests.get, both of which
    # go through Session.request) and time the command alone.
    import requests.sessions

    counts = {}
    original = requests.sessions.Session.request

    def request(self, method, url, *args, **kwargs):
        path = url.split("?", 1)[0].rstrip("/")
        at = path.lower().rfind("/v1.0/")
        key = method.upper() + " " + (path[at + 6 :] if at >= 0 else path)
        counts[key] = counts.get(key, 0) + 1
        return original(self, method, url, *args, **kwargs)

    requests.sessions.Session.request = request
    started = time.perf_counter()

    def report():
        with open(result_file, "w") as f:
            json.dump({"wall": time.perf_counter() - started, "requests": counts}, f)

    atexit.register(report)
execute_from_command_line(sys.argv)
"""


class TheirProject:
    """A throwaway Django project with djautotask, its template database migrated once."""

    def __init__(self, python: Path, timeout: float):
        from urllib.parse import urlsplit

        self.python = python
        self.timeout = timeout
        self.dir = Path(tempfile.mkdtemp(prefix="djautotask-bench-"))
        url = urlsplit(os.environ["DATABASE_URL"])
        self.admin_url = os.environ["DATABASE_URL"]
        (self.dir / "settings.py").write_text(
            SETTINGS.format(
                user=url.username or "postgres",
                host=url.hostname or "127.0.0.1",
                port=str(url.port or 5432),
                password=url.password or "",
                username=common.SANDBOX_USER,
                secret=common.SANDBOX_SECRET,
                code=common.INTEGRATION_CODE,
            )
        )
        (self.dir / "manage.py").write_text(MANAGE)
        self.databases: list[str] = []
        self.template = self._create_database(f"djautotask_bench_tmpl_{os.getpid()}")
        started = time.perf_counter()
        self.manage(["migrate", "-v", "0"], db=self.template, server_url="http://127.0.0.1:9/")
        print(f"==> django-autotask project migrated in {time.perf_counter() - started:.1f} s")

    def _sql(self, statement: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.admin_url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def _create_database(self, name: str, template: str | None = None) -> str:
        self._sql(f'DROP DATABASE IF EXISTS "{name}"')
        self._sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        self.databases.append(name)
        return name

    def fresh_database(self, suffix: str) -> str:
        return self._create_database(f"djautotask_bench_{suffix}_{os.getpid()}", self.template)

    def count(self, db: str, sql: str):
        from urllib.parse import urlsplit, urlunsplit

        import psycopg2

        url = urlunsplit(urlsplit(self.admin_url)._replace(path=f"/{db}"))
        conn = psycopg2.connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchone()
        finally:
            conn.close()

    def manage(self, argv, *, db: str, server_url: str, result_file: Path | None = None):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "BENCH_DB_NAME": db,
            "BENCH_AUTOTASK_SERVER_URL": server_url,
            "BENCH_LOG_FILE": str(self.dir / "djautotask.log"),
            # requests must not go through a proxy: only 127.0.0.1 is talked to.
            "NO_PROXY": "*",
        }
        if result_file:
            env["BENCH_RESULT_FILE"] = str(result_file)
        started = time.perf_counter()
        try:
            out = subprocess.run(
                [str(self.python), "manage.py", *argv],
                cwd=self.dir,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            sys.exit(f"manage.py {' '.join(argv)} took longer than {self.timeout:.0f} s: stopped")
        return out, time.perf_counter() - started

    def cleanup(self) -> None:
        for name in reversed(self.databases):
            try:
                self._sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:
                print(f"(could not drop {name}: {exc})")
        shutil.rmtree(self.dir, ignore_errors=True)


def run_theirs(project: TheirProject, sandbox: common.Sandbox, suffix: str) -> dict:
    db = project.fresh_database(suffix)
    log_file = project.dir / "djautotask.log"
    log_file.unlink(missing_ok=True)
    result_file = project.dir / f"result-{suffix}.json"
    # Untimed: the company types picklist (Companies/entityInformation/fields), so the
    # companyType foreign key resolves the way it would in a deployment that syncs everything.
    out, _ = project.manage(
        ["atsync", "account_type"], db=db, server_url=f"{sandbox.base}/atservicesrest/"
    )
    types = project.count(db, "SELECT count(*) FROM djautotask_accounttype")[0]
    if out.returncode != 0 or not types:
        print(f"(atsync account_type: exit {out.returncode}, {types} types: {out.stderr[-500:]})")
    log_file.unlink(missing_ok=True)
    sandbox.reset_log()
    out, process_wall = project.manage(
        ["atsync", "account", "--full"],
        db=db,
        server_url=f"{sandbox.base}/atservicesrest/",
        result_file=result_file,
    )
    log = sandbox.requests()
    result = {
        "returncode": out.returncode,
        "stdout": out.stdout.strip(),
        "stderr": out.stderr.strip(),
        "process_wall": process_wall,
        "sandbox_requests": _authenticated(log),
        "zone_lookups": sum(1 for r in log if r.get("entity") == "zoneInformation"),
        "sandbox_errors": [
            f"{r['method']} {r['path']} -> {r['status']}" for r in log if r["status"] >= 400
        ],
    }
    if result_file.exists():
        result.update(json.loads(result_file.read_text()))
    result["rows"] = project.count(db, "SELECT count(*) FROM djautotask_account")[0]
    result["account_types"] = types
    job = project.count(
        db,
        "SELECT added, updated, skipped, deleted, success, "
        "extract(epoch from end_time - start_time) FROM djautotask_syncjob "
        "WHERE entity_name = 'Account' ORDER BY id DESC LIMIT 1",
    )
    result["syncjob"] = job
    text = log_file.read_text() if log_file.exists() else ""
    result["warnings"] = sum(1 for line in text.splitlines() if line.startswith("Failed to find"))
    result["log_tail"] = text.splitlines()[-3:]
    return result


# --- report ---------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _spread(values: list[float]) -> str:
    return f" ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else ""


def trial_line(i: int, ours: dict, theirs: dict) -> None:
    print(f"  trial {i}: ours companies phase {ours['phase_wall']:.2f} s (whole run "
          f"{ours['wall']:.2f} s); theirs {theirs.get('wall', float('nan')):.2f} s (process "
          f"{theirs['process_wall']:.2f} s), exit {theirs['returncode']}")  # fmt: skip


def report(companies: int, latency_ms: int, active: int, ours: list, theirs: list) -> bool:
    """Median figures of the trials and the ratios ours / theirs. False if theirs failed."""
    o = ours[-1]
    failed = [r for r in theirs if r["returncode"] != 0 or not r.get("wall")]
    ok = [r for r in theirs if r not in failed]
    t = (ok or theirs)[-1]
    pages = max(1, math.ceil(active / 500))
    print(f"\n== {companies} companies ({active} active), {latency_ms} ms latency, "
          f"median of {len(ours)} ==")  # fmt: skip
    o_phase = _median([r["phase_wall"] for r in ours])
    o_run = _median([r["wall"] for r in ours])
    print(f"ours   companies phase:   {o['phase_requests']} requests (Companies pages), "
          f"{o_phase:.2f} s{_spread([r['phase_wall'] for r in ours])}; "
          f"rows written {o['rows']} (created {o['created']})")  # fmt: skip
    print(f"ours   whole initial run: {o['requests']} requests {o['by_entity']} (sandbox log "
          f"{o['sandbox_requests']}), {o_run:.2f} s")  # fmt: skip
    for r in failed[:1]:
        print(f"theirs manage.py atsync account --full FAILED (exit {r['returncode']}):")
        print(textwrap.indent((r["stderr"] or r["stdout"])[-3000:], "    "))
    http = sum(t.get("requests", {}).values())
    api = t["sandbox_requests"]
    t_wall = _median([r["wall"] for r in ok])
    t_process = _median([r["process_wall"] for r in ok])
    print(f"theirs atsync account --full: {api} API requests + {t['zone_lookups']} zone lookup "
          f"= {http} HTTP requests {t.get('requests')}, {t_wall:.2f} s"
          f"{_spread([r['wall'] for r in ok])} (whole process incl. "
          f"interpreter and Django start {t_process:.2f} s); rows written {t['rows']}")  # fmt: skip
    job = t["syncjob"]
    if job:
        print(f"    SyncJob: added {job[0]}, updated {job[1]}, skipped {job[2]}, deleted {job[3]}, "
              f"success {job[4]}; {t['account_types']} account types synced beforehand; "
              f"{t['warnings']} 'Failed to find <fk>' warnings logged")  # fmt: skip
    if t["sandbox_errors"]:
        print(f"    sandbox answered errors: {t['sandbox_errors'][:5]}")
    print(f"    command output: {t['stdout'][-300:]!r}")
    if not ok or not api:
        return False
    print(f"minimum: {pages} Companies pages of 500")
    print(f"RATIO ours/theirs  requests: {o['phase_requests'] / api:.2f} (API requests, companies "
          f"phase), {o['requests'] / api:.2f} (our whole run) | wall: {o_phase / t_wall:.3f} "
          f"(companies phase vs command), "
          f"{o_run / t_wall:.3f} (our whole initial run vs command) | rows: "
          f"{o['rows'] / max(t['rows'], 1):.2f}  -> theirs takes {t_wall / o_phase:.1f}x as "
          f"long")  # fmt: skip
    return not failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--companies", type=int, default=2_000)
    parser.add_argument("--latency-ms", default="100,0", help="comma-separated, e.g. 100,0")
    parser.add_argument("--repeat", type=int, default=3, help="trials per latency (median)")
    parser.add_argument("--timeout", type=float, default=900, help="per subprocess, seconds")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--partner", default="Bench MSP", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0

    started = time.monotonic()
    python = ensure_venv(args.timeout)
    common.start_services()
    common.migrate()
    project = TheirProject(python, args.timeout)
    all_ok = True
    try:
        for latency in [int(x) for x in args.latency_ms.split(",") if x.strip()]:
            sandbox = common.Sandbox(companies=args.companies, invoices=0, latency_ms=latency)
            try:
                active = _active_companies(sandbox)
                print(f"\n-- {latency} ms latency --")
                ours, theirs = [], []
                for i in range(1, args.repeat + 1):
                    ours.append(run_ours(sandbox, f"Bench companies {latency} {i}", args.timeout))
                    theirs.append(run_theirs(project, sandbox, f"l{latency}_{i}"))
                    trial_line(i, ours[-1], theirs[-1])
                all_ok &= report(args.companies, latency, active, ours, theirs)
            finally:
                sandbox.stop()
    finally:
        project.cleanup()
    print(f"\nbench took {time.monotonic() - started:.0f} s")
    return 0 if all_ok else 1


def _active_companies(sandbox: common.Sandbox) -> int:
    """How many sandbox companies are active (POST Companies/query/count; before the runs)."""
    import urllib.request

    url = f"{sandbox.zone_lookup_url}?user={common.SANDBOX_USER}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        zone = json.loads(resp.read())["url"]
    body = json.dumps({"filter": [{"op": "eq", "field": "isActive", "value": True}]}).encode()
    req = urllib.request.Request(f"{zone}V1.0/Companies/query/count", data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("UserName", common.SANDBOX_USER)
    req.add_header("Secret", common.SANDBOX_SECRET)
    req.add_header("ApiIntegrationCode", common.INTEGRATION_CODE)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["queryCount"]


if __name__ == "__main__":
    sys.exit(main())
