"""The sync engine: reads Autotask page by page and commits each page with its cursor.

Every page is one transaction that (1) upserts the page, (2) saves where to resume and the
run's counts, fenced by the run's owner token (`WHERE id = run AND owner = token`). If the
fence fails (the reaper gave the run to another worker), the page rolls back and this worker
stops: one owner writes (RELIABILITY.md §3, CQ-4). A crash loses at most the page in flight; the
next attempt resumes after the last committed id (SY-3).

Kinds (R3, R10):
- initial: payment terms, every company, every invoice that passes the filters.
- new_data: invoices created since the cursor (minus an overlap), the companies they need
  (fetched by id, batched), and companies created or changed since the cursor. Idle: 3 requests.
- unpaid: every unpaid Autotask invoice here, and those paid in the last 60 days, archived
  ones included, re-read by id (≤ 400 per request); those Autotask no longer returns are
  flagged missing (R8), never archived. What of a read is adopted is the reconciliation rule
  (registered by payments through sync/hooks.py). Then the id
  reconcile: invoices created in the days before the cursor that are not here (visible in
  Autotask later than the overlap reaches back) are fetched by id (SY-2).

Initial sync in id ranges (issue 19; sync/ranges.py). Autotask allows 3 requests in flight per
endpoint per database, so the initial sync reads invoices with up to 3 readers, each through
the limiter's slots, while this thread writes (parsing, rows, SQL): a pipeline, pages committed
in arrival order, each with its own range's cursor. Decisions:
- Learn the span cheaply: the phase's query `id gt after` is read page by page (the probe: 1
  page; with 2, the probe's second round left two of the invoices' three slots idle) while
  one `query/count` of the phase's rows is asked at the same time (count ahead: the split
  starts a round earlier than a count asked after the probe; the price is one request for a
  phase that ends within the probe, at most one per phase, once per partner). The probed rows
  give the density (ids per row). Ranges: 3, planned for the fewest rounds of the busiest
  reader (`plan_ranges`: a bounded range counts on a page less 6 % per request, as the
  density is off by a few % and a row over costs a request), the last open-ended (`id gt x`),
  so a wrong estimate costs balance, never correctness: ids beyond it are read by the last
  range. Cost: the count plus one or two partial pages when the density holds; fewer pages
  left than the phase's minimum (6 for invoices, 2 for companies): no split, the probe's query
  goes on (the count was the only extra).
- Companies are split too (from 2 pages left): every invoice page waits for the last company
  page (an invoice needs its customer), so the companies' reading is the start of the
  invoices' writing (bench/sync_initial.py: 4 company pages 0.56 → 0.41 s).
- The readers only read: each page is prepared (parsed, and each invoice's values and
  fingerprint computed but for its customer's currency) on one preparer thread, in arrival
  order, so a reader asks for its next page at once. Once the companies are written, the
  writer reads the partner's customers once (`_customers_known`: id and currency of those not
  archived); from then on the preparer also builds each page's INSERT with them, and the
  writer runs it guarded by each invoice's customer in the statement itself (still the
  partner's, not archived, same currency: `CUSTOMER_STILL_SO`), then upserts only what it left
  (a resumed run's rows, a customer archived or changed meanwhile, a due date from the
  payment terms, an unknown customer), looking those customers up (sync/upsert.py). The
  writer had been the sync's bound, looking up each page's customers and building its INSERT
  (bench/sync_initial.py: upsert 1.2-1.4 s → 0.65-0.72 s for 20,000 invoices).
- Cursor: `invoices_ranges` = [[after, until, done], ...] in `SyncRun.cursor` (JSON: no
  migration), saved with every page; a resumed run reads each unfinished range after its
  committed id and never reads a committed page again (`companies_ranges` likewise). Companies
  are read meanwhile on their own endpoint; invoices are written after them, their readers at
  most RANGE_DEPTH pages ahead.
- Result order (API.md: UNVERIFIED for REST): every page is checked for ascending ids above
  the reader's previous ones. Probe pages out of order: no split, the phase is one query read
  to its end (nextPageUrl walks every row whatever the order). Any page out of order marks
  `<phase>_unordered`: cursors stop moving, so a resumed run reads the unfinished ranges (or
  the query) from their start again: idempotent upserts, nothing missed. (A server sorting each
  page but not across pages could fool the check before it is seen; `id gt last` paging, which
  every Autotask client relies on, would fail there too.)

Invoices younger than the settle time are left for the next run (Autotask can expose an invoice
before its invoicing run is finished); the cursor stops at the settle cut-off so none is missed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import connections, router, transaction
from django.db.models import F
from django.utils import timezone

import config.lookups  # noqa: F401  (registers `__any`, used by the queries below)
from customers.models import Customer
from customers.services import SYNCED_FIELDS as CUSTOMER_FIELDS
from customers.services import customer_values_from_company
from integrations import filters as sync_filters
from integrations.autotask.client import AutotaskClient
from integrations.autotask.errors import (
    AutotaskRequestError,
    AutotaskResponseError,
    AutotaskTransientError,
)
from integrations.autotask.query import Q, Query
from integrations.autotask.records import Company
from integrations.autotask.records import Invoice as AutotaskInvoice
from integrations.models import AutotaskConnection
from integrations.services import connection_currencies, currencies_refresh
from invoices.models import Invoice, InvoiceStatus
from invoices.pdf import fetch_and_store
from invoices.services import (
    LIFECYCLE_FIELDS,
    autotask_invoice_values,
    check_currency,
    invoice_values_from_autotask,
    protect_invoice,
)
from invoices.services import SYNCED_FIELDS as INVOICE_FIELDS

from . import hooks
from .models import SyncRun, SyncState
from .prefetch import Prefetched
from .ranges import PageEvent, PhaseReads, SplitEvent
from .rereads import RereadPhases
from .tuning import (
    IN_BATCH,
    OVERLAP,
    PAGE_SIZE,
    PDF_BATCH,
    PDF_OUTAGE_STREAK,
    READ_AHEAD,
    SETTLE_TIME,
    _iso,
    _parse,
)
from .upsert import (
    FINGERPRINT,
    HOLD,
    InsertGuard,
    PreparedInsert,
    UpsertResult,
    fingerprint_filled,
    fingerprint_parts,
    guards_supported,
    insert_new,
    prepare_insert,
    upsert_page,
)

log = logging.getLogger(__name__)

# The customer's currency is synced too (issue 16); customers/services.py maps the rest.
CUSTOMER_TRACKED = [*CUSTOMER_FIELDS, "currency"]


def parse_page(record_type, items: list[dict]) -> list:
    """Each item as a typed record, or the AutotaskResponseError saying why it is malformed.
    No side effects: reader threads call it (`PhaseReads(prepare=…)`)."""
    out: list = []
    for item in items:
        try:
            out.append(record_type.from_api(item))
        except AutotaskResponseError as exc:
            out.append(exc)
    return out


def _invoice_row(autotask_id: int, ahead: tuple, customer_id: int, currency: str) -> dict:
    """An invoice's row from what the preparer computed (`_prepare_invoices`: its values and
    the fingerprint's JSON around the currency) and its customer's id and currency. Raises
    ValueError for a currency we do not take."""
    check_currency(autotask_id, currency)
    values, parts = ahead
    row = {**values, "currency": currency, "customer_id": customer_id}
    row.pop("company_id", None)
    row[FINGERPRINT] = fingerprint_filled(parts, currency)
    return row


class _Ahead(dict):
    """{invoice id: (values, fingerprint parts)} from the preparer (`_prepare_invoices`), and
    `known`: `_insert_known`'s (records, rest, statements) when it could build them."""

    known: tuple | None = None


