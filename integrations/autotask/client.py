"""The Autotask PSA REST client (atservicesrest v1.0), following ``shared/autotask/API.md``.

One ``AutotaskClient`` per API user. It discovers the zone (§1), sends the auth headers (§2)
only to that zone's origin, builds queries (§3.2), streams pages by POSTing the same body to
``nextPageUrl`` (§3.3, §8.1), parses typed records (§5), maps errors in one place
(``errors.error_for_response``, §7), retries only what can recover (``retry.RetryPolicy``)
and stays inside the shared limits (``limits``, §4). It touches no ORM: callers pass
credentials in and get records out.

Every request has explicit (connect, read) timeouts and ``allow_redirects=False``: requests
strips ``Authorization`` on a cross-host redirect but not our custom ``Secret`` header.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode, urlsplit

import requests

from .errors import (
    AutotaskAuthError,
    AutotaskError,
    AutotaskOriginError,
    AutotaskResponseError,
    AutotaskTransientError,
    error_for_response,
)
from .limits import Limiter, NoopLimiter, RedisLimiter, database_key
from .query import DEFAULT_IN_BATCH, MAX_IN_VALUES, Condition, Q, Query, as_query, format_datetime
from .records import (
    BillingItem,
    Company,
    Contact,
    Currency,
    EntityField,
    Invoice,
    InvoicePdf,
    PaymentTerm,
    ThresholdInfo,
    ZoneInfo,
    record_type_for,
)
from .retry import RetryPolicy
from .sessions import SessionPool, default_session_pool
from .stats import RequestStats
from .zones import ZoneCache, default_zone_cache, parse_zone_response

logger = logging.getLogger("integrations.autotask")

T = TypeVar("T")
_NOT_FOUND = object()
_ZONE_ENTITY = "zoneInformation"
_THRESHOLD_ENTITY = "ThresholdInformation"


def _setting(name: str, default: Any) -> Any:
    """Django setting with a fallback, so the client also works outside a configured project
    (bench scripts, a shell)."""
    try:
        from django.conf import settings

        return getattr(settings, name, default)
    except Exception:  # ImproperlyConfigured when no settings module is set
        return default


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), parts.port or default_port


_default_limiters: dict[str, RedisLimiter] = {}
_default_limiters_lock = threading.Lock()


def default_limiter() -> Limiter:
    """The shared ``RedisLimiter`` built from settings (one per process and REDIS_URL), or a
    ``NoopLimiter`` with a warning when no Redis is configured (development only: production
    settings require REDIS_URL)."""
    url = _setting("REDIS_URL", None)
    if not url:
        logger.warning("REDIS_URL is not set: Autotask requests are not limited across workers")
        return NoopLimiter()
    with _default_limiters_lock:
        if url not in _default_limiters:
            _default_limiters[url] = RedisLimiter.from_settings()
        return _default_limiters[url]


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a query. ``next_page_url`` lets a caller persist where to resume
    (pass it back as ``resume_from`` with the same query); ``url`` is where this page came
    from (None for the first page)."""

    items: tuple[T, ...]
    next_page_url: str | None
    url: str | None = None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> T:
        return self.items[index]


