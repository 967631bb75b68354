"""Create the demo partner and its owner for a newcomer's first run (idempotent).

The password is generated once and kept in var/demo-credentials (never in git), so every run
prints the same working credentials."""

import json
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from partners.models import Partner, User


class Command(BaseCommand):
    help = "Create (or keep) the demo partner and user, and print how to sign in."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="Where the web runs.")

    def handle(self, *args, url, **options):
        creds_path = settings.VAR_DIR / "demo-credentials"
        if creds_path.exists():
            creds = json.loads(creds_path.read_text())
        else:
            creds = {"username": "demo", "password": secrets.token_urlsafe(12)}
            settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
            creds_path.write_text(json.dumps(creds))
            creds_path.chmod(0o600)

        with transaction.atomic():
            partner, _ = Partner.objects.get_or_create(
                slug="demo-msp",
                defaults={
                    "name": "Demo MSP",
                    "primary_integration": Partner.Integration.AUTOTASK,
                },
            )
            user = User.objects.filter(username=creds["username"]).first()
            if user is None:
                user = User(username=creds["username"], email="demo@example.test")
            user.partner, user.role, user.is_active = partner, User.Role.OWNER, True
            user.set_password(creds["password"])
            user.save()

        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: open {url} and sign in as "
                f"{creds['username']} / {creds['password']} (partner: {partner.name})"
            )
        )
