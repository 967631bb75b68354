"""Run one sync of a partner now, in this process (ops):

  manage.py sync_now PARTNER --kind new_data|unpaid [--max-wait SECONDS]

PARTNER is the partner's id or its exact name. Like the admin's "Run … now" actions
(sync/services/manual.py `sync_run_ops`): trigger "ops", no cooldown checked or changed, an
active Autotask connection needed. The run is created without a Celery task and executed here
(sync/services/runs.py `execute_run`, the same code a worker runs: partner lease, fencing,
hooks). Prints the run id, then its status and counts.

A run that has to wait (another sync of the partner holds the lease, Autotask throttles or is
down, the request budget is spent) waits here, at most --max-wait seconds in all, then tries
again. Past that the run is left queued for the workers (the reaper picks it up) and the command
says so.

Exit status: 0 the run succeeded; 1 it failed, or it could not start (unknown or ambiguous
partner, Autotask not connected), with the error kind and message; 2 it ended partial (some
records skipped as failed); 3 it is still queued after --max-wait.
"""

from __future__ import annotations

import logging
import time

from django.core.management.base import BaseCommand, CommandError

from partners.models import Partner
from sync.models import SyncRun
from sync.services.leases import RetryLater
from sync.services.manual import ManualSyncUnavailable, sync_run_ops
from sync.services.runs import execute_run

log = logging.getLogger(__name__)

KINDS = [SyncRun.Kind.NEW_DATA, SyncRun.Kind.UNPAID]
EXIT_FAILED, EXIT_PARTIAL, EXIT_STILL_QUEUED = 1, 2, 3

sleep = time.sleep  # tests replace it


def find_partner(ref: str) -> Partner:
    """The partner with id `ref` (all digits) or else exactly that name."""
    ref = ref.strip()
    if ref.isdigit():
        partner = Partner.objects.filter(pk=int(ref)).first()
        if partner is not None:
            return partner
    matches = list(Partner.objects.filter(name=ref).order_by("pk"))
    if not matches:
        raise CommandError(f"No partner with id or name {ref!r}.")
    if len(matches) > 1:
        ids = ", ".join(str(p.pk) for p in matches)
        raise CommandError(f"{len(matches)} partners are named {ref!r} (ids {ids}); pass the id.")
    return matches[0]


class Command(BaseCommand):
    help = (
        "Run one sync (new_data or unpaid) of a partner now, in this process: trigger ops, no "
        "cooldown. Exit 0 when the run succeeded."
    )

    def add_arguments(self, parser):
        parser.add_argument("partner", help="Partner id or exact name")
        parser.add_argument("--kind", required=True, choices=[str(k) for k in KINDS])
        parser.add_argument(
            "--max-wait",
            type=float,
            default=600.0,
            help="Seconds to wait in all for a busy partner, throttling or an outage "
            "(default 600); then the run is left queued for the workers.",
        )

    def handle(self, *args, partner, kind, max_wait, **options):
        partner = find_partner(partner)
        try:
            run = sync_run_ops(partner=partner, kind=kind, user=None, enqueue=False)
        except ManualSyncUnavailable as exc:
            raise CommandError(
                f"Partner {partner.pk} ({partner.name}): not_connected: {exc}",
                returncode=EXIT_FAILED,
            ) from exc
        log.info("ops sync_now: partner %s run %s (%s)", partner.pk, run.pk, kind)
        self.stdout.write(
            f"Run {run.pk}: {run.get_kind_display()} of partner {partner.pk} ({partner.name}), "
            "trigger ops"
        )
        run = self._execute(run, partner, max_wait)
        self.stdout.write(
            f"Run {run.pk}: {run.status} (fetched {run.fetched}, created {run.created}, "
            f"updated {run.updated}, unchanged {run.unchanged}, skipped {run.skipped}, "
            f"failed {run.failed}; {run.requests_used} Autotask requests)"
        )
        for reason, n in (run.skipped_reasons or {}).items():
            self.stdout.write(f"  skipped {n}: {reason}")
        if run.status == SyncRun.Status.SUCCEEDED:
            return
        if run.status == SyncRun.Status.PARTIAL:
            raise CommandError(
                f"Run {run.pk} ended partial: {run.failed} record(s) failed.",
                returncode=EXIT_PARTIAL,
            )
        if run.is_active:
            raise CommandError(
                f"Run {run.pk} is still {run.status} after waiting {max_wait:.0f} s "
                f"({run.error_kind or 'busy'}: {run.error_message or 'another sync runs'}); "
                "the workers will resume it.",
                returncode=EXIT_STILL_QUEUED,
            )
        raise CommandError(
            f"Run {run.pk} {run.status}: {run.error_kind}: {run.error_message}",
            returncode=EXIT_FAILED,
        )

    def _execute(self, run: SyncRun, partner: Partner, max_wait: float) -> SyncRun:
        waited = 0.0
        while True:
            try:
                return execute_run(partner=partner, run_id=run.pk)
            except RetryLater as exc:
                left = max_wait - waited
                if left <= 0:
                    run.refresh_from_db()
                    return run
                wait = min(exc.countdown, left)
                self.stdout.write(f"Run {run.pk}: waiting {wait:.0f} s ({exc})")
                sleep(wait)
                waited += wait
