"""The sandbox keeps its data across restarts (sandbox/persist.py; `autotask_sandbox --state`,
bin/run's var/sandbox/state.json): what a partner changed "in Autotask" is still there after a
restart, ids are never reused, `--reset` starts from the seed again."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from sandbox.persist import StateFile
from sandbox.state import SandboxDatabase

ROOT = Path(__file__).resolve().parents[2]
SPEC = {"username": "u@x.test", "secret": "s", "integration_code": "C", "seed": 3,
        "companies": 5, "invoices": 20, "ci": 9100,
        "company_types": {1: "Customer", 2: "Lead"}}  # fmt: skip
PAID = "2026-01-05T00:00:00.000Z"  # no generated invoice has it


def build(spec=SPEC) -> SandboxDatabase:
    return SandboxDatabase(**spec)


def first_invoice(db) -> dict:
    invoice = db.invoices()[0]
    assert invoice["paidDate"] != PAID
    return invoice


def test_changes_survive_a_restart(tmp_path):
    path = tmp_path / "state.json"
    db = build()
    state = StateFile(path, [(db, SPEC)])
    assert state.load() == ["u@x.test: new data (nothing saved yet)"]
    invoice = first_invoice(db)
    db.set_invoice_paid_date(invoice["id"], "2026-01-05")
    assert db.get_invoice(invoice["id"])["paidDate"] == PAID
    company = db.create_company(companyName="Saved Co")
    created = db.create_invoice(company["id"], lines=[{"quantity": 1, "rate": 42.5}])
    voided = db.reissue_invoice(created["id"], invoice_total=50.0)
    db.add_company_credit(company["id"], 10.0)
    db.set_switches(paid_date_null="ignore", threshold=777)
    db.set_company_types({1: "Customer", 2: "Lead", 7: "Partner"})
    db.fail_invoice_pdf(invoice["id"], "empty")
    assert state.save() is True
    assert state.save() is False  # nothing changed since: no write

    again = build()
    assert again.get_invoice(invoice["id"])["paidDate"] != PAID  # freshly generated
    lines = StateFile(path, [(again, SPEC)]).load()
    assert lines == [f"u@x.test: data loaded from {path}"]
    assert again.get_invoice(invoice["id"])["paidDate"] == PAID
    assert again.get_company(company["id"])["companyName"] == "Saved Co"
    assert again.get_invoice(voided["voided_id"])["isVoided"] is True
    assert again.get_invoice(voided["new_id"]) == db.get_invoice(voided["new_id"])
    assert again.invoices() == db.invoices() and again.companies() == db.companies()
    assert again.pending_credits(company["id"]) == db.pending_credits(company["id"])
    assert again.settings() == db.settings() and again.settings()["threshold"] == 777
    assert dict(again.company_types)[7] == "Partner"
    assert again.pdf_failures == {invoice["id"]: "empty"}
    # Ids and numbers go on where they stopped: a deleted row's id never comes back.
    db.delete_company(company["id"])
    StateFile(path, [(db, SPEC)]).save(force=True)
    third = build()
    StateFile(path, [(third, SPEC)]).load()
    assert third.get_company(company["id"]) is None
    assert third.create_company(companyName="Next")["id"] > company["id"]
    some = db.companies()[1]["id"]
    assert db.create_invoice(some)["invoiceNumber"] == third.create_invoice(some)["invoiceNumber"]


def test_changed_configuration_starts_fresh_and_reset_deletes(tmp_path):
    path = tmp_path / "state.json"
    db = build()
    StateFile(path, [(db, SPEC)]).load()
    invoice = first_invoice(db)
    db.set_invoice_paid_date(invoice["id"], "2026-01-05")
    StateFile(path, [(db, SPEC)]).save(force=True)

    other_spec = {**SPEC, "invoices": 25}
    other = build(other_spec)
    lines = StateFile(path, [(other, other_spec)]).load()
    assert lines == ["u@x.test: new data (its configuration changed since saved)"]
    assert other.get_invoice(invoice["id"])["paidDate"] != PAID

    state = StateFile(path, [(build(), SPEC)])
    assert state.reset() is True and not path.exists()
    assert state.reset() is False


def test_unreadable_file_is_reported_and_data_is_new(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    db = build()
    [line] = StateFile(path, [(db, SPEC)]).load()
    assert line.startswith(f"cannot read {path}")
    assert len(db.invoices()) == 20


# --- the management command, as bin/run runs it ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(tmp_path, port, *extra):
    config = tmp_path / "sandbox.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": port, "databases": [
        {"username": "u@x.test", "secret": "s", "integration_code": "C", "seed": 3,
         "companies": 5, "invoices": 20, "ci": 9100}]}))  # fmt: skip
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.development",
           "PAYSYNC_VAR_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "autotask_sandbox", "--config", str(config),
         "--state", str(tmp_path / "state.json"), *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    control = f"http://127.0.0.1:{port}/_sandbox/databases/9100"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(control, timeout=1)
            return proc, control
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()  # never leave a server behind
                raise AssertionError(f"sandbox did not start: {proc.communicate()[0]}") from None
            time.sleep(0.1)


def _stop(proc) -> str:
    proc.send_signal(signal.SIGTERM)  # as bin/run stops it
    return proc.communicate(timeout=15)[0]


def test_command_keeps_data_across_restarts_until_reset(tmp_path):
    port = _free_port()
    # The same seed and sizes generate the same data in-process.
    generated = first_invoice(build({**SPEC, "company_types": None}))
    target = generated["id"]
    proc, control = _start(tmp_path, port)
    try:
        patched = requests.patch(
            f"{control}/invoices/{target}", json={"paidDate": "2026-02-03"}, timeout=5
        )
        assert patched.status_code == 200
    finally:
        output = _stop(proc)
    assert "new data (nothing saved yet)" in output
    assert (tmp_path / "state.json").exists()

    proc, control = _start(tmp_path, port)
    try:
        item = requests.get(f"{control}/invoices/{target}", timeout=5).json()["item"]
        assert item["paidDate"] == "2026-02-03T00:00:00.000Z"
    finally:
        output = _stop(proc)
    assert "data loaded from" in output

    proc, control = _start(tmp_path, port, "--reset")
    try:
        item = requests.get(f"{control}/invoices/{target}", timeout=5).json()["item"]
        assert item["paidDate"] == generated["paidDate"]
    finally:
        output = _stop(proc)
    assert "deleted (--reset)" in output and "new data (nothing saved yet)" in output
