"""``manage.py autotask_sandbox`` starts a server that answers zone lookups and queries."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_management_command_serves_two_databases():
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.development",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [
            sys.executable, "manage.py", "autotask_sandbox", "--port", str(port),
            "--invoices", "30", "--companies", "5",
            "--database", "one@x.test:s1:CODE", "--database", "two@x.test:s2:CODE",
        ],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        lookup = f"http://127.0.0.1:{port}/atservicesrest/v1.0/zoneInformation"
        deadline = time.monotonic() + 20
        while True:
            try:
                zone = requests.get(lookup, params={"user": "two@x.test"}, timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "sandbox did not start"
                time.sleep(0.1)
        assert zone.status_code == 200
        url = zone.json()["url"]
        assert url.startswith(f"http://127.0.0.1:{port}/zones/")
        headers = {"UserName": "two@x.test", "Secret": "s2", "ApiIntegrationCode": "CODE"}
        count = requests.post(
            f"{url}V1.0/Invoices/query/count", json={"filter": []}, headers=headers
        )
        assert count.json() == {"queryCount": 30}
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0]
    assert "one@x.test" in output and "two@x.test" in output and f":{port}" in output
