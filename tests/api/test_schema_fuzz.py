"""API fuzzing (TL-2, issue 9; issue 18): `schemathesis run` (its own process, every check, every
phase: examples, coverage, fuzzing and the stateful phase over the links of our schema) against
gunicorn serving this test's database, authenticated with an API token made for the test; the
Autotask sandbox stands in for Autotask. The partner is connected and synced first, so lists,
invoices, customers and sync runs have rows.

0 server errors, 0 failed checks, except the failures in schemathesis_hooks.ACCEPTED (each
matched exactly: operation, failure, status and answer; each justified there and in README
"Tests and benchmarks"). Bounded:
MAX_EXAMPLES per operation, deterministic (`--generation-deterministic`, seed SEED), so a
failure reproduces; about a minute. Reproduce by hand against a running server with the
command the test prints."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from partners.models import ApiToken
from partners.tokens import api_token_create
from tests.harness.gunicorn import Gunicorn
from tests.harness.workers import ROOT, worker_environment

pytestmark = pytest.mark.django_db(transaction=True)

MAX_EXAMPLES = 15
SEED = 18
STATEFUL_MAX_STEPS = 20
TIMEOUT = 300
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))


def _toml(value) -> str:
    return json.dumps(value)  # strings, lists and numbers: JSON's spelling is TOML's


def schemathesis_config(hooks: str) -> str:
    lines = [
        f"seed = {SEED}",
        f"hooks = {_toml(hooks)}",
        "[generation]",
        f"max-examples = {MAX_EXAMPLES}",
        "deterministic = true",
        'mode = "all"',
        'database = "none"',
        # No state kept between runs (in the repository, by default): each run is the same.
        "[cache]",
        "enabled = false",
        "[phases.stateful]",
        f"max-steps = {STATEFUL_MAX_STEPS}",
        "[auth.openapi.tokenAuth]",
        'bearer = "${PAYSYNC_FUZZ_TOKEN}"',
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def live(user_a, partner_a, connect, run_now, autotask_sandbox, tmp_path):
    connection = connect(partner_a, user=user_a)
    run_now(connection.first_run)
    env = worker_environment(autotask_sandbox)
    env["LOG_LEVEL"] = "WARNING"
    server = Gunicorn(env, tmp_path / "gunicorn.log", workers=1)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        from config.celery import app

        app.control.purge()  # the write-backs and syncs no worker took


def test_schemathesis_over_the_live_server(live, user_a, tmp_path):
    own, raw = api_token_create(user=user_a, name="Schema fuzz")
    decoy, _ = api_token_create(user=user_a, name="Schema fuzz decoy")
    config = tmp_path / "schemathesis.toml"
    config.write_text(schemathesis_config("tests.api.schemathesis_hooks"))
    command = [
        SCHEMATHESIS,
        "--config-file",
        str(config),
        "run",
        f"{live.base_url}/api/v1/schema/?format=json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path / "report"),
        "--no-color",
    ]
    env = {
        **live.env,
        "PAYSYNC_FUZZ_TOKEN": raw,
        "PAYSYNC_FUZZ_OWN_TOKEN_ID": str(own.pk),
        "PAYSYNC_FUZZ_DECOY_TOKEN_ID": str(decoy.pk),
        "PYTHONPATH": str(ROOT),
        "PAYSYNC_FUZZ_ACCEPTED_LOG": str(tmp_path / "accepted.log"),
    }
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    output = result.stdout + result.stderr
    print(output)
    print(
        "Reproduce: PAYSYNC_FUZZ_TOKEN=<token> PAYSYNC_FUZZ_OWN_TOKEN_ID=<its id> "
        "PAYSYNC_FUZZ_DECOY_TOKEN_ID=<another token's id>",
        shlex.join(command),
    )
    print("gunicorn log (tail):\n", live.log()[-4000:])
    accepted_log = tmp_path / "accepted.log"
    lines = accepted_log.read_text().splitlines() if accepted_log.exists() else []
    print("Accepted failures (schemathesis_hooks.ACCEPTED):")
    for line, count in Counter(lines).most_common():
        print(f"  {count:5d}  {line}")
    assert result.returncode == 0, "schemathesis found failures: see the captured output"
    assert "Traceback" not in live.log()
    # The fuzzer's own token was never revoked: it worked to the end.
    own.refresh_from_db()
    assert own.revoked_at is None
    assert ApiToken.objects.filter(user=user_a).count() >= 2
    # Every operation through every phase, the stateful one following links.
    assert re.search(r"Operations:\s+(\d+) selected / \1 total", output)
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅\s+{phase} \(in", output), phase
    assert int(re.search(r"API Links:\s+(\d+) covered", output)[1]) >= 20
    generated, passed = re.search(r"(\d+) generated, (\d+) passed", output).groups()
    assert generated == passed and int(generated) >= 1000
