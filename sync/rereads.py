"""The re-read phases of the sync engine: the daily unpaid (and recently paid) re-read by id,
the id reconcile of late-visible invoices, the manual Fetch New Data's re-read of recent open
invoices, and the daily re-read of every company. Id batches are known in advance, so they are
read up to 3 at a time (`ParallelReads`) and applied in id order, one transaction each. A
mixin of `SyncEngine` (sync/engine.py), which owns the reading, applying and fenced commits
these phases use."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Q as Where

from customers.models import Customer
from integrations import filters as sync_filters
from integrations.autotask.query import Q, Query
from integrations.autotask.records import Company
from integrations.autotask.records import Invoice as AutotaskInvoice
from invoices.models import Invoice, InvoiceStatus

from .models import SyncState
from .prefetch import ParallelReads
from .tuning import (
    IN_BATCH,
    PAGE_SIZE,
    RECENT_OPEN_MAX,
    RECENT_OPEN_WINDOW,
    RECENTLY_PAID,
    RECONCILE_WINDOW,
    REREAD_CONCURRENCY,
    _parse,
)
from .upsert import flag_missing

log = logging.getLogger(__name__)


class RereadPhases:
    def _reads_by_id(self, entity: str, chunks: list[list[int]]) -> ParallelReads:
        """Id batches read up to REREAD_CONCURRENCY at a time (Autotask allows 3 in flight
        per endpoint; the limiter still takes a slot per request), applied in id order."""

        def read(chunk: list[int]) -> list[dict]:
            query = Query(filters=[Q.in_("id", chunk)], max_records=PAGE_SIZE)
            items: list[dict] = []
            for page in self.client.iter_pages(entity, query, parse=False):
                items.extend(page.items)
            return items

        return ParallelReads(read, chunks, workers=REREAD_CONCURRENCY)

    def _unpaid_phase(self) -> None:
        """Unpaid and recently paid (RECENTLY_PAID: in Autotask by paidDate, here by the last
        change of the invoice) Autotask invoices, archived ones included (hidden, but their
        paid/voided state keeps following), re-read by id in the same batches: an invoice
        un-paid in Autotask re-opens here unless payments here cover it."""
        after = self.cursor.get("unpaid_after_id", 0)
        since = _parse(self.cursor["started"]) - RECENTLY_PAID
        recently_paid = Where(paid_in_autotask_on__gte=since.date()) | Where(
            paid_in_autotask_on__isnull=True, updated_at__gte=since
        )
        ids = list(
            Invoice.objects.for_partner(self.partner)
            .filter(source="autotask", autotask_id__gt=after)
            .filter(
                Where(status__in=[InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID])
                | (Where(status=InvoiceStatus.PAID) & recently_paid)
            )
            .order_by("autotask_id")
            .values_list("autotask_id", flat=True)
        )
        chunks = [ids[start : start + IN_BATCH] for start in range(0, len(ids), IN_BATCH)]
        with self._reads_by_id("Invoices", chunks) as reads:
            for chunk, items in reads:
                self._apply_unpaid_batch(chunk, items)
        self.cursor["unpaid_done"] = True

    def _apply_unpaid_batch(self, chunk: list[int], items: list[dict]) -> None:
        records = self._parse_records(AutotaskInvoice, items)
        returned = {item.get("id") for item in items}
        with transaction.atomic():
            self._apply_invoices(records)
            missing = [i for i in chunk if i not in returned]
            if missing:
                flagged = flag_missing(
                    model=Invoice,
                    partner=self.partner,
                    autotask_ids=missing,
                    record_type="invoice",
                    run=self.run,
                    now=self.clock(),
                )
                self.counts["updated"] += flagged
            self.cursor["unpaid_after_id"] = chunk[-1]
            self._commit_page("unpaid")

    def _reconcile_phase(self) -> None:
        """The daily id reconcile (SY-2). An invoice that becomes visible in Autotask later than
        the hourly run's OVERLAP reaches back (created before the cursor) is outside every
        hourly window: list the ids (ids only, 500 a request) of the invoices passing the
        filters created in the RECONCILE_WINDOW before the cursor, and fetch the ones missing
        here by id, like an hourly run would. With 24 h between runs, an invoice up to ~2 days
        late is caught."""
        if self.cursor.get("reconcile_done"):
            return
        until = SyncState.objects.get(partner=self.partner).invoices_created_cursor
        ids: list[int] = []
        if until is not None:
            conds = [
                *sync_filters.invoice_conditions(self.filters),
                Q.gte("createDateTime", until - RECONCILE_WINDOW),
                Q.lte("createDateTime", until),
            ]
            query = Query(filters=conds, include_fields=["id"], max_records=PAGE_SIZE)
            for page in self.client.iter_pages("Invoices", query, parse=False):
                ids.extend(item["id"] for item in page.items)
        known = set(
            Invoice.objects.for_partner(self.partner)
            .filter(autotask_id__in=ids)
            .values_list("autotask_id", flat=True)
        )
        missing = sorted(set(ids) - known)
        chunks = [missing[start : start + IN_BATCH] for start in range(0, len(missing), IN_BATCH)]
        with self._reads_by_id("Invoices", chunks) as reads:
            for _, items in reads:
                records = self._parse_records(AutotaskInvoice, items)
                self._fetch_missing_companies(records)
                with transaction.atomic():
                    self._apply_invoices(records)
                    self._commit_page("reconcile")
        self.cursor["reconcile_done"] = True

    def _recent_open_phase(self) -> None:
        """Fetch New Data started by a person (not the hourly schedule, which stays at 3
        requests): the unpaid invoices here created in Autotask in the last RECENT_OPEN_WINDOW,
        the RECENT_OPEN_MAX newest, re-read by id like the daily run (≤ 2 requests), so one
        paid, voided or changed in Autotask since is updated now (issue 16: Autotask does not
        edit posted invoices; "updated" is mostly paidDate and voids)."""
        if self.cursor.get("recent_open_done"):
            return
        since = _parse(self.cursor["started"]) - RECENT_OPEN_WINDOW
        after = self.cursor.get("recent_open_after_id", 0)
        newest = (
            Invoice.objects.for_partner(self.partner)
            .filter(
                source="autotask",
                archived_at__isnull=True,
                status__in=[InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID],
                autotask_created_at__gte=since,
            )
            .order_by("-autotask_created_at", "-autotask_id")
            .values_list("autotask_id", flat=True)[:RECENT_OPEN_MAX]
        )
        ids = sorted(i for i in newest if i > after)
        chunks = [ids[start : start + IN_BATCH] for start in range(0, len(ids), IN_BATCH)]
        with self._reads_by_id("Invoices", chunks) as reads:
            for chunk, items in reads:
                records = self._parse_records(AutotaskInvoice, items)
                returned = {item.get("id") for item in items}
                with transaction.atomic():
                    self._apply_invoices(records)
                    missing = [i for i in chunk if i not in returned]
                    if missing:
                        self.counts["updated"] += flag_missing(
                            model=Invoice,
                            partner=self.partner,
                            autotask_ids=missing,
                            record_type="invoice",
                            run=self.run,
                            now=self.clock(),
                        )
                    self.cursor["recent_open_after_id"] = chunk[-1]
                    self._commit_page("recent_open")
        self.cursor["recent_open_done"] = True

    def _companies_reread_phase(self) -> None:
        """The daily run re-reads every company (companies are few: 500 a request), unfiltered:
        changes are caught whichever date field Autotask honours, and a customer here whose
        company Autotask no longer returns (deleted, or no longer visible to the API user) is
        flagged "no longer in Autotask" (R8, like invoices; never archived; it clears when the
        company comes back). Companies the filters keep are upserted, as are customers already
        here; unfiltered so a company a filter leaves out is not taken for deleted. Ids come in
        ascending order: each page flags the customers between the previous page's last id and
        its own, the end of the phase those after the last one, so a resumed run flags the
        same."""
        phase = "companies_all"
        if self.cursor.get(f"{phase}_done"):
            return
        after = self.cursor.get(f"{phase}_after_id", 0)
        query = Query(filters=[Q.gt("id", after)], max_records=PAGE_SIZE)
        for page in self.client.iter_pages("Companies", query, parse=False):
            returned = {item.get("id") for item in page.items}
            last_id = self._last_id(phase, page)
            companies = self._parse_records(Company, page.items)
            here = set(
                Customer.objects.for_partner(self.partner)
                .filter(autotask_id__in=[c.id for c in companies])
                .values_list("autotask_id", flat=True)
            )
            # Before the page's transaction: it may read the Currencies (one request).
            kept = [
                c for c in companies if c.id in here or sync_filters.company_passes(self.filters, c)
            ]
            rows = self._customer_rows(kept)
            with transaction.atomic():
                self._apply_customers(rows)
                self._flag_missing_customers(after, last_id, returned)
                self.cursor[f"{phase}_after_id"] = after = last_id
                self._commit_page(phase)
        with transaction.atomic():
            self._flag_missing_customers(after, None, set())
            self.cursor[f"{phase}_done"] = True
            self._commit_page(phase)

    def _flag_missing_customers(self, after: int, until: int | None, returned: set) -> None:
        """Flag the customers here with an Autotask id in (after, until] (until None: no upper
        bound) that are not in `returned`."""
        known = Customer.objects.for_partner(self.partner).filter(
            source="autotask",
            archived_at__isnull=True,
            missing_in_autotask_since__isnull=True,
            autotask_id__gt=after,
        )
        if until is not None:
            known = known.filter(autotask_id__lte=until)
        missing = [i for i in known.values_list("autotask_id", flat=True) if i not in returned]
        if missing:
            self.counts["updated"] += flag_missing(
                model=Customer,
                partner=self.partner,
                autotask_ids=missing,
                record_type="customer",
                run=self.run,
                now=self.clock(),
            )
