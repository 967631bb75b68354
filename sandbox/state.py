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
from sandbox.data import RESOURCES, currency_row, generate
from sandbox.faults import FaultPlan
from sandbox.schema import (
    BILLING_ITEMS,
    COMPANIES,
    COMPANY_TYPES,
    CONTACTS,
    CURRENCIES,
    ENTITIES,
    INVOICES,
    PAYMENT_TERMS,
    Entity,
)
from sandbox.table import Table

WINDOW_SECONDS = 3600.0
LOG_LIMIT = 100_000  # oldest half is dropped past this, so benchmarks cannot exhaust memory
_ci_counter = itertools.count(101)
OWN_COMPANY_ID = 0  # the tenant's own company ("your local organization", API.md §10)
# Fields of a posted invoice that Autotask changes only by voiding and re-invoicing (API.md §10):
# the control surface refuses them unless the invoice_edit_in_place switch is on.
POSTED_FIELDS = frozenset(
    {"companyID", "invoiceDateTime", "createDateTime", "dueDate", "fromDate", "toDate",
     "invoiceTotal", "totalTaxValue", "paymentTerm", "taxGroup", "taxRegionName"}
)  # fmt: skip
PDF_FAILURES = ("500", "error_body", "empty", "not_pdf")


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
    # Invoice lifecycle and tenant data (API.md §10; sandbox/README.md "Switches"). The defaults
    # follow the evidence; the other value is the sandbox's earlier behaviour ("legacy").
    reuse_ids: bool = False  # legacy True: a new row gets max(present ids) + 1 (ids come back)
    invoice_edit_in_place: bool = False  # legacy True: control PATCH changes posted fields
    invoice_delete: bool = False  # legacy True: control DELETE removes an invoice
    credit_in_place: bool = False  # legacy True: invoices/{id}/credits lowers that invoice
    own_company: bool = True  # company 0, the tenant's own; legacy False: no company 0
    threshold_status: int = 429  # hourly threshold answer: 429 or 500 (UNVERIFIED), same text
    paid_date_null: str = "clear"  # API {"paidDate": null}: "clear" or "ignore" (UNVERIFIED)
    # How the API stores a date-time paidDate (UNVERIFIED): "date" = the calendar date as
    # written; "utc_date" = the date of the UTC instant; "local_date" = the date in the tenant's
    # time zone (tenant_utc_offset_hours); "keep_time" = the UTC instant, time kept.
    paid_date_time: str = "date"
    tenant_utc_offset_hours: float = -5.0  # the tenant's time zone, for paid_date_time
    # Query result order (API.md §3.3, UNVERIFIED for REST): "id" = ascending id (the SOAP
    # docs, community paging by id); "scrambled" = a fixed order unrelated to the id, paged
    # by position (nextPageUrl still walks every matching row exactly once).
    result_order: str = "id"

    _choices = {
        "missing_item": ("404", "null"),
        "empty_filter": ("match_all", "error"),
        "permission_status": (500, 403),
        "unauthorized_body": ("empty", "json"),
        "thread_limit_status": (500, 429),
        "threshold_status": (429, 500),
        "paid_date_null": ("clear", "ignore"),
        "paid_date_time": ("date", "utc_date", "local_date", "keep_time"),
        "result_order": ("id", "scrambled"),
    }

    def update(self, **changes: Any) -> None:
        known = {f.name: f for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown switch {name!r}; one of {sorted(known)}")
            allowed = self._choices.get(name)
            if allowed and value not in allowed:
                raise ValueError(f"switch {name} must be one of {allowed}")
            default = known[name].default
            if isinstance(default, bool) and not isinstance(value, bool):
                raise ValueError(f"switch {name} must be true or false")
            if isinstance(default, float) and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise ValueError(f"switch {name} must be a number")
        for name, value in changes.items():
            setattr(self, name, value)


class SandboxDatabase:
    """A tenant database. Identified by ``username`` (zone lookup) and ``ci`` (zone URL).

    Tenant settings (all optional): ``switches`` — initial Switches values; ``currencies`` —
    ISO codes, the first is the internal currency (default ``["USD"]``; with several, the
    generated companies are spread over them in turn, the first company on the first);
    ``company_types`` — the companyType picklist, ``{value: label}`` (default the standard
    one; generated companies keep their role by label, so ``{3: "Customer", …}`` makes the
    customers 3s); ``own_company`` — fields of company 0 to override.
    """

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
        switches: dict[str, Any] | None = None,
        currencies: list[str] | tuple[str, ...] | None = None,
        company_types: dict | list | tuple | None = None,
        own_company: dict[str, Any] | None = None,
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
        self.switches.update(**(switches or {}))
        self.faults = FaultPlan()
        self.base_url = ""  # set by SandboxServer.start()
        self.request_log: list[dict] = []
        self._log_lock = threading.Lock()
        self._window: deque[float] = deque()
        self._window_lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        # The most requests ever in flight at once per endpoint (lower-case), since the start
        # or the last reset_in_flight_peak(): what tests assert the thread limit against.
        self.in_flight_peak: dict[str, int] = {}
        self._slot_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self.pdf_failures: dict[int, str] = {}  # invoice id → how its InvoicePDF fails
        self._pending_credits: dict[int, list[int]] = {}  # company id → credit billing items
        self.company_types: tuple[tuple[int, str], ...] = _picklist(company_types)
        self.entities: dict[str, Entity] = dict(ENTITIES)
        if self.company_types != COMPANY_TYPES:
            self.entities["companies"] = COMPANIES.with_picklist("companyType", self.company_types)
        codes = [c.upper() for c in (currencies or ["USD"])]
        if len(set(codes)) != len(codes):
            raise ValueError(f"currencies must differ: {codes}")
        rows = generate(seed=seed, companies=companies, invoices=invoices, today=self.today)
        stamp = f"{self.today - timedelta(days=800)}T08:00:00.000Z"
        rows["currencies"] = [currency_row(n, c, codes[0], stamp) for n, c in enumerate(codes, 1)]
        rows["companies"] = self._tenant_companies(rows["companies"], len(codes))
        self.tables: dict[str, Table] = {
            name: Table(self.entities[name], entity_rows) for name, entity_rows in rows.items()
        }
        self._own_company_row = self._make_own_company(own_company or {}, stamp)
        if self.switches.own_company:
            self.table("companies").insert(self._own_company_row)
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

    # -- saved state (sandbox/persist.py) --------------------------------------------------

    def data_version(self) -> tuple:
        """Changes whenever the data or the settings change (tables swap their snapshot on
        every write), so a saver can tell cheaply whether there is anything to save."""
        return (
            tuple(id(t.snapshot()) for t in self.tables.values()),
            self._next_number,
            repr(self._pending_credits),
            repr(self.pdf_failures),
            self.company_types,
            self._own_company_row,
            repr(self.settings()),
        )

    def export_state(self) -> dict:
        """What a partner would have changed in Autotask (rows, ids, credits, picklist,
        switches, PDF failures), as JSON-ready values. Not the request log, the rolling hour
        or the faults: those belong to one run of the server."""
        with self._write_lock:
            return {
                "tables": {
                    name: {
                        "high_id": table.high_id,
                        "rows": [_pack(r) for r in table.snapshot()[1]],
                    }
                    for name, table in self.tables.items()
                },
                "next_number": self._next_number,
                "pending_credits": {str(k): v for k, v in self._pending_credits.items()},
                "pdf_failures": {str(k): v for k, v in self.pdf_failures.items()},
                "company_types": [list(pair) for pair in self.company_types],
                "own_company_row": _pack(self._own_company_row),
                "settings": self.settings(),
            }

    def import_state(self, state: dict) -> None:
        """Replace the generated data with `export_state()`'s output."""
        with self._write_lock:
            picklist = tuple((int(v), label) for v, label in state["company_types"])
            self.company_types = picklist
            self.entities["companies"] = (
                COMPANIES
                if picklist == COMPANY_TYPES
                else COMPANIES.with_picklist("companyType", picklist)
            )
            self.tables = {
                name: Table(self.entities[name], [_unpack(r) for r in saved["rows"]])
                for name, saved in state["tables"].items()
            }
            for name, saved in state["tables"].items():
                self.tables[name].high_id = max(self.tables[name].high_id, saved["high_id"])
            self._next_number = state["next_number"]
            self._pending_credits = {int(k): v for k, v in state["pending_credits"].items()}
            self.pdf_failures = {int(k): v for k, v in state["pdf_failures"].items()}
            self._own_company_row = _unpack(state["own_company_row"])
            settings = dict(state["settings"])
            self.threshold = settings.pop("threshold", self.threshold)
            self.latency_ms = settings.pop("latency_ms", self.latency_ms)
            self.switches = Switches()
            self.switches.update(**settings)

    # -- limits ---------------------------------------------------------------------------

    def acquire_slot(self, endpoint: str) -> bool:
        """One of ``switches.thread_limit`` in-flight slots for this endpoint, or False."""
        with self._slot_lock:
            busy = self._in_flight.get(endpoint, 0)
            if busy >= self.switches.thread_limit:
                return False
            self._in_flight[endpoint] = busy + 1
            key = endpoint.lower()
            self.in_flight_peak[key] = max(self.in_flight_peak.get(key, 0), busy + 1)
            return True

    def release_slot(self, endpoint: str) -> None:
        with self._slot_lock:
            self._in_flight[endpoint] -= 1

    def reset_in_flight_peak(self) -> None:
        with self._slot_lock:
            self.in_flight_peak.clear()

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
        with self._write_lock:
            self.switches.update(**changes)
            self._place_own_company()
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
            "currencies": [c["name"] for c in self.currencies()],
            "companyTypes": {str(value): label for value, label in self.company_types},
            "pendingCredits": self.pending_credits(),
            "pdfFailures": {str(k): v for k, v in sorted(self.pdf_failures.items())},
        }

    # -- tenant data ----------------------------------------------------------------------

    def entity(self, name: str) -> Entity:
        """This database's metadata for an entity (its own companyType picklist)."""
        return self.entities[name.lower()]

    @property
    def customer_type(self) -> int:
        """The companyType value labelled Customer in this tenant (else its first value)."""
        for value, label in self.company_types:
            if label.lower() == "customer":
                return value
        return self.company_types[0][0]

    def _tenant_companies(self, rows: list[tuple], currency_count: int) -> list[tuple]:
        """Generated companies with this tenant's companyType values (by label) and spread
        over its currencies; unchanged (the same tuples) for a default tenant."""
        if self.company_types == COMPANY_TYPES and currency_count == 1:
            return rows
        mapping = _type_mapping(self.company_types)
        type_col, currency_col = COMPANIES.index["companyType"], COMPANIES.index["currencyID"]
        out = []
        for n, row in enumerate(rows):
            values = list(row)
            values[type_col] = mapping.get(values[type_col], values[type_col])
            values[currency_col] = 1 + n % currency_count
            out.append(tuple(values))
        return out

    def _make_own_company(self, overrides: dict[str, Any], stamp: str) -> tuple:
        """Company 0: the tenant's own company, named after the database. Its companyType is
        the tenant's Customer value (a documented choice: the evidence does not say)."""
        record = dict.fromkeys(COMPANIES.names)
        record.update(
            id=OWN_COMPANY_ID,
            companyName=f"{self.username} (local organization)"[:100],
            companyNumber="0",
            companyType=self.customer_type,
            isActive=True,
            phone="555-555-0000",
            fax="",
            webAddress="",
            address1="1 Main Street",
            address2="",
            city="East Greenbush",
            state="NY",
            postalCode="12061",
            countryID=237,
            billToAddressToUse=1,
            billToAttention="",
            billToAddress1="1 Main Street",
            billToAddress2="",
            billToCity="East Greenbush",
            billToState="NY",
            billToZipCode="12061",
            billToCountryID=237,
            currencyID=1,
            invoiceTemplateID=102,
            isTaxExempt=False,
            ownerResourceID=RESOURCES[0],
            createdByResourceID=RESOURCES[0],
            createDate=stamp,
            lastActivityDate=stamp,
            lastTrackedModifiedDateTime=stamp,
            userDefinedFields=[],
        )
        record.update(_normalise(COMPANIES, overrides, allow=set(COMPANIES.names) - {"id"}))
        return tuple(record[n] for n in COMPANIES.names)

    def _place_own_company(self) -> None:
        """Add or remove company 0 to match the own_company switch (the row is kept aside
        while it is off, so turning it back on restores it as it was)."""
        table = self.table("companies")
        row = table.get(OWN_COMPANY_ID)
        if self.switches.own_company and row is None:
            table.insert(self._own_company_row)
        elif not self.switches.own_company and row is not None:
            self._own_company_row = row
            table.delete([OWN_COMPANY_ID])

    def currencies(self) -> list[dict]:
        table = self.table("currencies")
        return [table.as_dict(r) for r in table.snapshot()[1]]

    def currency_id(self, code: str, *, create: bool = False) -> int:
        """The Currencies id of an ISO code; ``create`` adds the currency when missing."""
        code = str(code).upper()
        for currency in self.currencies():
            if currency["name"] == code:
                return currency["id"]
        if not create:
            raise ValueError(f"currency {code} is not in this database")
        with self._write_lock:
            table = self.table("currencies")
            internal = next(c["name"] for c in self.currencies() if c["isInternalCurrency"])
            row = currency_row(self._new_id(table), code, internal, wire.now_wire())
            table.insert(row)
            return row[0]

    def company_currency(self, company_id: int) -> str | None:
        """The ISO code of a company's currency (None if the company is unknown)."""
        company = self.get_company(company_id)
        if company is None:
            return None
        row = self.table("currencies").get(company["currencyID"] or 1)
        return row[CURRENCIES.index["name"]] if row else None

    def set_company_types(self, company_types: dict | list | tuple) -> dict:
        """Replace the companyType picklist; existing companies keep their role by label."""
        with self._write_lock:
            picklist = _picklist(company_types)
            mapping = _type_mapping(picklist, self.company_types)
            self.company_types = picklist
            entity = COMPANIES.with_picklist("companyType", picklist)
            self.entities["companies"] = entity
            table = self.table("companies")
            table.entity = entity
            column = COMPANIES.index["companyType"]
            for row in table.snapshot()[1]:
                if row[column] in mapping and mapping[row[column]] != row[column]:
                    table.update(row[0], {"companyType": mapping[row[column]]})
            own = list(self._own_company_row)
            own[column] = mapping.get(own[column], own[column])
            self._own_company_row = tuple(own)
            return {str(value): label for value, label in picklist}

    def _new_id(self, table: Table) -> int:
        return table.next_id(reuse=self.switches.reuse_ids)

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

    def customers(self) -> list[dict]:
        """Companies of this tenant's Customer type, without company 0 (the tenant's own):
        the ones a test can invoice."""
        kind = self.customer_type
        return [
            c for c in self.companies() if c["companyType"] == kind and c["id"] != OWN_COMPANY_ID
        ]

    def pending_credits(self, company_id: int | None = None) -> list[dict]:
        """Credits not yet on an invoice (billing items without invoiceID), oldest first."""
        items = self.table("billingitems")
        ids = (
            self._pending_credits.get(int(company_id), [])
            if company_id is not None
            else sorted(i for group in self._pending_credits.values() for i in group)
        )
        return [items.as_dict(row) for row in map(items.get, ids) if row is not None]

    # -- changing data (what happens in the Autotask UI) ----------------------------------

    def create_company(self, *, currency: str | None = None, **fields_: Any) -> dict:
        """A new company; unspecified fields get plausible defaults (companyType = this
        tenant's Customer value, the internal currency). ``currency`` is an ISO code (added to
        the database's Currencies if missing): ``create_company(currency="EUR")``."""
        with self._write_lock:
            table = self.table("companies")
            now = wire.now_wire()
            row_id = self._new_id(table)
            record = dict.fromkeys(COMPANIES.names)
            record.update(
                id=row_id,
                companyName=f"New Company {row_id}",
                companyNumber=str(100000 + row_id),
                companyType=self.customer_type,
                isActive=True,
                phone="555-555-0100",
                countryID=237,
                currencyID=1 if currency is None else self.currency_id(currency, create=True),
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

    def update_company(
        self, company_id: int, *, currency: str | None = None, **changes: Any
    ) -> dict:
        """Change company fields by wire name; ``currency`` (ISO code) sets currencyID."""
        values = _normalise(COMPANIES, changes, allow=set(COMPANIES.names) - {"id"})
        if currency is not None:
            values["currencyID"] = self.currency_id(currency, create=True)
        check_own_company_change(int(company_id), values)
        values.setdefault("lastTrackedModifiedDateTime", wire.now_wire())
        return self._update("companies", company_id, values)

    def delete_company(self, company_id: int) -> None:
        """Gone from Autotask (with its contacts). Its invoices stay, as orphans. Company 0,
        the tenant's own, cannot be deleted (turn the own_company switch off instead)."""
        if int(company_id) == OWN_COMPANY_ID and self.get_company(OWN_COMPANY_ID) is not None:
            raise ValueError("company 0 is the tenant's own company: Autotask cannot delete it")
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
        line of 100.00. ``invoice_number=""`` makes an invoice without a number yet. The
        company's pending credits (add_company_credit) land on it as negative lines.
        Amounts are in the company's currency."""
        company_id = int(company_id)
        if self.get_company(company_id) is None:
            raise KeyError(f"company {company_id} not found")
        if company_id == OWN_COMPANY_ID:
            raise ValueError("company 0 is the tenant's own company: Autotask never invoices it")
        terms = {t[0]: t[2] for t in PAYMENT_TERMS}
        if payment_term not in terms:
            raise ValueError(f"unknown payment term {payment_term}")
        day = _as_date(invoice_date) if invoice_date is not None else datetime.now(UTC).date()
        lines = lines or [{"quantity": 1, "rate": 100.0, "itemName": "Services"}]
        with self._write_lock:
            invoices, items = self.table("invoices"), self.table("billingitems")
            invoice_id = self._new_id(invoices)
            if invoice_number is None:
                invoice_number = self._take_number()
            created = create_date_time or wire.now_wire()
            net = tax_total = 0.0
            item_id = self._new_id(items)
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
            net += self._apply_credits(company_id, invoice_id)
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

    def _take_number(self) -> str:
        number = str(self._next_number)
        self._next_number += 1
        return number

    def _apply_credits(self, company_id: int, invoice_id: int) -> float:
        """Attach the company's pending credits to a new invoice; returns their (negative)
        sum, which the caller adds to the invoice's net total. Credits carry no tax."""
        items = self.table("billingitems")
        total = 0.0
        for item_id in self._pending_credits.pop(company_id, []):
            row = items.get(item_id)
            if row is None:
                continue
            items.update(item_id, {"invoiceID": invoice_id, "lineItemID": invoice_id * 10 + 1})
            total += row[BILLING_ITEMS.index["totalAmount"]]
        return round(total, 2)

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
            lineItemID=invoice_id * 10 if invoice_id is not None else None,
            lineItemFullDescription=description,
            nonBillable=0,
            userDefinedFields=(),
        )
        return tuple(record[n] for n in BILLING_ITEMS.names)

    def update_invoice(self, invoice_id: int, **changes: Any) -> dict:
        """Change invoice fields as the Autotask UI would: paidDate, invoiceNumber,
        webServiceDate, voiding, comments … Values use wire names; dates accept ``date`` or
        ISO strings. A posted invoice's amounts and dates (POSTED_FIELDS) change only through
        reissue_invoice, unless the invoice_edit_in_place switch is on."""
        values = _normalise(INVOICES, changes, allow=set(INVOICES.names) - {"id"})
        posted = sorted(set(values) & POSTED_FIELDS)
        if posted and not self.switches.invoice_edit_in_place:
            raise ValueError(
                f"Autotask does not edit a posted invoice's {', '.join(posted)}: void and "
                f"re-issue it (POST …/invoices/{invoice_id}/reissue), or turn on the "
                "invoice_edit_in_place switch"
            )
        return self._update("invoices", invoice_id, values)

    def set_invoice_total(self, invoice_id: int, total: float) -> dict:
        """Legacy (invoice_edit_in_place switch): the total changes in place."""
        return self.update_invoice(invoice_id, invoiceTotal=float(total))

    def set_invoice_due_date(self, invoice_id: int, due: date | str) -> dict:
        """Legacy (invoice_edit_in_place switch): the due date changes in place."""
        return self.update_invoice(invoice_id, dueDate=due)

    def set_invoice_paid_date(self, invoice_id: int, paid: date | str | None) -> dict:
        return self.update_invoice(invoice_id, paidDate=paid)

    def void_invoice(self, invoice_id: int, *, voided_by: int = RESOURCES[0]) -> dict:
        return self._update(
            "invoices",
            invoice_id,
            {"isVoided": True, "voidedDate": wire.now_wire(), "voidedByResourceID": voided_by},
        )

    def reissue_invoice(
        self,
        invoice_id: int,
        *,
        invoice_total: float | None = None,
        due_date: date | str | None = None,
    ) -> dict:
        """What changing a posted invoice is in Autotask (API.md §10): void it and invoice its
        items again. The replacement has a new id and number, the same company, invoice date,
        payment term and lines (moved to it), createDateTime now, and is unpaid; its due date
        is ``due_date`` or the old one. ``invoice_total`` adds an adjustment line (no tax) for
        the difference. The company's pending credits land on the replacement.
        Returns ``{"voided_id", "new_id"}``."""
        invoice_id = int(invoice_id)
        if invoice_total is not None and (
            isinstance(invoice_total, bool) or not isinstance(invoice_total, (int, float))
        ):
            raise ValueError("invoiceTotal must be a number")
        with self._write_lock:
            old = self.get_invoice(invoice_id)
            if old is None:
                raise KeyError(f"invoice {invoice_id} not found")
            if old["isVoided"]:
                raise ValueError(f"invoice {invoice_id} is already voided")
            due = old["dueDate"]
            if due_date is not None:
                due = _normalise(INVOICES, {"dueDate": due_date}, allow={"dueDate"})["dueDate"]
            invoices, items = self.table("invoices"), self.table("billingitems")
            self.void_invoice(invoice_id)
            new_id = self._new_id(invoices)
            for line in self.invoice_lines(invoice_id):
                items.update(line["id"], {"invoiceID": new_id, "lineItemID": new_id * 10})
            total = float(old["invoiceTotal"])
            if invoice_total is not None:
                difference = round(float(invoice_total) - total, 4)
                if difference:
                    items.insert(
                        self._billing_row(
                            self._new_id(items), new_id, old["companyID"], "Adjustment",
                            "Re-invoiced adjustment", 2, 1.0, difference, difference, 0.0,
                            old["invoiceDateTime"], wire.now_wire(),
                        )
                    )  # fmt: skip
                total = float(invoice_total)
            total += self._apply_credits(old["companyID"], new_id)
            record = dict(
                old,
                id=new_id,
                invoiceNumber=self._take_number(),
                createDateTime=wire.now_wire(),
                dueDate=due,
                invoiceTotal=round(total, 4),
                isVoided=False,
                voidedDate=None,
                voidedByResourceID=None,
                paidDate=None,
                webServiceDate=None,
            )
            invoices.insert(tuple(record[n] for n in INVOICES.names))
            return {"voided_id": invoice_id, "new_id": new_id}

    def delete_invoice(self, invoice_id: int) -> None:
        """Legacy (invoice_delete switch): gone from Autotask, with its billing items.
        Autotask cannot delete invoices, only void them."""
        if not self.switches.invoice_delete:
            raise ValueError(
                "Autotask cannot delete invoices, only void them (POST …/void or …/reissue); "
                "turn on the invoice_delete switch for the old behaviour"
            )
        with self._write_lock:
            if not self.table("invoices").delete([int(invoice_id)]):
                raise KeyError(f"invoice {invoice_id} not found")
            items = self.table("billingitems")
            column = BILLING_ITEMS.index["invoiceID"]
            items.delete(r[0] for r in items.snapshot()[1] if r[column] == invoice_id)

    def add_credit(self, invoice_id: int, amount: float, description: str = "Credit") -> dict:
        """Legacy (credit_in_place switch): a negative billing item of ``amount`` (positive
        number, no tax) on the invoice; invoiceTotal drops by the same amount. Returns the new
        billing item. In Autotask a credit lands on the company's next invoice:
        add_company_credit."""
        if not self.switches.credit_in_place:
            raise ValueError(
                "Autotask does not lower a posted invoice: a credit lands on the company's "
                "next invoice (POST …/companies/{id}/credits); turn on the credit_in_place "
                "switch for the old behaviour"
            )
        amount = _positive_amount(amount)
        with self._write_lock:
            invoice = self.get_invoice(invoice_id)
            if invoice is None:
                raise KeyError(f"invoice {invoice_id} not found")
            items = self.table("billingitems")
            row = self._billing_row(
                self._new_id(items), invoice_id, invoice["companyID"], description, description,
                2, 1.0, -amount, -amount, 0.0, invoice["invoiceDateTime"], wire.now_wire(),
            )  # fmt: skip
            items.insert(row)
            self._update(
                "invoices",
                invoice_id,
                {"invoiceTotal": round(invoice["invoiceTotal"] - amount, 4)},
            )
            return items.as_dict(row)

    def add_company_credit(
        self, company_id: int, amount: float, description: str = "Credit"
    ) -> dict:
        """A credit for a company (API.md §10: "adjustments … show up on the next invoice as
        separate line items"): a negative billing item of ``amount`` (positive number, no tax,
        the company's currency) without an invoice until the company's next invoice
        (create_invoice or reissue_invoice) takes it and its total drops by it. Returns the
        billing item."""
        amount = _positive_amount(amount)
        company_id = int(company_id)
        with self._write_lock:
            if self.get_company(company_id) is None:
                raise KeyError(f"company {company_id} not found")
            if company_id == OWN_COMPANY_ID:
                raise ValueError("company 0 is the tenant's own company: it is never invoiced")
            items = self.table("billingitems")
            row = self._billing_row(
                self._new_id(items), None, company_id, description, description, 2, 1.0,
                -amount, -amount, 0.0, wire.format_date(datetime.now(UTC).date()),
                wire.now_wire(),
            )  # fmt: skip
            items.insert(row)
            self._pending_credits.setdefault(company_id, []).append(row[0])
            return items.as_dict(row)

    def fail_invoice_pdf(self, invoice_id: int, kind: str = "500") -> dict:
        """Make one invoice's InvoicePDF fail until cleared: ``"500"`` (500 with errors),
        ``"error_body"`` (200 whose body is ``{"errors": […]}``), ``"empty"`` (the envelope with
        no data) or ``"not_pdf"`` (data that is not a PDF)."""
        if kind not in PDF_FAILURES:
            raise ValueError(f"PDF failure kind must be one of {PDF_FAILURES}")
        if self.get_invoice(invoice_id) is None:
            raise KeyError(f"invoice {invoice_id} not found")
        self.pdf_failures[int(invoice_id)] = kind
        return {"invoice": int(invoice_id), "kind": kind}

    def clear_invoice_pdf_failure(self, invoice_id: int | None = None) -> dict:
        """The invoice's PDF works again (every invoice's, without an id)."""
        if invoice_id is None:
            self.pdf_failures.clear()
        else:
            self.pdf_failures.pop(int(invoice_id), None)
        return {str(k): v for k, v in sorted(self.pdf_failures.items())}

    def _update(self, entity: str, row_id: int, values: dict) -> dict:
        table = self.table(entity)
        with self._write_lock:
            try:
                row = table.update(int(row_id), values)
            except KeyError:
                raise KeyError(f"{table.entity.name} {row_id} not found") from None
            return table.as_dict(row)