class AutotaskClient:
    """Autotask REST client for one API user (see module docstring).

    Defaults come from Django settings (``AUTOTASK_INTEGRATION_CODE``,
    ``AUTOTASK_ZONE_LOOKUP_URL``, ``AUTOTASK_TIMEOUT_SECONDS``,
    ``AUTOTASK_CONNECT_TIMEOUT_SECONDS``, ``AUTOTASK_MAX_RETRIES``); every one can be passed
    explicitly. ``limiter`` defaults to the Redis limiter from ``REDIS_URL``; pass
    ``NoopLimiter()`` in unit tests. ``sleep`` and ``clock`` are injectable for fake-clock tests.
    ``before_send`` is called just before each HTTP request, after the limiter's slot and
    budget: a caller that must still own something when it sends (the write-back relay's
    claim) checks it there and raises to send nothing.
    """

    def __init__(
        self,
        username: str,
        secret: str,
        *,
        integration_code: str | None = None,
        zone_lookup_url: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_retries: int | None = None,
        limiter: Limiter | None = None,
        stats: RequestStats | None = None,
        session: requests.Session | None = None,
        session_pool: SessionPool | None = None,
        zone_cache: ZoneCache | None = None,
        retry_policy: RetryPolicy | None = None,
        before_send: Callable[[], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        in_batch_size: int = DEFAULT_IN_BATCH,
        page_size: int = 500,
        max_backoff: float = 60.0,
        max_retry_after: float = 600.0,
    ) -> None:
        if not username or not secret:
            raise ValueError("Autotask username and secret are required")
        if not 1 <= in_batch_size <= MAX_IN_VALUES:
            raise ValueError(f"in_batch_size must be 1..{MAX_IN_VALUES}")
        self.username = username
        self._secret = secret
        self._integration_code = integration_code or _setting("AUTOTASK_INTEGRATION_CODE", None)
        if not self._integration_code:
            raise ValueError("an Autotask integration code (API tracking identifier) is required")
        self.zone_lookup_url = zone_lookup_url or _setting(
            "AUTOTASK_ZONE_LOOKUP_URL",
            "https://webservices.autotask.net/atservicesrest/v1.0/zoneInformation",
        )
        self.timeout = (
            float(connect_timeout or _setting("AUTOTASK_CONNECT_TIMEOUT_SECONDS", 5.0)),
            float(timeout or _setting("AUTOTASK_TIMEOUT_SECONDS", 30.0)),
        )
        retries = max_retries if max_retries is not None else _setting("AUTOTASK_MAX_RETRIES", 5)
        self.retry = retry_policy or RetryPolicy(
            max_attempts=int(retries) + 1,
            max_delay=max_backoff,
            max_retry_after=max_retry_after,
            sleep=sleep,
        )
        self.limiter: Limiter = limiter if limiter is not None else default_limiter()
        self.stats = stats if stats is not None else RequestStats()
        self.clock = clock
        self.in_batch_size = in_batch_size
        self.page_size = page_size
        self._zone_cache = zone_cache if zone_cache is not None else default_zone_cache
        self._zone: ZoneInfo | None = None
        self._zone_lock = threading.Lock()
        # Without a session of the caller's, requests go out on the process's pooled sessions
        # (sessions.py: one checked out per request, kept alive per zone across clients).
        self.session = session
        self.session_pool = session_pool if session_pool is not None else default_session_pool
        self.before_send = before_send

    def __repr__(self) -> str:  # never the secret
        return f"<AutotaskClient user={self.username!r}>"

    def close(self) -> None:
        """Nothing to release: a caller's session is the caller's, pooled ones stay pooled."""

    def __enter__(self) -> AutotaskClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- zone ----------------------------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        """The discovered zone (discovering it on first use)."""
        return self._resolve_zone()

    def _resolve_zone(self, *, force: bool = False) -> ZoneInfo:
        with self._zone_lock:
            if not force:
                if self._zone is not None:
                    return self._zone
                cached = self._zone_cache.get(self.zone_lookup_url, self.username)
                if cached is not None:
                    self._zone = cached
                    return cached
            else:
                self._zone_cache.invalidate(self.zone_lookup_url, self.username)
            zone = self.discover_zone()
            self._zone_cache.put(self.zone_lookup_url, self.username, zone)
            self._zone = zone
            return zone

    def discover_zone(self) -> ZoneInfo:
        """``GET zoneInformation?user=`` without auth headers, not limited (API.md §1, §4:
        exempt from thread limiting). Unknown user → ``AutotaskAuthError(kind="unknown_user")``.
        Uncached: use ``zone`` for the cached value."""
        separator = "&" if "?" in self.zone_lookup_url else "?"
        url = self.zone_lookup_url + separator + urlencode({"user": self.username})
        body = self.retry.call(
            lambda: self._attempt("GET", url, entity=_ZONE_ENTITY, auth=False, db_key=None),
            describe="GET zoneInformation",
            on_retry=self._on_retry,
        )
        return parse_zone_response(body)

    @property
    def db_key(self) -> str:
        """Key of the Autotask database for shared limits (the zone's ``ci``)."""
        return database_key(ci=self.zone.ci, username=self.username)

    # --- transport -----------------------------------------------------------------------------

    def _headers(self, auth: bool) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if auth:
            headers.update(
                {
                    "ApiIntegrationCode": self._integration_code,
                    "UserName": self.username,
                    "Secret": self._secret,
                    "Content-Type": "application/json",
                }
            )
        return headers

    def _session(self, url: str) -> contextlib.AbstractContextManager[requests.Session]:
        if self.session is not None:
            return contextlib.nullcontext(self.session)
        return self.session_pool.session(url)

    def _on_retry(self, error: AutotaskError, delay: float) -> None:
        self.stats.record_retry()

    def _ensure_threshold(self, db_key: str) -> None:
        """The budget needs the database's threshold; fetch it when the limiter says so (none
        cached, a day old, or our count near the budget: limits.py docstring)."""
        try:
            known = self.limiter.threshold_known(db_key)
        except AutotaskError as error:  # limiter down
            self.stats.record_error(error.kind)
            raise
        if not known:
            self.get_threshold_information()

    def _attempt(
        self,
        method: str,
        url: str,
        *,
        entity: str,
        auth: bool = True,
        body: Any = None,
        db_key: str | None,
        ensure_budget: bool = True,
        not_found_ok: bool = False,
    ) -> Any:
        """One HTTP exchange: limiter slot, send, time, count, log, classify."""
        path = urlsplit(url).path
        payload = None if body is None else json.dumps(body)
        if db_key is not None and ensure_budget:
            self._ensure_threshold(db_key)  # its own request, counted by its own _attempt
        try:
            slot = (
                self.limiter.slot(db_key, entity)
                if db_key is not None
                else contextlib.nullcontext()
            )
            with slot:
                if self.before_send is not None:
                    self.before_send()
                started = time.perf_counter()
                try:
                    with self._session(url) as session:
                        response = session.request(
                            method,
                            url,
                            data=payload,
                            headers=self._headers(auth),
                            timeout=self.timeout,
                            allow_redirects=False,
                        )
                        content = response.content
                except requests.Timeout as exc:
                    raise self._network_error(
                        method, path, entity, started, "timeout", "timed out"
                    ) from exc
                except requests.RequestException as exc:
                    raise self._network_error(
                        method, path, entity, started, "connection", type(exc).__name__
                    ) from exc
                elapsed = time.perf_counter() - started
        except AutotaskError as error:
            if error.kind not in ("timeout", "connection"):
                # Nothing was sent (budget, slot wait, limiter down).
                self.stats.record_error(error.kind)
                logger.warning("autotask %s %s not sent: %s", method, path, error)
            raise
        error, parsed = error_for_response(
            status=response.status_code,
            headers=response.headers,
            content=content,
            method=method,
            path=path,
            entity=entity,
            secrets=(self._secret,),
            now=lambda: datetime.fromtimestamp(self.clock(), UTC),
        )
        ms = elapsed * 1000
        if error is not None and not (not_found_ok and response.status_code == 404):
            self.stats.record(entity, elapsed, error.kind)
            logger.warning(
                "autotask %s %s -> %s in %.0f ms: %s", method, path, response.status_code, ms, error
            )
            raise error
        self.stats.record(entity, elapsed)
        logger.debug("autotask %s %s -> %s in %.0f ms", method, path, response.status_code, ms)
        if error is not None:
            return _NOT_FOUND
        return parsed

    def _network_error(
        self, method: str, path: str, entity: str, started: float, kind: str, what: str
    ) -> AutotaskTransientError:
        elapsed = time.perf_counter() - started
        self.stats.record(entity, elapsed, kind)
        logger.warning(
            "autotask %s %s failed after %.0f ms: %s", method, path, elapsed * 1000, what
        )
        return AutotaskTransientError(
            f"Autotask {method} {path}: {what} after {elapsed:.1f} s", kind=kind, entity=entity
        )

    def _call(
        self,
        method: str,
        path: str | None = None,
        *,
        entity: str,
        url: str | None = None,
        body: Any = None,
        ensure_budget: bool = True,
        not_found_ok: bool = False,
    ) -> Any:
        """An authenticated call with retries; after a 401, rediscover the zone once and, if
        the zone moved, try once more there (API.md §1: wrong zone → 401; django-autotask)."""
        rediscovered = False
        while True:
            zone = self._resolve_zone()
            if url is not None:
                if _origin(url) != _origin(zone.base_url):
                    raise AutotaskOriginError(
                        f"refusing to send Autotask credentials to {_origin(url)[1]!r}: "
                        f"not the zone's origin {_origin(zone.base_url)[1]!r}",
                        entity=entity,
                    )
                target = url
            else:
                target = zone.api_url(path or "")
            key = database_key(ci=zone.ci, username=self.username)
            try:
                return self.retry.call(
                    lambda target=target, key=key: self._attempt(
                        method,
                        target,
                        entity=entity,
                        body=body,
                        db_key=key,
                        ensure_budget=ensure_budget,
                        not_found_ok=not_found_ok,
                    ),
                    describe=f"{method} {entity}",
                    on_retry=self._on_retry,
                )
            except AutotaskAuthError as error:
                if error.kind != "bad_secret" or rediscovered:
                    raise
                rediscovered = True
                fresh = self._resolve_zone(force=True)
                if fresh.base_url == zone.base_url or url is not None:
                    # Same zone: the secret really is wrong. A nextPageUrl belongs to the old
                    # zone and cannot be replayed elsewhere.
                    raise
                logger.info("autotask zone for this user moved to %s; retrying", fresh.zone_name)

    # --- queries -------------------------------------------------------------------------------

    def _page_parts(self, entity: str, data: Any) -> tuple[list[Any], str | None]:
        """Validate ``{"items": [...], "pageDetails": {...}}`` (API.md §3.3): paging never stops
        silently, so a missing ``pageDetails`` or a ``count`` that disagrees with the items is
        an error, not the last page."""
        if not isinstance(data, dict):
            raise AutotaskResponseError(f"{entity} query returned a non-object body", entity=entity)
        items = data.get("items")
        if not isinstance(items, list):
            raise AutotaskResponseError(
                f"{entity} query response has no 'items' list", entity=entity
            )
        details = data.get("pageDetails")
        if not isinstance(details, dict):
            raise AutotaskResponseError(
                f"{entity} query response has no 'pageDetails'", entity=entity
            )
        count = details.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count != len(items):
            raise AutotaskResponseError(
                f"{entity} query page says count={count!r} but has {len(items)} items",
                entity=entity,
            )
        next_url = details.get("nextPageUrl")
        if next_url in (None, ""):
            return items, None
        if not isinstance(next_url, str):
            raise AutotaskResponseError(
                f"{entity} query page has a non-string nextPageUrl", entity=entity
            )
        return items, next_url

    def iter_pages(
        self,
        entity: str,
        query: Query | Sequence[Condition] | None = None,
        *,
        resume_from: str | None = None,
        parse: bool = True,
    ) -> Iterator[Page[Any]]:
        """Stream ``POST /{Entity}/query`` page by page, following ``nextPageUrl`` with POST and
        the same body — never GET, which answers 405 (API.md §3.3, §8.1).

        Items are typed records for known entities (raw dicts otherwise or with
        ``parse=False``). ``resume_from`` restarts at a saved ``Page.next_page_url`` (same
        query required: the paging token belongs to it). A repeated ``nextPageUrl`` raises
        instead of looping.
        """
        record_type = record_type_for(entity) if parse else None
        q = as_query(query)
        if q.max_records > self.page_size:
            q = Query(
                filters=q.filters, include_fields=q.include_fields, max_records=self.page_size
            )
        if record_type is not None:
            q = q.with_required_fields(record_type.REQUIRED_FIELDS)
        body = q.to_body()
        url = resume_from
        seen: set[str] = set()
        if url is not None:
            seen.add(url)
        while True:
            if url is None:
                data = self._call("POST", f"{entity}/query", entity=entity, body=body)
            else:
                data = self._call("POST", entity=entity, url=url, body=body)
            items, next_url = self._page_parts(entity, data)
            records = (
                tuple(record_type.from_api(item) for item in items)
                if record_type is not None
                else tuple(items)
            )
            yield Page(items=records, next_page_url=next_url, url=url)
            if next_url is None:
                return
            if next_url in seen:
                raise AutotaskResponseError(
                    f"{entity} paging repeated a nextPageUrl; refusing to loop", entity=entity
                )
            seen.add(next_url)
            url = next_url

    def iter_records(
        self, entity: str, query: Query | Sequence[Condition] | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """One record at a time across all pages (see ``iter_pages``)."""
        for page in self.iter_pages(entity, query, **kwargs):
            yield from page.items

    def iter_by_ids(
        self,
        entity: str,
        ids: Iterable[int],
        *,
        query: Query | Sequence[Condition] | None = None,
        batch_size: int | None = None,
    ) -> Iterator[Any]:
        """Records whose ``id`` is in ``ids``: one ``in`` query per batch of ≤ 400 ids, because
        Autotask rejects more than 500 OR conditions (API.md §3.2, §8.6). Ids are de-duplicated
        and sent in ascending order."""
        size = batch_size or self.in_batch_size
        if not 1 <= size <= MAX_IN_VALUES:
            raise ValueError(f"batch_size must be 1..{MAX_IN_VALUES}")
        unique = sorted({int(i) for i in ids})
        base = as_query(query)
        for start in range(0, len(unique), size):
            chunk = unique[start : start + size]
            yield from self.iter_records(entity, base.and_filter(Q.in_("id", chunk)))

    def count(self, entity: str, query: Query | Sequence[Condition] | None = None) -> int:
        """``POST /{Entity}/query/count`` → ``{"queryCount": N}`` (apigrate README, n8n)."""
        data = self._call(
            "POST", f"{entity}/query/count", entity=entity, body=as_query(query).to_count_body()
        )
        value = data.get("queryCount") if isinstance(data, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise AutotaskResponseError(
                f"{entity} query/count returned no integer queryCount", entity=entity
            )
        return value

    def get_by_id(self, entity: str, record_id: int, *, parse: bool = True) -> Any | None:
        """``GET /{Entity}/{id}``; a missing record is None whether Autotask answers 404
        (apigrate) or 200 ``{"item": null}`` (n8n, django-autotask) — API.md §3.1."""
        data = self._call("GET", f"{entity}/{int(record_id)}", entity=entity, not_found_ok=True)
        if data is _NOT_FOUND:
            return None
        if not isinstance(data, dict) or "item" not in data:
            raise AutotaskResponseError(f"{entity}/{record_id} returned no 'item'", entity=entity)
        item = data["item"]
        if item is None:
            return None
        record_type = record_type_for(entity) if parse else None
        return record_type.from_api(item) if record_type is not None else item

    # --- operation-named reads -------------------------------------------------------------

    def iter_companies(self, query: Query | Sequence[Condition] | None = None) -> Iterator[Company]:
        return self.iter_records("Companies", query)

    def iter_contacts(self, query: Query | Sequence[Condition] | None = None) -> Iterator[Contact]:
        """Contacts are queried at top level (API.md §5.3)."""
        return self.iter_records("Contacts", query)

    def iter_invoices(self, query: Query | Sequence[Condition] | None = None) -> Iterator[Invoice]:
        return self.iter_records("Invoices", query)

    def iter_invoice_pages(
        self, query: Query | Sequence[Condition] | None = None, *, resume_from: str | None = None
    ) -> Iterator[Page[Invoice]]:
        return self.iter_pages("Invoices", query, resume_from=resume_from)

    def iter_payment_terms(
        self, query: Query | Sequence[Condition] | None = None
    ) -> Iterator[PaymentTerm]:
        return self.iter_records("PaymentTerms", query)

    def iter_billing_items(
        self, query: Query | Sequence[Condition] | None = None
    ) -> Iterator[BillingItem]:
        """Invoice lines: pass ``[Q.eq("invoiceID", invoice_id)]`` (AT-help Invoices)."""
        return self.iter_records("BillingItems", query)

    def iter_currencies(
        self, query: Query | Sequence[Condition] | None = None
    ) -> Iterator[Currency]:
        """Currencies (API.md §10): the ISO code of a company's ``currencyID`` and the
        database's internal currency. A database has a handful: one page."""
        return self.iter_records("Currencies", query)

    def iter_invoices_by_ids(self, ids: Iterable[int]) -> Iterator[Invoice]:
        return self.iter_by_ids("Invoices", ids)

    def iter_companies_by_ids(self, ids: Iterable[int]) -> Iterator[Company]:
        return self.iter_by_ids("Companies", ids)

    def get_invoice(self, invoice_id: int) -> Invoice | None:
        return self.get_by_id("Invoices", invoice_id)

    def get_company(self, company_id: int) -> Company | None:
        return self.get_by_id("Companies", company_id)

    def get_invoice_pdf(self, invoice_id: int) -> InvoicePdf:
        """``GET /Invoices/{id}/InvoicePDF`` (API.md §5.1 "Special endpoints"): flat or
        ``{"item": ...}``-wrapped envelope; the decoded bytes must start with ``%PDF-``."""
        data = self._call("GET", f"Invoices/{int(invoice_id)}/InvoicePDF", entity="Invoices")
        return InvoicePdf.from_api(data, invoice_id=int(invoice_id))

    def get_threshold_information(self) -> ThresholdInfo:
        """``GET /V1.0/ThresholdInformation`` (API.md §4). Counts toward usage and thread
        limits itself; the result also refreshes the limiter's budget for this database."""
        data = self._call("GET", _THRESHOLD_ENTITY, entity=_THRESHOLD_ENTITY, ensure_budget=False)
        info = ThresholdInfo.from_api(data)
        self.limiter.set_threshold(self.db_key, info)
        return info

    def check_connection(self) -> ThresholdInfo:
        """Cheap authenticated check: one ``ThresholdInformation`` call.

        Chosen over a Companies count because it needs the same credentials and tracking
        identifier but no entity permission and no query work, its answer is tiny and fixed,
        and we need it anyway for the request budget (this call refreshes it). Raises
        ``AutotaskAuthError`` for bad credentials.
        """
        return self.get_threshold_information()

    def get_entity_fields(self, entity: str) -> list[EntityField]:
        """``GET /{Entity}/entityInformation/fields`` (API.md §3.1): field metadata incl.
        picklists — the runtime source of truth for read-only/queryable flags."""
        data = self._call("GET", f"{entity}/entityInformation/fields", entity=entity)
        raw_fields = data.get("fields") if isinstance(data, dict) else None
        if not isinstance(raw_fields, list):
            raise AutotaskResponseError(
                f"{entity} entityInformation/fields returned no 'fields' list", entity=entity
            )
        return [EntityField.from_api(item, entity=entity) for item in raw_fields]

    # --- writes ------------------------------------------------------------------------------

    def _patch(self, entity: str, body: dict[str, Any]) -> int:
        """``PATCH /{Entity}`` partial update → ``{"itemId": N}`` (AT-help PATCH page). PATCH,
        not PUT: PUT nulls every writable field we leave out."""
        data = self._call("PATCH", entity, entity=entity, body=body)
        item_id = data.get("itemId") if isinstance(data, dict) else None
        if isinstance(item_id, bool) or not isinstance(item_id, int) or item_id != body["id"]:
            raise AutotaskResponseError(
                f"{entity} PATCH of record {body['id']} returned itemId {item_id!r}",
                entity=entity,
            )
        return item_id

    def set_invoice_paid_date(self, invoice_id: int, paid: date | None) -> int:
        """Set (or clear, with None) ``Invoices.paidDate``. It is date-only (AT-help Invoices:
        the time is dropped), so we send ``YYYY-MM-DDT00:00:00Z`` built from the calendar date,
        never a converted datetime. Clearing with ``null`` is UNVERIFIED against live Autotask.
        """
        if isinstance(paid, datetime):
            raise TypeError("paidDate is date-only: pass a datetime.date, not a datetime")
        if paid is not None and not isinstance(paid, date):
            raise TypeError(f"paid must be a date or None, not {type(paid).__name__}")
        value = None if paid is None else f"{paid.isoformat()}T00:00:00Z"
        return self._patch("Invoices", {"id": int(invoice_id), "paidDate": value})

    def set_invoice_web_service_date(self, invoice_id: int, when: datetime | None) -> int:
        """Set ``Invoices.webServiceDate`` — Autotask's flag for "processed by an external
        application" (AT-help Invoices). ``when`` must be aware; sent as UTC."""
        if when is not None and not isinstance(when, datetime):
            raise TypeError("webServiceDate needs an aware datetime or None")
        value = None if when is None else format_datetime(when)
        return self._patch("Invoices", {"id": int(invoice_id), "webServiceDate": value})


def minimum_requests(total_records: int, page_size: int = 500) -> int:
    """Requests a full read needs at best: ceil(n / page) pages (≥ 1) plus the zone lookup."""
    return max(1, math.ceil(total_records / page_size)) + 1
