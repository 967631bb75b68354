"""`manage.py demo_setup` (what bin/run prints at start-up): the ops login kept with the demo
passwords in var/demo-credentials, and each demo partner's real connection state."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from partners.models import Partner, User
from tests.harness.sync import connect_to

pytestmark = pytest.mark.django_db


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def demo_setup(*args) -> str:
    out = StringIO()
    call_command("demo_setup", *args, stdout=out)
    return out.getvalue()


def test_ops_login_is_created_once_kept_and_printed(var_dir, client):
    first = demo_setup()
    creds = json.loads((var_dir / "demo-credentials").read_text())["ops"]
    assert (var_dir / "demo-credentials").stat().st_mode & 0o777 == 0o600
    ops = User.objects.get(username=creds["username"])
    assert (ops.is_staff, ops.is_superuser, ops.partner_id) == (True, True, None)
    assert f"http://127.0.0.1:8000/admin/ as {creds['username']} / {creds['password']}" in first
    # Generated once: a second start prints the same password, and it still signs in.
    second = demo_setup()
    assert json.loads((var_dir / "demo-credentials").read_text())["ops"] == creds
    assert f"{creds['username']} / {creds['password']}" in second
    assert User.objects.filter(username=creds["username"]).count() == 1
    assert client.login(username=creds["username"], password=creds["password"])
    assert client.get("/").headers["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_start_up_message_tells_each_partners_real_state(var_dir, autotask_sandbox):
    before = demo_setup()
    assert "Demo MSP (not connected yet):" in before
    assert "Second MSP (not connected yet):" in before
    assert before.count("then Integrations → Connect") == 2

    second = Partner.objects.get(slug="second-msp")
    conn = connect_to(second, autotask_sandbox.db)
    after = demo_setup()
    assert "Second MSP (Autotask connected):" in after
    assert "Second MSP (not connected yet)" not in after
    assert after.count("then Integrations → Connect") == 1  # only Demo MSP still offers it

    conn.record_error("auth:permission", "no permission", needs_attention=True)
    assert "Second MSP (Autotask connection needs attention):" in demo_setup()