def _pack(value: Any) -> Any:
    """Rows are tuples that may hold tuples (picklist pairs) and lists: JSON keeps lists, so
    tuples are tagged to come back as tuples."""
    if isinstance(value, tuple):
        return {"t": [_pack(v) for v in value]}
    if isinstance(value, list):
        return [_pack(v) for v in value]
    return value


def _unpack(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"t"}:
        return tuple(_unpack(v) for v in value["t"])
    if isinstance(value, list):
        return [_unpack(v) for v in value]
    return value


def check_own_company_change(company_id: int, values: dict[str, Any]) -> None:
    """Company 0 cannot be made inactive (Autotask help: your local organization cannot be
    inactivated)."""
    if company_id == OWN_COMPANY_ID and values.get("isActive") is False:
        raise ValueError("company 0 is the tenant's own company: it cannot be inactivated")


def _positive_amount(amount: Any) -> float:
    if isinstance(amount, bool) or not isinstance(amount, (int, float, str)):
        raise ValueError("amount must be a positive number")
    amount = round(float(amount), 2)
    if not amount > 0:
        raise ValueError("amount must be positive")
    return amount


def _picklist(values: dict | list | tuple | None) -> tuple[tuple[int, str], ...]:
    """A picklist from ``{value: label}`` (keys may be strings, as in JSON) or
    ``[(value, label), …]``; None → the standard company types."""
    if values is None:
        return COMPANY_TYPES
    pairs = values.items() if isinstance(values, dict) else values
    out = []
    for pair in pairs:
        try:
            value, label = pair
            out.append((int(value), str(label)))
        except (TypeError, ValueError):
            raise ValueError(f"a picklist entry is value → label, not {pair!r}") from None
    if not out or len({v for v, _ in out}) != len(out):
        raise ValueError("a picklist needs distinct values")
    return tuple(sorted(out))


def _type_mapping(
    picklist: tuple[tuple[int, str], ...], old: tuple[tuple[int, str], ...] = COMPANY_TYPES
) -> dict[int, int]:
    """Old companyType value → new one with the same label. A label the new picklist lacks
    goes to its first value that is not Customer (or to Customer if that is all there is)."""
    by_label = {label.lower(): value for value, label in picklist}
    fallback = next((v for v, label in picklist if label.lower() != "customer"), picklist[0][0])
    return {value: by_label.get(label.lower(), fallback) for value, label in old}


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
