"""The sandbox's data kept in a file across restarts (``autotask_sandbox --state PATH``; bin/run
uses ``var/sandbox/state.json``).

The app keeps its copies of invoices and payments in its database across ``bin/run``
restarts; a sandbox that regenerated its data at every start would forget what the partner
changed "in Autotask" (a paidDate written back, a voided invoice, a new company) while the app
still remembers it. So the server's databases are saved to one JSON file:

- saved by a background thread about once a second, only when something changed
  (``SandboxDatabase.data_version``), and once more when the server stops; written to a
  temporary file and renamed, so a crash mid-write leaves the previous copy whole;
- loaded at start for every database whose configuration (username, ci, seed, sizes,
  currencies, company types) is the one it was saved with; a database whose configuration
  changed starts from freshly generated data (and says so);
- what is saved: rows, ids ever used, invoice numbers, pending credits, the company-type
  picklist, switches, threshold, latency and PDF failures. Not the request log, the rolling
  hour's count or the fault plan: those belong to one run.

``--reset`` (bin/run ``--reset-sandbox``) deletes the file first: the data is generated again
from the seed, as on the very first start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.state import SandboxDatabase

FORMAT = 1
SAVE_EVERY_SECONDS = 1.0


def config_key(spec: dict[str, Any]) -> str:
    """A database's identity and generation settings: saved data belongs to these only."""
    keep = ("username", "ci", "seed", "companies", "invoices", "currencies", "company_types")
    wanted = {k: spec.get(k) for k in keep}
    return hashlib.sha256(json.dumps(wanted, sort_keys=True, default=str).encode()).hexdigest()


class StateFile:
    """Load and save the data of `databases` (paired with the specs they were built from)."""

    def __init__(self, path: Path, databases: list[tuple[SandboxDatabase, dict[str, Any]]]):
        self.path = Path(path)
        self.databases = databases
        self._saved_versions: dict[int, tuple] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reset(self) -> bool:
        """Forget the saved data; True if there was any."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True

    def load(self) -> list[str]:
        """Apply the saved data to each matching database; one line per database saying what
        happened (for the start-up message)."""
        if not self.path.exists():
            return [f"{db.username}: new data (nothing saved yet)" for db, _ in self.databases]
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError) as error:
            return [f"cannot read {self.path} ({error}): every database starts with new data"]
        entries = saved.get("databases", {}) if saved.get("format") == FORMAT else {}
        lines = []
        for db, spec in self.databases:
            entry = entries.get(db.username)
            if entry is None:
                lines.append(f"{db.username}: new data (nothing saved yet)")
            elif entry.get("config") != config_key(spec):
                lines.append(f"{db.username}: new data (its configuration changed since saved)")
            else:
                db.import_state(entry["state"])
                lines.append(f"{db.username}: data loaded from {self.path}")
            self._saved_versions[db.ci] = db.data_version()
        return lines

    def save(self, *, force: bool = False) -> bool:
        """Write the file if any database changed since the last save (or `force`)."""
        with self._lock:
            versions = {db.ci: db.data_version() for db, _ in self.databases}
            if not force and versions == self._saved_versions:
                return False
            document = {
                "format": FORMAT,
                "databases": {
                    db.username: {"config": config_key(spec), "state": db.export_state()}
                    for db, spec in self.databases
                },
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(document, separators=(",", ":")))
            os.replace(tmp, self.path)
            self._saved_versions = versions
            return True

    def start_autosave(self, on_error: Callable[[Exception], None] | None = None) -> None:
        def loop() -> None:
            while not self._stop.wait(SAVE_EVERY_SECONDS):
                try:
                    self.save()
                except OSError as error:  # a full disk must not stop the sandbox
                    if on_error:
                        on_error(error)

        self._thread = threading.Thread(target=loop, name="sandbox-autosave", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the autosave thread and save what changed since its last pass."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self.save()