def _invoice_extra(row: dict) -> dict:
    return {"source": "autotask", "customer_id": row["customer_id"]}


# `_insert_known`'s guard: the customer is still the partner's, not archived, same currency.
CUSTOMER_STILL_SO = InsertGuard(
    columns=("customer_id", "partner_id", "currency"),
    condition=(
        # The table name comes from model meta; the values are the INSERT's own arrays.
        f"EXISTS (SELECT 1 FROM {Customer._meta.db_table} c WHERE c.id = {{customer_id}} "  # noqa: S608 # nosec B608
        "AND c.partner_id = {partner_id} AND c.archived_at IS NULL "
        "AND c.currency = {currency})"
    ),
)


class LeaseLost(Exception):
    """Another worker owns this run now; stop without writing."""


class _TermsOnDemand(dict):
    """Payment terms read from Autotask the first time a due date has to be derived (an invoice
    without dueDate), then kept for the run: the daily re-read seldom needs them."""

    def __init__(self, read: Callable[[], dict[int, int]]):
        super().__init__()
        self._read = read
        self._loaded = False

    def get(self, key, default=None):
        if not self._loaded:
            self.update(self._read())
            self._loaded = True
        return super().get(key, default)


class SyncEngine(RereadPhases):
    def __init__(
        self,
        *,
        run: SyncRun,
        token,
        connection: AutotaskConnection,
        client: AutotaskClient,
        clock: Callable[[], datetime] = timezone.now,
    ):
        self.run = run
        self.token = token
        self.connection = connection
        self.partner = connection.partner
        self.client = client
        self.clock = clock
        self.filters = connection.filters or {}
        self.requests_base = run.requests_used
        self.counts = {
            name: getattr(run, name)
            for name in ("fetched", "created", "updated", "unchanged", "skipped", "failed")
        }
        self.skipped_reasons: dict[str, int] = dict(run.skipped_reasons or {})
        self.cursor: dict[str, Any] = dict(run.cursor or {})
        # The connection's cached Autotask Currencies; read again at most once a run, when a
        # company names a currency not in it (`_company_currencies`).
        self.currencies = connection_currencies(connection)
        self.customers_known: dict[int, tuple[int, str]] | None = None  # `_customers_known`
        self.insert_connection = None  # the writer's, for `prepare_insert`'s SQL dialect

    # --- entry point -----------------------------------------------------------------------

    def execute(self) -> None:
        if "started" not in self.cursor:
            # Fixed on the first attempt, so a resumed run reads the same window.
            now = self.clock()
            self.cursor["started"] = _iso(now)
            self.cursor["settle_cutoff"] = _iso(now - SETTLE_TIME)
        kind = self.run.kind
        if kind == SyncRun.Kind.INITIAL:
            self._initial_phases()
        elif kind == SyncRun.Kind.NEW_DATA:
            state = SyncState.objects.get(partner=self.partner)
            inv_since = state.invoices_created_cursor
            co_since = state.companies_changed_cursor
            self._payment_terms()
            conds = self._settled(sync_filters.invoice_conditions(self.filters))
            if inv_since:
                conds.append(Q.gte("createDateTime", inv_since - OVERLAP))
            self._invoices_phase(conds, fetch_missing_companies=True)
            co_conds = sync_filters.company_conditions(self.filters)
            if co_since:
                since = co_since - OVERLAP
                # Whichever change date Autotask honours (issue 16): lastActivityDate is the
                # one its change-tracking guidance names; the daily run re-reads every company.
                co_conds.append(
                    Q.or_(
                        Q.gte("createDate", since),
                        Q.gte("lastTrackedModifiedDateTime", since),
                        Q.gte("lastActivityDate", since),
                    )
                )
            self._companies_phase(co_conds, phase="companies_changed")
            if self.run.trigger != SyncRun.Trigger.SCHEDULE:
                self._recent_open_phase()
        elif kind == SyncRun.Kind.UNPAID:
            # Its invoices came with due dates: the terms are read only if one lacks it.
            self.payment_terms = _TermsOnDemand(self._read_payment_terms)
            self._unpaid_phase()
            self._reconcile_phase()
            self._companies_reread_phase()
        elif kind == SyncRun.Kind.PDF:
            self._pdf_phase()
        else:
            raise ValueError(f"unsupported sync kind {kind}")

    def _settled(self, conds: list) -> list:
        return [*conds, Q.lte("createDateTime", _parse(self.cursor["settle_cutoff"]))]

    # --- phases ----------------------------------------------------------------------------

    def _payment_terms(self) -> None:
        self.payment_terms = self._read_payment_terms()

    def _read_payment_terms(self) -> dict[int, int]:
        """{payment term id: days until due}, for invoices without a dueDate."""
        return {
            term.id: term.payment_due_in_days
            for term in self.client.iter_payment_terms()
            if term.payment_due_in_days is not None
        }

    def _companies_phase(self, conditions: list, phase: str = "companies") -> None:
        self._read_phases([(phase, "Companies", conditions, self._company_page)])

    def _invoices_phase(self, conditions: list, *, fetch_missing_companies: bool = False) -> None:
        self._read_phases(
            [("invoices", "Invoices", conditions, self._invoice_page(fetch_missing_companies))]
        )

    def _read_phases(self, phases: list[tuple[str, str, list, Callable]]) -> None:
        """Page through each phase's query in order — (phase, entity, conditions, handle_page)
        — with one reader READ_AHEAD pages ahead across phase boundaries: the next phase's
        first page is read while the last pages of this one are written. Each page commits
        with its phase's cursor (`<phase>_after_id`); a phase ends with `<phase>_done`, and a
        phase already done (a resumed run) is skipped. Same requests, same order, one at a
        time, as phase after phase."""
        plans = []
        for phase, entity, conditions, handle in phases:
            if self.cursor.get(f"{phase}_done"):
                continue
            after = self.cursor.get(f"{phase}_after_id", 0)
            query = Query(filters=[*conditions, Q.gt("id", after)], max_records=PAGE_SIZE)
            plans.append((phase, entity, query, handle))
        if not plans:
            return
        client = self.client

        def pages():
            for phase, entity, query, _ in plans:
                for page in client.iter_pages(entity, query, parse=False):
                    yield phase, page
                yield phase, None  # the phase's last page was read

        handlers = {phase: handle for phase, _, _, handle in plans}
        with Prefetched(pages(), depth=READ_AHEAD) as stream:
            for phase, page in stream:
                if page is None:
                    self.cursor[f"{phase}_done"] = True
                    self._commit_state(phase)
                else:
                    handlers[phase](phase, page)

    def _initial_phases(self) -> None:
        """Companies, then invoices, each read by `PhaseReads` (sync/ranges.py; the decision
        is in the module docstring): both start at once (different endpoints, 3 slots each),
        payment terms are read meanwhile (a third endpoint), and this thread writes the
        companies' pages, then the invoices' pages in the order they arrive, each with its
        range's cursor. Invoice pages wait for the companies (an invoice needs its customer);
        their readers stop `depth` pages ahead."""
        specs = [
            (
                "companies",
                "Companies",
                sync_filters.company_conditions(self.filters),
                lambda items: (parse_page(Company, items), None),
                self._customer_rows,
                lambda rows, _: self._apply_customers(rows),
                # Every invoice page waits for the last company page: the companies are read
                # in ranges too, from 2 pages on, their count asked next to the first page.
                {"probe_pages": 1, "min_pages": 2, "count_ahead": True},
            ),
            (
                "invoices",
                "Invoices",
                self._settled(sync_filters.invoice_conditions(self.filters)),
                self._prepare_invoices,
                None,
                lambda records, prepared: self._apply_invoices(records, prepared=prepared),
                {"count_ahead": True},
            ),
        ]
        with contextlib.ExitStack() as stack:
            started = []
            for phase, entity, conditions, prepare, before, write, how in specs:
                if self.cursor.get(f"{phase}_done"):
                    continue
                reads = stack.enter_context(
                    PhaseReads(
                        self.client,
                        entity,
                        conditions,
                        after=self.cursor.get(f"{phase}_after_id", 0),
                        ranges=self.cursor.get(f"{phase}_ranges"),
                        page_size=PAGE_SIZE,
                        prepare=prepare,
                        name=f"autotask-prefetch-{phase}",
                        **how,
                    )
                )
                reads.start()
                started.append((phase, reads, entity, before, write))
            self._payment_terms()
            for phase, reads, entity, before, write in started:
                if phase == "invoices":
                    self.insert_connection = connections[router.db_for_write(Invoice)]
                    self.customers_known = self._customers_known()
                self._write_phase(phase, reads, entity, before, write)

    def _write_phase(self, phase: str, reads: PhaseReads, entity: str, before, write) -> None:
        """Commit each page of `reads` with its cursor until the phase is done. `prepare`
        (run by the readers) gave (records or errors, anything `write` takes besides)."""
        record_type = {"Companies": Company, "Invoices": AutotaskInvoice}[entity]
        ranges = self.cursor.get(f"{phase}_ranges")
        for event in reads:
            if isinstance(event, SplitEvent):
                self.cursor[f"{phase}_ranges"] = ranges = event.ranges
                continue
            parsed, prepared = event.prepared
            records = self._parse_records(record_type, event.page.items, parsed)
            payload = before(records) if before else records  # may read Currencies: not here
            with transaction.atomic():
                write(payload, prepared)
                done = self._advance(phase, event, ranges)
                self._commit_page(phase)
            if done:
                return

    def _advance(self, phase: str, event: PageEvent, ranges: list | None) -> bool:
        """Move the page's cursor: the phase's `<phase>_after_id` (its single query) or its
        range's `after`, and mark what ended. Results out of id order (`<phase>_unordered`):
        no cursor moves any more, a resumed run reads the unfinished ranges (or the query)
        from where they began."""
        if not event.ordered:
            self.cursor[f"{phase}_unordered"] = True
        moves = not self.cursor.get(f"{phase}_unordered")
        if event.key is None:
            if event.ids and moves:
                after = self.cursor.get(f"{phase}_after_id", 0)
                self.cursor[f"{phase}_after_id"] = max(after, *event.ids)
            if event.last:
                self.cursor[f"{phase}_done"] = True
        else:
            entry = ranges[event.key]
            if event.ids and moves:
                entry[0] = max(entry[0], *event.ids)
            if event.last:
                entry[2] = True
            if all(r[2] for r in ranges):
                self.cursor[f"{phase}_done"] = True
        return bool(self.cursor.get(f"{phase}_done"))

    def _last_id(self, phase: str, page) -> int:
        after = self.cursor.get(f"{phase}_after_id", 0)
        return max((item.get("id", 0) for item in page.items), default=after)

    def _company_page(self, phase: str, page) -> None:
        companies = self._parse_records(Company, page.items)
        rows = self._customer_rows(companies)
        last_id = self._last_id(phase, page)
        with transaction.atomic():
            self._apply_customers(rows)
            self.cursor[f"{phase}_after_id"] = last_id
            self._commit_page(phase)

    def _invoice_page(self, fetch_missing_companies: bool) -> Callable:
        def handle(phase: str, page) -> None:
            records = self._parse_records(AutotaskInvoice, page.items)
            if fetch_missing_companies:
                self._fetch_missing_companies(records)
            last_id = self._last_id(phase, page)
            with transaction.atomic():
                self._apply_invoices(records)
                self.cursor[f"{phase}_after_id"] = last_id
                self._commit_page(phase)

        return handle

    def _pdf_phase(self) -> None:
        """Prefetch PDFs of open invoices whose stored PDF is missing or outdated, newest first,
        at most PDF_BATCH per run, so a customer's first download is instant.

        One bad PDF skips that invoice only: an error answer (a 500 with errors, errors in a
        200, not found), a body that is not a PDF (empty, an HTML page, bad base64) or a 5xx
        left after the client's retries is recorded as a skip naming the invoice (and counted
        failed: the run ends partial), and the run goes on; a resumed run does not ask for it
        again (`pdf_skipped` in the cursor). Throttling and a spent request budget still stop
        the run politely (it is requeued, the client raises them), as do auth errors (the run
        fails), timeouts and connection errors, and PDF_OUTAGE_STREAK PDFs in a row failing
        with 5xx: Autotask is down then, not those PDFs."""
        skipped_ids = list(self.cursor.get("pdf_skipped", []))
        todo = (
            Invoice.objects.for_partner(self.partner)
            .filter(
                source="autotask",
                archived_at__isnull=True,
                status__in=[InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID],
            )
            .exclude(pdf_fingerprint=F("autotask_fingerprint"))
            .exclude(autotask_id__in=skipped_ids)
            .order_by("-invoice_date", "-id")[:PDF_BATCH]
        )
        outage_streak = 0
        for invoice in todo:
            self.counts["fetched"] += 1
            try:
                fetch_and_store(invoice, self.client)
            except (AutotaskRequestError, AutotaskResponseError, AutotaskTransientError) as exc:
                if isinstance(exc, AutotaskTransientError):
                    outage_streak += 1
                    if exc.kind != "server_error" or outage_streak >= PDF_OUTAGE_STREAK:
                        raise  # unreachable or down: requeued, resumes where it stopped
                else:
                    outage_streak = 0
                self._skip(
                    f"PDF of invoice {invoice.number} (Autotask id {invoice.autotask_id}) "
                    f"not stored: {exc.message}"[:200]
                )
                self.counts["failed"] += 1
                skipped_ids.append(invoice.autotask_id)
                self.cursor["pdf_skipped"] = skipped_ids
            else:
                outage_streak = 0
                self.counts["updated"] += 1
            with transaction.atomic():
                self._commit_page("pdf")

    # --- applying pages --------------------------------------------------------------------

    def _parse_records(self, record_type, items: list[dict], parsed: list | None = None) -> list:
        """Typed records; a malformed one is skipped with its reason, the rest goes on.
        `parsed`: `parse_page(record_type, items)`, when a reader thread parsed them already
        (the initial sync: the writer thread is its bottleneck); counted here either way."""
        out = []
        for result in parse_page(record_type, items) if parsed is None else parsed:
            self.counts["fetched"] += 1
            if isinstance(result, AutotaskResponseError):
                self._skip(f"malformed {record_type.ENTITY} record: {result.message}"[:200])
                self.counts["failed"] += 1
            else:
                out.append(result)
        return out

    def _skip(self, reason: str, n: int = 1) -> None:
        self.counts["skipped"] += n
        self.skipped_reasons[reason] = self.skipped_reasons.get(reason, 0) + n

    def _count(self, result: UpsertResult) -> None:
        self.counts["created"] += result.created
        self.counts["updated"] += result.updated
        self.counts["unchanged"] += result.unchanged
        for reason, n in result.skipped.items():
            self._skip(reason, n)

    # --- currencies (issue 16) ---------------------------------------------------------------

    def _company_currencies(self, companies: list[Company]) -> dict[int, str]:
        """{company id: ISO code} of the companies whose currency is known. A currencyID the
        cached Currencies lack (or a null one while the internal currency is unknown, e.g. the
        first sync of a connection whose connect could not read them) reads them again: one
        request, at most once a run (the flag is committed with the run's cursor). An hourly
        run with nothing new reads no company, so it never asks."""
        if not self.cursor.get("currencies_read") and any(
            self.currencies.code_for(c.currency_id) is None for c in companies
        ):
            try:
                self.currencies = currencies_refresh(self.connection, self.client)
            except (AutotaskRequestError, AutotaskResponseError) as exc:
                # Refused or unreadable: the companies concerned keep their currency (below).
                # (Throttling and outages propagate: the run is requeued and asks again.)
                log.warning("autotask currencies not read for run %s: %s", self.run.id, exc)
                self._skip(f"Autotask Currencies could not be read: {exc.message}"[:200])
            self.cursor["currencies_read"] = True
        out = {}
        for company in companies:
            code = self.currencies.code_for(company.currency_id)
            if code is not None:
                out[company.id] = code
        return out

    def _customer_rows(self, companies: list[Company]) -> list[dict]:
        """Customer rows with their currency. Decision (issue 16: never a guessed USD): a
        company whose currency is still unknown after the refresh keeps the currency its
        customer has here (none for a new customer), the run records why (a skip reason per
        currency id) and the log names the companies; the rest of the company is applied. The
        invoices of a customer without a currency are not created (`_apply_invoices`)."""
        known = self._company_currencies(companies)
        rows = []
        unknown: dict[int, int | None] = {}  # company id -> its currencyID
        for company in companies:
            row = customer_values_from_company(company)
            if company.id in known:
                row["currency"] = known[company.id]
            else:
                unknown[company.id] = company.currency_id
            rows.append(row)
        if unknown:
            previous = dict(
                Customer.objects.for_partner(self.partner)
                .filter(autotask_id__in=list(unknown))
                .values_list("autotask_id", "currency")
            )
            for row in rows:
                if row["autotask_id"] in unknown:
                    row["currency"] = previous.get(row["autotask_id"], "")
            for currency_id in unknown.values():
                what = "null (internal currency unknown)" if currency_id is None else currency_id
                self._skip(
                    f"currency unknown (Autotask currencyID {what} not in its Currencies): "
                    "customer's currency left as it was"
                )
            log.warning(
                "run %s: Autotask companies %s name currencies not in Autotask's Currencies "
                "(%s): their customers keep their currency",
                self.run.id,
                sorted(unknown),
                sorted({str(v) for v in unknown.values()}),
            )
        return rows

    def _apply_customers(self, rows: list[dict]) -> UpsertResult:
        result = upsert_page(
            model=Customer,
            partner=self.partner,
            rows=rows,
            tracked_fields=CUSTOMER_TRACKED,
            record_type="customer",
            run=self.run,
            now=self.clock(),
            extra_on_create=lambda row: {"source": "autotask"},
        )
        self._count(result)
        return result

    def _prepare_invoices(self, items: list[dict]) -> tuple[list, dict]:
        """On a reader thread (no database, nothing of the run changed): the page's records,
        and for each invoice with a due date its values but the currency (its customer's,
        known on the writer) with the fingerprint's JSON around it; once the writer has read
        `customers_known`, the page's INSERT too (`ahead.known`). What costs most per row is
        done while the writer waits on PostgreSQL (issue 19, bench/sync_initial.py)."""
        parsed = parse_page(AutotaskInvoice, items)
        ahead = _Ahead()
        for record in parsed:
            if isinstance(record, AutotaskResponseError) or record.due_date is None:
                continue  # a due date from the payment terms: computed on the writer
            try:
                values = autotask_invoice_values(
                    record, identifier=self.connection.identifier, payment_term_days={}
                )
            except ValueError:
                continue  # the writer says why
            tracked = {name: values.get(name) for name in INVOICE_FIELDS}
            parts = fingerprint_parts(tracked, hole="currency")
            if parts is not None:
                ahead[record.id] = (values, parts)
        if self.customers_known is not None:
            # The customers are known by now: the page's INSERT is built here too.
            records = [r for r in parsed if not isinstance(r, AutotaskResponseError)]
            rows, row_records, rest = self._known_rows(records, ahead)
            ahead.known = (row_records, rest, self._prepare_known(rows, self.insert_connection))
        return parsed, ahead

    def _customers_known(self) -> dict[int, tuple[int, str]] | None:
        """{company id: (customer id, currency)} of the partner's customers not archived and
        with a currency, read once when the initial sync's companies are written: its pages
        of new invoices are then inserted without looking their customers up, each invoice
        only if its customer is still so in the INSERT itself (`_insert_known`). None where
        the guarded insert does not exist (SQLite): every page looks its customers up."""
        if not guards_supported(Invoice):
            return None
        return {
            at_id: (pk, currency)
            for at_id, pk, currency in Customer.objects.for_partner(self.partner)
            .filter(autotask_id__isnull=False, archived_at__isnull=True)
            .exclude(currency="")
            .values_list("autotask_id", "id", "currency")
        }

    def _known_rows(self, records: list, prepared: dict | None) -> tuple[list, list, list]:
        """(rows, their records, the rest) for `_insert_known`: a row for each invoice whose
        customer `customers_known` knows and whose values the preparer computed. No database
        and nothing of the run changed: the preparer's thread calls it too."""
        rows, row_records, rest = [], [], []
        for record in records:
            customer = self.customers_known.get(record.company_id)
            ahead = prepared.get(record.id) if prepared else None
            if customer is None or ahead is None:
                rest.append(record)
                continue
            try:
                rows.append(_invoice_row(record.id, ahead, customer[0], customer[1]))
            except ValueError:
                rest.append(record)  # the upsert says why
                continue
            row_records.append(record)
        return rows, row_records, rest

    def _prepare_known(self, rows: list[dict], connection=None) -> PreparedInsert:
        return prepare_insert(
            model=Invoice,
            partner=self.partner,
            rows=rows,
            tracked_fields=INVOICE_FIELDS,
            guard=CUSTOMER_STILL_SO,
            extra_on_create=_invoice_extra,
            now=self.clock(),
            connection=connection,
        )

    def _insert_known(self, records: list[AutotaskInvoice], prepared: dict | None) -> list:
        """Insert the page's new invoices whose customer `customers_known` knows and whose
        values the preparer computed, in one statement guarded by their customer (still not
        archived, same currency: `CUSTOMER_STILL_SO`); built on the preparer's thread when
        `customers_known` was read by then (`_prepare_invoices`). Returns the records left for
        the upsert (`_apply_invoices`): those it could not insert (here already, a resumed
        run; their customer archived or changed meanwhile; an invoice whose due date comes
        from the payment terms) and those of other customers, which the upsert looks up."""
        known = getattr(prepared, "known", None)
        if known is None:
            rows, row_records, rest = self._known_rows(records, prepared)
            known = (row_records, rest, self._prepare_known(rows))
        row_records, rest, statements = known
        created = insert_new(model=Invoice, prepared=statements)
        self.counts["created"] += len(created)
        return rest + [r for r in row_records if r.id not in created]

    def _apply_invoices(self, records: list[AutotaskInvoice], prepared: dict | None = None) -> None:
        if self.customers_known is not None:  # the initial sync's invoices (`_initial_phases`)
            records = self._insert_known(records, prepared)
            if not records:
                return
        company_ids = list({r.company_id for r in records})
        customers = {
            at_id: (pk, archived, currency)
            for at_id, pk, archived, currency in Customer.objects.for_partner(self.partner)
            .filter(autotask_id__any=company_ids)
            .values_list("autotask_id", "id", "archived_at", "currency")
        }

        # An invoice takes its customer's currency. A customer without one (its company not
        # read since the currency existed here, or its currency unknown in Autotask): an
        # invoice here keeps its own, a new one is not created (never a guessed USD).
        kept = {}
        if any(not c[2] for c in customers.values()):
            kept = dict(
                Invoice.objects.for_partner(self.partner)
                .filter(autotask_id__in=[r.id for r in records])
                .values_list("autotask_id", "currency")
            )
        rows = []
        for record in records:
            customer = customers.get(record.company_id)
            if customer is None:
                self._skip("customer not synced (filtered out or unknown)")
                continue
            currency = customer[2] or kept.get(record.id)
            if not currency:
                self._skip("invoice not created: its customer's currency is unknown")
                self.counts["failed"] += 1
                continue
            ahead = prepared.get(record.id) if prepared else None
            try:
                if ahead is None:
                    values = invoice_values_from_autotask(
                        record,
                        identifier=self.connection.identifier,
                        payment_term_days=self.payment_terms,
                        currency=currency,
                    )
                    values.pop("company_id")
                    values["customer_id"] = customer[0]
                else:
                    values = _invoice_row(record.id, ahead, customer[0], currency)
            except ValueError as exc:
                self._skip(f"invalid invoice: {exc}")
                self.counts["failed"] += 1
                continue
            if customer[1] is not None:
                # Hidden, never created or rewritten; its paid/voided state still follows.
                values[HOLD] = "customer archived here"
            rows.append(values)
        result = upsert_page(
            model=Invoice,
            partner=self.partner,
            rows=rows,
            tracked_fields=INVOICE_FIELDS,
            record_type="invoice",
            run=self.run,
            now=self.clock(),
            protect=protect_invoice,
            extra_on_create=_invoice_extra,
            lifecycle_fields=LIFECYCLE_FIELDS,
            # The reconciliation rule (payments registers it): what of each read of an invoice
            # here may be adopted (one new here is adopted as read, the rule's rule 4).
            adjust_existing=lambda known: hooks.reconcile_invoice_rows(
                partner=self.partner, rows=known, run=self.run, now=self.clock()
            ),
            # The initial sync's pages are new: inserted first, the conflicts looked up.
            insert_first=self.run.kind == SyncRun.Kind.INITIAL,
        )
        self._count(result)

    def _fetch_missing_companies(self, records: list[AutotaskInvoice]) -> None:
        """The companies of these invoices that are not customers here, and those of customers
        without a currency that have an invoice not here yet (it needs the currency to be
        created; an invoice here keeps its own), fetched by id and applied. The latter are
        applied whatever the filters say: they are customers here already."""
        company_ids = {r.company_id for r in records}
        known = dict(
            Customer.objects.for_partner(self.partner)
            .filter(autotask_id__in=company_ids)
            .values_list("autotask_id", "currency")
        )
        no_currency = {at_id for at_id, currency in known.items() if not currency}
        if no_currency:
            candidates = [r for r in records if r.company_id in no_currency]
            here = set(
                Invoice.objects.for_partner(self.partner)
                .filter(autotask_id__in=[r.id for r in candidates])
                .values_list("autotask_id", flat=True)
            )
            no_currency = {r.company_id for r in candidates if r.id not in here}
        missing = sorted((company_ids - set(known)) | no_currency)
        if not missing:
            return
        items = []
        for start in range(0, len(missing), IN_BATCH):
            query = Query(filters=[Q.in_("id", missing[start : start + IN_BATCH])])
            for page in self.client.iter_pages("Companies", query, parse=False):
                items.extend(page.items)
        companies = [
            c
            for c in self._parse_records(Company, items)
            if c.id in no_currency or sync_filters.company_passes(self.filters, c)
        ]
        rows = self._customer_rows(companies)  # may read the Currencies: not in the transaction
        with transaction.atomic():
            self._apply_customers(rows)
            self._commit_page("companies_by_id")

    # --- commits, fenced by the owner token --------------------------------------------------

    def _commit_page(self, phase: str) -> None:
        updated = SyncRun.objects.filter(id=self.run.id, owner=self.token).update(
            phase=phase,
            cursor=self.cursor,
            heartbeat_at=timezone.now(),
            skipped_reasons=self.skipped_reasons,
            requests_used=self.requests_base + self.client.stats.count,
            **self.counts,
        )
        if updated != 1:
            raise LeaseLost(f"run {self.run.id} is no longer ours")
        # The partner lease fences too: asleep past the lease, another run of the partner may
        # have started; writing now would make two syncs of one partner at the same time.
        if not SyncState.objects.filter(partner=self.partner, lease_owner=self.token).update(
            lease_heartbeat_at=timezone.now()
        ):
            raise LeaseLost(f"partner {self.partner.id}'s sync lease is no longer ours")

    def _commit_state(self, phase: str) -> None:
        with transaction.atomic():
            self._commit_page(phase)

    def finish_fields(self) -> dict:
        return {
            "cursor": self.cursor,
            "skipped_reasons": self.skipped_reasons,
            "requests_used": self.requests_base + self.client.stats.count,
            **self.counts,
        }
