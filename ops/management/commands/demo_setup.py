"""Demo data for a newcomer's first run (idempotent): two partners against the Autotask
sandbox, one connected (its invoices arrive within a minute) and one not yet connected (to try
the Connect form with the printed sandbox credentials).

Passwords and sandbox secrets are generated once and kept in var/ (never in git), so every run
prints the same working credentials. The same file holds the ops login: a superuser `ops` for
the Django admin (/admin/), the ops console (its password, like the partners', is set again
from the file at every run, so the printed one always works).

What it prints about each partner is read from the database at that moment (connected, needs
attention, not connected), never assumed: Second MSP says "connected" once someone connected it.

  manage.py demo_setup --write-sandbox-config var/sandbox.json --sandbox-port 8001
  manage.py demo_setup --connect          # after the sandbox answers
"""

import json
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from integrations.connect import ConnectError, autotask_connect
from integrations.models import AutotaskConnection
from integrations.selectors import connection_for
from partners.models import Partner, User

PARTNERS = [
    # slug, name, username, sandbox user
    ("demo-msp", "Demo MSP", "demo", "api-demo@sandbox.test"),
    ("second-msp", "Second MSP", "demo2", "api-second@sandbox.test"),
]
OPS_USERNAME = "ops"


def _state() -> dict:
    path = settings.VAR_DIR / "demo-credentials"
    state = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for slug, _, username, sandbox_user in PARTNERS:
        if slug not in state:
            state[slug] = {
                "username": username,
                "password": secrets.token_urlsafe(12),
                "sandbox_user": sandbox_user,
                "sandbox_secret": secrets.token_urlsafe(18),
            }
            changed = True
    if "ops" not in state:
        state["ops"] = {"username": OPS_USERNAME, "password": secrets.token_urlsafe(12)}
        changed = True
    if changed:
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(state, indent=2))
        path.chmod(0o600)
    return state


CONNECTION_WORDS = {
    AutotaskConnection.Status.CONNECTED: "Autotask connected",
    AutotaskConnection.Status.NEEDS_ATTENTION: "Autotask connection needs attention",
    AutotaskConnection.Status.DISCONNECTED: "disconnected",
}


def _ensure_ops_user(creds: dict) -> None:
    """The ops login: a staff superuser without a partner (staff never belong to one)."""
    user = User.objects.filter(username=creds["username"]).first() or User(
        username=creds["username"], email=f"{creds['username']}@paysync.test"
    )
    user.partner, user.is_staff, user.is_superuser, user.is_active = None, True, True, True
    user.set_password(creds["password"])
    user.save()


class Command(BaseCommand):
    help = "Create (or keep) the demo partners and users, and print how to sign in."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="Where the web runs.")
        parser.add_argument("--write-sandbox-config", metavar="PATH")
        parser.add_argument("--sandbox-port", type=int, default=8001)
        parser.add_argument(
            "--connect",
            action="store_true",
            help="Connect the first demo partner to the running sandbox.",
        )

    def handle(self, *args, url, write_sandbox_config, sandbox_port, connect, **options):
        state = _state()
        with transaction.atomic():
            for slug, name, _, _ in PARTNERS:
                creds = state[slug]
                partner, _ = Partner.objects.get_or_create(
                    slug=slug,
                    defaults={"name": name, "primary_integration": Partner.Integration.AUTOTASK},
                )
                user = User.objects.filter(username=creds["username"]).first() or User(
                    username=creds["username"], email=f"{creds['username']}@example.test"
                )
                user.partner, user.role, user.is_active = partner, User.Role.OWNER, True
                user.set_password(creds["password"])
                user.save()
            _ensure_ops_user(state["ops"])

        if write_sandbox_config:
            config = {
                "host": "127.0.0.1",
                "port": sandbox_port,
                "databases": [
                    {
                        "username": state[slug]["sandbox_user"],
                        "secret": state[slug]["sandbox_secret"],
                        "integration_code": settings.AUTOTASK_INTEGRATION_CODE,
                        "seed": n + 1,
                        "companies": 25,
                        "invoices": 300,
                        "ci": 9001 + n,
                        "zone_name": f"Sandbox Zone {n + 1}",
                    }
                    for n, (slug, *_rest) in enumerate(PARTNERS)
                ],
            }
            with open(write_sandbox_config, "w") as fh:
                json.dump(config, fh, indent=2)
            return

        if connect:
            self._connect_first(state)

        self.stdout.write(self.style.SUCCESS(f"PaySync demo: open {url}"))
        for slug, name, _, _ in PARTNERS:
            creds = state[slug]
            conn = connection_for(partner=Partner.objects.get(slug=slug))
            status = conn.status if conn is not None else None
            label = CONNECTION_WORDS.get(status, "not connected yet")
            self.stdout.write(
                f"  {f'{name} ({label}):':<40} sign in as {creds['username']} / {creds['password']}"
            )
            if status is None or status == AutotaskConnection.Status.DISCONNECTED:
                self.stdout.write(
                    f"    then Integrations → Connect with Username (Key) {creds['sandbox_user']} "
                    f"and Password (Secret) {creds['sandbox_secret']}"
                )
        ops = state["ops"]
        admin_url = url.rstrip("/") + "/admin/"
        self.stdout.write(
            f"  {'Ops console (Django admin):':<40} {admin_url} as {ops['username']} / "
            f"{ops['password']}"
        )

    def _connect_first(self, state):
        slug = PARTNERS[0][0]
        partner = Partner.objects.get(slug=slug)
        conn = connection_for(partner=partner)
        if conn and conn.is_active:
            return
        try:
            autotask_connect(
                partner=partner,
                actor=None,
                account_email="billing@demo-msp.test",
                username=state[slug]["sandbox_user"],
                secret=state[slug]["sandbox_secret"],
                identifier="invoice_number",
                filters={},
            )
        except ConnectError as exc:
            raise CommandError(f"Could not connect the demo partner: {exc.message}") from exc
        self.stdout.write("  Demo MSP connected to the sandbox; its first sync is queued.")
