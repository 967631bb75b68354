"""Re-encrypt every stored secret under the first FIELD_ENCRYPTION_KEYS key.

Run after putting a new key first in the list (keep the old ones after it), then drop the old
keys once this reports 0 rows left. Batched and resumable: rows already on the first key are
skipped, so a second run (or a run after a crash) touches nothing it need not."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from config.encryption import Sealed, SecretUnavailable, encrypted_fields, rotate_token


class Command(BaseCommand):
    help = "Re-encrypt stored credentials under the first key of FIELD_ENCRYPTION_KEYS."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size, **options):
        total_rotated = total_failed = 0
        for model, field in encrypted_fields():
            rotated = failed = 0
            last_pk = None
            while True:
                qs = model._base_manager.exclude(**{field.attname: None}).order_by("pk")
                if last_pk is not None:
                    qs = qs.filter(pk__gt=last_pk)
                batch = list(qs.values_list("pk", field.attname)[:batch_size])
                if not batch:
                    break
                last_pk = batch[-1][0]
                with transaction.atomic():
                    for pk, sealed in batch:
                        try:
                            new = rotate_token(sealed.stored)
                        except SecretUnavailable:
                            failed += 1
                            continue
                        if new is not None:
                            # Only if nobody changed it meanwhile: compare-and-set on the old value.
                            rotated += model._base_manager.filter(
                                pk=pk, **{field.attname: sealed}
                            ).update(**{field.attname: Sealed(new)})
            label = f"{model._meta.label}.{field.name}"
            self.stdout.write(f"{label}: {rotated} re-encrypted, {failed} undecryptable")
            total_rotated += rotated
            total_failed += failed
        self.stdout.write(f"total: {total_rotated} re-encrypted, {total_failed} undecryptable")
        if total_failed:
            raise CommandError(
                f"{total_failed} value(s) could not be decrypted with any configured key."
            )
