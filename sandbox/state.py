"""One simulated Autotask database: its data, its limits, its switches and its faults.

Everything a test, the demo or a benchmark may want to change goes through methods here
(the ``/_sandbox/`` HTTP routes in sandbox.control only parse JSON and call them), so the
same operations work in-process and over HTTP.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sandbox import wire
from sandbox.data import RESOURCES, generate
from sandbox.faults import FaultPlan
from sandbox.schema import (
    BILLING_ITEMS,
    COMPANIES,
    CONTACTS,
    ENTITIES,
    INVOICES,
    PAYMENT_TERMS,
)
from sandbox.table import Table

WINDOW_SECONDS = 3600.0
LOG_LIMIT = 100_000  # oldest half is dropped past this, so benchmarks cannot exhaust memory
_ci_counter = itertools.count(101)


@dataclass
class Switches:
    """Behaviour where real Autotask is ambiguous or where tests need a failure mode."""

    missing_item: str = "404"  # "404" | "null": unknown id → 404, or 200 {"item": null}
    empty_filter: str = "match_all"  # "match_all" | "error"
    permission_denied: bool = False  # every authenticated call lacks permission
    permission_status: int = 500  # 500 (what Autotask usually does) or 403
    unauthorized_body: str = "empty"  # 401 body: "empty" or "json"
    thread_limit: int = 3  # concurrent requests per endpoint and integration code
    thread_limit_status: int = 500  # 500 (observed) or 429
    threshold_retry_after: bool = False  # send Retry-After with the hourly-threshold 429
    usage_delay_50: float = 0.5  # seconds added per call past 50 % of the hourly threshold
    usage_delay_75: float = 1.0  # … and past 75 %
    pdf_wrapped: bool = False  # InvoicePDF as {"item": {...}} instead of flat
    pdf_compress: bool = False  # compress PDF page streams (off: text is greppable)

    _choices = {
        "missing_item": ("404", "null"),
        "empty_filter": ("match_all", "error"),
        "permission_status": (500, 403),
        "unauthorized_body": ("empty", "json"),
        "thread_limit_status": (500, 429),
    }

    def update(self, **changes: Any) -> None:
        known = {f.name: f for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown switch {name!r}; one of {sorted(known)}")
            allowed = self._choices.get(name)
            if allowed and value not in allowed:
                raise ValueError(f"switch {name} must be one of {allowed}")
        for name, value in changes.items():
            setattr(self, name, value)


class SandboxDatabase:
    """A tenant database. Identified by ``username`` (zone lookup) and ``ci`` (zone URL)."""

    def __init__(
        self,
        *,
        username: str = "api-user@sandbox.test",
        secret: str = "sandbox-secret",  # noqa: S107 - a fake credential for a fake server
        integration_code: str | None = None,
        seed: int = 1,
        companies: int = 20,
        invoices: int = 100,
        latency_ms: int = 0,
        threshold: int = 10_000,
        zone_name: str = "Sandbox Zone",
        ci: int | None = None,
        today: date | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.username = username
        self.secret = secret
        self.integration_code = integration_code or _default_integration_code()
        self.seed = seed
        self.zone_name = zone_name
        self.ci = ci if ci is not None else next(_ci_counter)
        self.latency_ms = latency_ms
        self.threshold = threshold
        self.today = today or datetime.now(UTC).date()
        self.clock = clock
        self.switches = Switches()
        self.faults = FaultPlan()
        self.base_url = ""  # set by SandboxServer.start()
        self.request_log: list[dict] = []
        self._log_lock = threading.Lock()
        self._window: deque[float] = deque()
        self._window_lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._slot_lock = threading.Lock()
        self._write_lock = threading.RLock()
        rows = generate(seed=seed, companies=companies, invoices=invoices, today=self.today)
        self.tables: dict[str, Table] = {
            name: Table(ENTITIES[name], entity_rows) for name, entity_rows in rows.items()
        }
        numbers = [
            int(n)
            for n in (r[INVOICES.index["invoiceNumber"]] for r in rows["invoices"])
            if n.isdigit()
        ]
        self._next_number = max(numbers, default=1000) + 1

    def __repr__(self) -> str:
        return f"<SandboxDatabase ci={self.ci} {self.username}>"

    # -- addresses ------------------------------------------------------------------------

    @property
    def zone_prefix(self) -> str:
        return f"/zones/{self.ci}/ATServicesRest/"

    @property
    def zone_url(self) -> str:
        return f"{self.base_url}{self.zone_prefix}"

    def zone_information(self) -> dict:
        return {
            "zoneName": self.zone_name,
            "url": self.zone_url,
            "webUrl": f"{self.base_url}/zones/{self.ci}/web/",
            "ci": self.ci,
        }

    def warm(self, entities: tuple[str, ...] = ("Companies", "Invoices")) -> None:
        """Render every row of the bulk-read entities to JSON once (Table.rows_json caches it),
        so that reading a page costs the sandbox ~1 ms, not ~11 ms, and a benchmark's 100 ms of
        latency is not 111 ms. Later changes re-render only the rows they replace."""
        for name in entities:
            table = self.table(name)
            rows = table.snapshot()[1]
            for start in range(0, len(rows), 1000):
                table.rows_json(rows[start : start + 1000])

    def table(self, entity: str) -> Table:
        return self.tables[entity.lower()]

    # -- limits ---------------------------------------------------------------------------

    def acquire_slot(self, endpoint: str) -> bool:
        """One of ``switches.thread_limit`` in-flight slots for this endpoint, or False."""
        with self._slot_lock:
            busy = self._in_flight.get(endpoint, 0)
            if busy >= self.switches.thread_limit:
                return False
            self._in_flight[endpoint] = busy + 1
            return True

    def release_slot(self, endpoint: str) -> None:
        with self._slot_lock:
            self._in_flight[endpoint] -= 1

    def admit(self) -> tuple[bool, float, int | None]:
        """Count one request against the rolling hour.

        Returns (admitted, added delay in seconds, Retry-After seconds when refused). A refused
        request is not counted, so a client that keeps retrying does not extend its own ban.
        Request k of the window is delayed by ``usage_delay_50`` when k/threshold > 50 % and by
        ``usage_delay_75`` when > 75 %.
        """
        with self._window_lock:
            now = self.clock()
            window = self._window
            while window and window[0] <= now - WINDOW_SECONDS:
                window.popleft()
            if len(window) >= self.threshold:
                retry = max(1, math.ceil(window[0] + WINDOW_SECONDS - now))
                return False, 0.0, retry
            window.append(now)
            usage = len(window) / self.threshold
        if usage > 0.75:
            return True, self.switches.usage_delay_75, None
        if usage > 0.5:
            return True, self.switches.usage_delay_50, None
        return True, 0.0, None

    def requests_count(self) -> int:
        """Requests counted against the hourly threshold in the current rolling hour."""
        with self._window_lock:
            now = self.clock()
            while self._window and self._window[0] <= now - WINDOW_SECONDS:
                self._window.popleft()
            return len(self._window)

    def threshold_information(self) -> dict:
        return {
            "externalRequestThreshold": self.threshold,
            "requestThresholdTimeframe": 60,
            "currentTimeframeRequestCount": self.requests_count(),
        }

    # -- request log ----------------------------------------------------------------------

    def log_request(self, entry: dict) -> None:
        with self._log_lock:
            self.request_log.append(entry)
            if len(self.request_log) > LOG_LIMIT:
                del self.request_log[: LOG_LIMIT // 2]

    def requests(
        self, *, entity: str | None = None, method: str | None = None, status: int | None = None
    ) -> list[dict]:
        """The request log, optionally filtered (entity case-insensitively)."""
        with self._log_lock:
            entries = list(self.request_log)
        return [
            e
            for e in entries
            if (entity is None or (e["entity"] or "").lower() == entity.lower())
            and (method is None or e["method"] == method.upper())
            and (status is None or e["status"] == status)
        ]

    def reset_log(self) -> None:
        with self._log_lock:
            self.request_log.clear()

    def reset_counters(self) -> None:
        """Forget the rolling hour and the request log (in-flight slots stay accurate)."""
        with self._window_lock:
            self._window.clear()
        self.reset_log()

    # -- switches and faults --------------------------------------------------------------

    def set_switches(self, **changes: Any) -> dict:
        """Change switches (see Switches); also accepts ``threshold`` and ``latency_ms``."""
        for name in ("threshold", "latency_ms"):
            if name in changes:
                value = changes.pop(name)
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{name} must be a non-negative integer")
                setattr(self, name, value)
        self.switches.update(**changes)
        return self.settings()

    def settings(self) -> dict:
        return {
            **{k: v for k, v in asdict(self.switches).items()},
            "threshold": self.threshold,
            "latency_ms": self.latency_ms,
        }

    def set_faults(self, *, latency_ms: int | None = None, **share: Any) -> dict:
        """Configure the random share of faults (see FaultPlan.configure) and latency."""
        if latency_ms is not None:
            self.set_switches(latency_ms=latency_ms)
        self.faults.configure(**share)
        return self.describe_faults()

    def fail_next(self, count: int, kind: str, **options: Any) -> dict:
        """The next ``count`` requests (optionally of one ``entity``) fail with ``kind``."""
        self.faults.fail_next(count, kind, **options)
        return self.describe_faults()

    def clear_faults(self) -> dict:
        self.faults.clear()
        self.latency_ms = 0
        return self.describe_faults()

    def describe_faults(self) -> dict:
        return {"latency_ms": self.latency_ms, **self.faults.describe()}

    def summary(self) -> dict:
        return {
            "username": self.username,
            "ci": self.ci,
            "zoneName": self.zone_name,
            "zoneUrl": self.zone_url,
            "integrationCode": self.integration_code,
            "seed": self.seed,
            "today": self.today.isoformat(),
            "counts": {t.entity.name: len(t) for t in self.tables.values()},
            "requestsThisHour": self.requests_count(),
            "threshold": self.threshold,
            "switches": self.settings(),
            "faults": self.describe_faults(),
        }

    # -- reading data ---------------------------------------------------------------------

    def _get(self, entity: str, row_id: int) -> dict | None:
        table = self.table(entity)
        row = table.get(int(row_id))
        return table.as_dict(row) if row is not None else None

    def get_invoice(self, invoice_id: int) -> dict | None:
        return self._get("invoices", invoice_id)

    def get_company(self, company_id: int) -> dict | None:
        return self._get("companies", company_id)

    def invoice_lines(self, invoice_id: int) -> list[dict]:
        table = self.table("billingitems")
        column = BILLING_ITEMS.index["invoiceID"]
        _, rows = table.snapshot()
        return [table.as_dict(r) for r in rows if r[column] == invoice_id]

    def invoices(self) -> list[dict]:
        table = self.table("invoices")
        return [table.as_dict(r) for r in table.snapshot()[1]]

    def companies(self) -> list[dict]:
        table = self.table("companies")
        return [table.as_dict(r) for r in table.snapshot()[1]]

    # -- changing data (what happens in the Autotask UI) ----------------------------------

    def create_company(self, **fields_: Any) -> dict:
        """A new company; unspecified fields get plausible defaults. Returns the record."""
        with self._write_lock:
            table = self.table("companies")
            now = wire.now_wire()
            row_id = table.next_id()
            record = dict.fromkeys(COMPANIES.names)
            record.update(
                id=row_id,
                companyName=f"New Company {row_id}",
                companyNumber=str(100000 + row_id),
                companyType=1,
                isActive=True,
                phone="555-555-0100",
                countryID=237,
                currencyID=1,
                ownerResourceID=RESOURCES[0],
                createdByResourceID=RESOURCES[0],
                createDate=now,
                lastActivityDate=now,
                lastTrackedModifiedDateTime=now,
                userDefinedFields=[],
            )
            record.update(_normalise(COMPANIES, fields_, allow=set(COMPANIES.names) - {"id"}))
            table.insert(tuple(record[n] for n in COMPANIES.names))
            return record

    def update_company(self, company_id: int, **changes: Any) -> dict:
        values = _normalise(COMPANIES, changes, allow=set(COMPANIES.names) - {"id"})
        values.setdefault("lastTrackedModifiedDateTime", wire.now_wire())
        return self._update("companies", company_id, values)

    def delete_company(self, company_id: int) -> None:
        """Gone from Autotask (with its contacts). Its invoices stay, as orphans."""
        with self._write_lock:
            if not self.table("companies").delete([int(company_id)]):
                raise KeyError(f"company {company_id} not found")
            contacts = self.table("contacts")
            column = CONTACTS.index["companyID"]
            contacts.delete(r[0] for r in contacts.snapshot()[1] if r[column] == company_id)

    def create_invoice(
        self,
        company_id: int,
        *,
        lines: list[dict] | None = None,
        invoice_date: date | str | None = None,
        payment_term: int = 1,
        invoice_number: str | None = None,
        tax_rate: float = 0.0,
        tax_region_name: str | None = None,
        create_date_time: str | None = None,
    ) -> dict:
        """An invoice as an invoicing run would make it. ``lines`` are dicts with
        ``quantity``, ``rate`` and optionally ``itemName``/``description``; default is one
        line of 100.00. ``invoice_number=""`` makes an invoice without a number yet."""
        if self.get_company(company_id) is None:
            raise KeyError(f"company {company_id} not found")
        terms = {t[0]: t[2] for t in PAYMENT_TERMS}
        if payment_term not in terms:
            raise ValueError(f"unknown payment term {payment_term}")
        day = _as_date(invoice_date) if invoice_date is not None else datetime.now(UTC).date()
        lines = lines or [{"quantity": 1, "rate": 100.0, "itemName": "Services"}]
        with self._write_lock:
            invoices, items = self.table("invoices"), self.table("billingitems")
            invoice_id = invoices.next_id()
            if invoice_number is None:
                invoice_number = str(self._next_number)
                self._next_number += 1
            created = create_date_time or wire.now_wire()
            net = tax_total = 0.0
            item_id = items.next_id()
            for n, line in enumerate(lines):
                qty, rate = float(line.get("quantity", 1)), float(line["rate"])
                extended = round(qty * rate, 2)
                tax = round(extended * tax_rate, 4)
                net, tax_total = net + extended, tax_total + tax
                name = line.get("itemName", "Services")
                items.insert(
                    self._billing_row(
                        item_id + n, invoice_id, company_id, name,
                        line.get("description", name), 1, qty, rate, extended, tax,
                        wire.format_date(day), created,
                    )
                )  # fmt: skip
            record = dict.fromkeys(INVOICES.names)
            record.update(
                id=invoice_id,
                batchID=None,
                companyID=company_id,
                createDateTime=created,
                creatorResourceID=RESOURCES[0],
                dueDate=wire.format_date(day + timedelta(days=terms[payment_term])),
                fromDate=wire.format_date(day - timedelta(days=30)),
                invoiceDateTime=wire.format_date(day),
                invoiceEditorTemplateID=102,
                invoiceNumber=invoice_number,
                invoiceTotal=round(net + tax_total, 4),
                isVoided=False,
                orderNumber="",
                paymentTerm=payment_term,
                taxRegionName=tax_region_name or ("Tax Exempt" if not tax_rate else "Sales Tax"),
                toDate=wire.format_date(day),
                totalTaxValue=round(tax_total, 4),
                invoiceStatus=1,
                userDefinedFields=(),
            )
            invoices.insert(tuple(record[n] for n in INVOICES.names))
            return record

    def _billing_row(
        self, item_id, invoice_id, company_id, name, description, item_type, qty, rate,
        extended, tax, item_date, posted,
    ) -> tuple:  # fmt: skip
        record = dict.fromkeys(BILLING_ITEMS.names)
        record.update(
            id=item_id,
            invoiceID=invoice_id,
            companyID=company_id,
            itemName=name,
            description=description,
            billingItemType=item_type,
            quantity=qty,
            rate=rate,
            extendedPrice=extended,
            taxDollars=tax,
            totalAmount=round(extended + tax, 4),
            ourCost=0.0,
            itemDate=item_date,
            postedDate=posted,
            lineItemID=invoice_id * 10,
            lineItemFullDescription=description,
            nonBillable=0,
            userDefinedFields=(),
        )
        return tuple(record[n] for n in BILLING_ITEMS.names)

    def update_invoice(self, invoice_id: int, **changes: Any) -> dict:
        """Change any invoice fields as the Autotask UI would (total, due date, paidDate,
        number, voiding …). Values use wire names; dates accept ``date`` or ISO strings."""
        values = _normalise(INVOICES, changes, allow=set(INVOICES.names) - {"id"})
        return self._update("invoices", invoice_id, values)

    def set_invoice_total(self, invoice_id: int, total: float) -> dict:
        return self.update_invoice(invoice_id, invoiceTotal=float(total))

    def set_invoice_due_date(self, invoice_id: int, due: date | str) -> dict:
        return self.update_invoice(invoice_id, dueDate=due)

    def set_invoice_paid_date(self, invoice_id: int, paid: date | str | None) -> dict:
        return self.update_invoice(invoice_id, paidDate=paid)

    def void_invoice(self, invoice_id: int, *, voided_by: int = RESOURCES[0]) -> dict:
        return self.update_invoice(
            invoice_id, isVoided=True, voidedDate=wire.now_wire(), voidedByResourceID=voided_by
        )

    def delete_invoice(self, invoice_id: int) -> None:
        """Gone from Autotask, with its billing items."""
        with self._write_lock:
            if not self.table("invoices").delete([int(invoice_id)]):
                raise KeyError(f"invoice {invoice_id} not found")
            items = self.table("billingitems")
            column = BILLING_ITEMS.index["invoiceID"]
            items.delete(r[0] for r in items.snapshot()[1] if r[column] == invoice_id)

    def add_credit(self, invoice_id: int, amount: float, description: str = "Credit") -> dict:
        """A negative billing item of ``amount`` (positive number, no tax) on the invoice;
        invoiceTotal drops by the same amount. Returns the new billing item."""
        amount = round(float(amount), 2)
        if amount <= 0:
            raise ValueError("amount must be positive")
        with self._write_lock:
            invoice = self.get_invoice(invoice_id)
            if invoice is None:
                raise KeyError(f"invoice {invoice_id} not found")
            items = self.table("billingitems")
            row = self._billing_row(
                items.next_id(), invoice_id, invoice["companyID"], description, description,
                2, 1.0, -amount, -amount, 0.0, invoice["invoiceDateTime"], wire.now_wire(),
            )  # fmt: skip
            items.insert(row)
            self._update(
                "invoices",
                invoice_id,
                {"invoiceTotal": round(invoice["invoiceTotal"] - amount, 4)},
            )
            return items.as_dict(row)

    def _update(self, entity: str, row_id: int, values: dict) -> dict:
        table = self.table(entity)
        with self._write_lock:
            try:
                row = table.update(int(row_id), values)
            except KeyError:
                raise KeyError(f"{table.entity.name} {row_id} not found") from None
            return table.as_dict(row)


def _default_integration_code() -> str:
    """The platform's own code (settings.AUTOTASK_INTEGRATION_CODE) when Django is set up, so
    a database built in a test accepts the client's requests without extra arguments."""
    try:
        from django.conf import settings

        return settings.AUTOTASK_INTEGRATION_CODE
    except Exception:  # Django not configured (e.g. the benchmark run standalone)
        return "PAYSYNC-DEV-INTEGRATION-CODE"


def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _normalise(entity, changes: dict[str, Any], *, allow: set[str]) -> dict[str, Any]:
    """Wire-named values in stored form: datetimes formatted, date-only fields at midnight.
    Names are matched case-insensitively; unknown names raise ValueError."""
    out: dict[str, Any] = {}
    for name, value in changes.items():
        field = entity.field(name)
        canonical = field.name if field else ("userDefinedFields" if name.lower() ==
                                              "userdefinedfields" else None)  # fmt: skip
        if canonical is None or canonical not in allow:
            raise ValueError(f"{entity.name} has no settable field {name!r}")
        if field is not None and field.data_type == "datetime" and value is not None:
            if isinstance(value, datetime):
                value = wire.format_datetime(value)
            elif isinstance(value, date):
                value = wire.format_date(value)
            value = (
                wire.normalize_date(value) if field.date_only else wire.normalize_datetime(value)
            )
        out[canonical] = value
    return out
