"""``python manage.py autotask_sandbox``: run the Autotask sandbox until Ctrl-C.

One database from the single-database options, or several from ``--database
username:secret:integrationcode`` (repeatable; each gets its own data, threshold and zone
URL, with the shared --seed/--companies/--invoices/--latency-ms/--threshold) or from
``--config file.json``: ``{"host": …, "port": …, "databases": [{SandboxDatabase kwargs}]}``.

``--state PATH`` keeps the data in PATH across restarts (sandbox/persist.py: loaded at start,
saved about once a second when it changed and at stop); ``--reset`` deletes it first.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sandbox.persist import StateFile
from sandbox.server import SandboxServer
from sandbox.state import SandboxDatabase

DEFAULT_USERNAME = "api-user@sandbox.test"
DEFAULT_SECRET = "sandbox-secret"  # the sandbox's own fake credential


class Command(BaseCommand):
    help = "Run a local Autotask REST server with generated data (the Autotask sandbox)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765, help="0 = any free port")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--companies", type=int, default=20)
        parser.add_argument("--invoices", type=int, default=100)
        parser.add_argument("--latency-ms", type=int, default=0)
        parser.add_argument("--threshold", type=int, default=10_000)
        parser.add_argument("--username", default=DEFAULT_USERNAME)
        parser.add_argument("--secret", default=DEFAULT_SECRET)
        parser.add_argument(
            "--integration-code", default=None, help="default: settings.AUTOTASK_INTEGRATION_CODE"
        )
        parser.add_argument(
            "--database",
            action="append",
            default=[],
            metavar="USERNAME:SECRET:INTEGRATIONCODE",
            help="add a database (repeatable); replaces the single-database credentials",
        )
        parser.add_argument("--config", type=Path, help="JSON file with host, port, databases")
        parser.add_argument(
            "--state", type=Path, help="keep the data in this JSON file across restarts"
        )
        parser.add_argument(
            "--reset", action="store_true", help="with --state: forget the saved data first"
        )

    def handle(self, *args, **options) -> None:
        host, port = options["host"], options["port"]
        common = {
            "seed": options["seed"],
            "companies": options["companies"],
            "invoices": options["invoices"],
            "latency_ms": options["latency_ms"],
            "threshold": options["threshold"],
        }
        if options["config"]:
            try:
                config = json.loads(options["config"].read_text())
            except (OSError, ValueError) as error:
                raise CommandError(f"cannot read {options['config']}: {error}") from error
            host, port = config.get("host", host), config.get("port", port)
            specs = [{**common, **spec} for spec in config.get("databases", [])]
        elif options["database"]:
            specs = []
            for n, text in enumerate(options["database"]):
                parts = text.split(":", 2)
                if len(parts) != 3 or not all(parts):
                    raise CommandError(f"--database {text!r}: expected username:secret:code")
                username, secret, code = parts
                specs.append(
                    {**common, "username": username, "secret": secret,
                     "integration_code": code, "seed": common["seed"] + n}
                )  # fmt: skip
        else:
            specs = [
                {
                    **common,
                    "username": options["username"],
                    "secret": options["secret"],
                    "integration_code": options["integration_code"]
                    or settings.AUTOTASK_INTEGRATION_CODE,
                }
            ]
        if not specs:
            raise CommandError("no databases configured")
        started = time.perf_counter()
        try:
            databases = [SandboxDatabase(**spec) for spec in specs]
        except TypeError as error:
            raise CommandError(f"bad database settings: {error}") from error
        state = None
        if options["state"]:
            state = StateFile(options["state"], list(zip(databases, specs, strict=True)))
            if options["reset"] and state.reset():
                self.stdout.write(f"Saved sandbox data in {options['state']} deleted (--reset).")
            for line in state.load():
                self.stdout.write(f"  {line}")
        generated = time.perf_counter() - started
        for db in databases:
            db.warm()
        server = SandboxServer(databases, host=host, port=port).start()
        self.stdout.write(
            f"Autotask sandbox on {server.base_url} (data generated in {generated:.2f}s, "
            f"pages pre-rendered in {time.perf_counter() - started - generated:.2f}s)"
        )
        self.stdout.write(f"  zone lookup: {server.zone_lookup_url}?user=<username>")
        self.stdout.write(f"  control:     {server.control_url}databases  (see sandbox/README.md)")
        for db in databases:
            counts = ", ".join(f"{len(t)} {t.entity.name}" for t in db.tables.values())
            self.stdout.write(
                f"  database ci={db.ci} user={db.username} secret={db.secret} "
                f"integration code={db.integration_code}\n"
                f"    zone url={db.zone_url} seed={db.seed} threshold={db.threshold}/h "
                f"latency={db.latency_ms}ms\n    {counts}"
            )
        self.stdout.flush()
        if state is None:
            server.serve_forever()
            return
        state.start_autosave(on_error=lambda e: self.stderr.write(f"sandbox state not saved: {e}"))
        if threading.current_thread() is threading.main_thread():
            # bin/run stops its processes with SIGTERM: end like Ctrl-C, so the last changes
            # are saved (serve_forever returns on KeyboardInterrupt).
            signal.signal(signal.SIGTERM, _interrupt)
        try:
            server.serve_forever()
        finally:
            state.stop()


def _interrupt(signum, frame):
    raise KeyboardInterrupt
