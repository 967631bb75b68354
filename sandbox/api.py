"""The Autotask REST surface: routing under ``…/ATServicesRest/V1.0/``, auth, limits, faults
and the entity endpoints.

Order of checks for an authenticated call, chosen to match what clients observe
(API.md §2, §4): unknown UserName → 500; bad Secret → 401; right user at another database's
zone → 401; bad ApiIntegrationCode → 500; permission switch → 500/403; unknown endpoint → 404;
thread limit (per endpoint) → 500/429 Itgenatr005; injected faults; hourly threshold → 429
(or 500 with the same text: switch ``threshold_status``); usage latency; then the endpoint
itself. Requests refused before the threshold check are not counted against it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import Message
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sandbox import errors, query, wire
from sandbox.errors import ApiError, business_error, method_not_allowed
from sandbox.faults import HTML_PAGE, fault_response
from sandbox.schema import ENTITIES, INTEGER_TYPES, NUMBER_TYPES, Entity
from sandbox.state import check_own_company_change

if TYPE_CHECKING:
    from sandbox.state import SandboxDatabase

JSON = "application/json; charset=utf-8"
THRESHOLD_ENDPOINT = "ThresholdInformation"
WRITE_METHODS = ("POST", "PATCH", "PUT")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes

    def param(self, name: str) -> str | None:
        for key, values in self.query.items():
            if key.lower() == name.lower() and values:
                return values[0]
        return None

    def json(self) -> Any:
        if not self.body:
            raise business_error("The request body is empty; a JSON body is required.")
        try:
            return json.loads(self.body)
        except ValueError:
            raise business_error("The request body is not valid JSON.") from None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)
    hold_then_drop: float | None = None  # seconds to hold before closing without answering

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, wire.dumps(payload), JSON, headers or {})

    @classmethod
    def from_error(cls, error: ApiError) -> Response:
        body = error.body if isinstance(error.body, bytes) else wire.dumps(error.body)
        return cls(error.status, body, error.content_type, dict(error.headers))


def not_found(path: str) -> ApiError:
    return ApiError(
        404, {"Message": f"No HTTP resource was found that matches the request URI '{path}'."}
    )


class AutotaskApi:
    """Handles every request whose path is not under ``/_sandbox/``."""

    def __init__(self, server) -> None:
        self.server = server  # SandboxServer: database lookup, base URL, stop event
        self._pdf_cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._pdf_lock = threading.Lock()

    def handle(self, req: Request) -> Response:
        segments = [s for s in req.path.split("/") if s]
        lowered = [s.lower() for s in segments]
        zone: str | None = None
        if lowered[:1] == ["zones"] and len(segments) >= 2:
            zone, segments, lowered = segments[1], segments[2:], lowered[2:]
        try:
            if lowered[:1] != ["atservicesrest"]:
                raise not_found(req.path)
            if lowered[1:2] == ["versioninformation"]:
                return Response.json(200, {"apiVersions": ["V1.0"]})
            if lowered[1:2] != ["v1.0"] or len(segments) < 3:
                raise not_found(req.path)
            if lowered[2] == "zoneinformation":
                return self._zone_information(req)
            return self._authenticated(req, zone, segments[2:], lowered[2:])
        except ApiError as error:
            return Response.from_error(error)

    # -- zone discovery (no auth, not thread-limited, not counted) -------------------------

    def _zone_information(self, req: Request) -> Response:
        user = req.param("user") or ""
        db = self.server.find_database(user)
        if db is None:
            raise business_error(errors.ZONE_UNKNOWN)
        started = time.perf_counter()
        fault = db.faults.draw("zoneInformation", explicit_only=True)
        response = self._fault(fault) if fault else Response.json(200, db.zone_information())
        self._log(db, req, "zoneInformation", response, started)
        return response

    # -- authenticated calls ---------------------------------------------------------------

    def _authenticated(self, req: Request, zone, segments, lowered) -> Response:
        db = self.server.find_database(req.headers.get("UserName") or "")
        if db is None:
            raise business_error(errors.UNKNOWN_USER)
        started = time.perf_counter()
        endpoint = _endpoint(lowered[0])
        response = self._guarded(db, req, zone, endpoint, segments[1:], lowered[1:])
        self._log(db, req, endpoint or segments[0], response, started)
        return response

    def _guarded(self, db, req, zone, endpoint, segments, lowered) -> Response:
        try:
            self._check_auth(db, req, zone)
            if endpoint is None:
                raise not_found(req.path)
            if not db.acquire_slot(endpoint):
                limit = db.switches.thread_limit
                raise business_error(
                    errors.THREAD_LIMIT.format(limit=limit),
                    status=db.switches.thread_limit_status,
                )
            try:
                return self._limited(db, req, endpoint, segments, lowered)
            finally:
                db.release_slot(endpoint)
        except ApiError as error:
            return Response.from_error(error)

    def _check_auth(self, db: SandboxDatabase, req: Request, zone: str | None) -> None:
        if req.headers.get("Secret") != db.secret or zone != str(db.ci):
            body = errors.DENIED_401 if db.switches.unauthorized_body == "json" else b""
            raise ApiError(401, body, content_type=JSON if body else "text/plain")
        if req.headers.get("ApiIntegrationCode") != db.integration_code:
            raise business_error(errors.BAD_INTEGRATION_CODE)
        if db.switches.permission_denied:
            raise business_error(errors.NO_PERMISSION, status=db.switches.permission_status)

    def _limited(self, db, req, endpoint, segments, lowered) -> Response:
        fault = db.faults.draw(endpoint)
        if db.latency_ms:
            self.server.sleep(db.latency_ms / 1000)
        if fault is not None:
            return self._fault(fault, db.threshold)
        admitted, delay, retry_after = db.admit()
        if not admitted:
            headers = {}
            if db.switches.threshold_retry_after and retry_after is not None:
                headers["Retry-After"] = str(retry_after)
            raise ApiError(
                db.switches.threshold_status,
                {"errors": [errors.HOURLY_THRESHOLD.format(threshold=db.threshold)]},
                headers=headers,
            )
        if delay:
            self.server.sleep(delay)
        if endpoint == THRESHOLD_ENDPOINT:
            if segments or req.method != "GET":
                raise not_found(req.path)
            return Response.json(200, db.threshold_information())
        return self._entity(db, db.entity(endpoint), req, segments, lowered)

    def _fault(self, fault, threshold: int = 10_000) -> Response:
        if fault.kind == "timeout":
            return Response(0, hold_then_drop=fault.seconds)
        if fault.kind == "drop":
            return Response(0, hold_then_drop=0.0)
        status, headers, body, content_type = fault_response(fault, threshold)
        return Response(status, body, content_type, headers)

    def _log(self, db, req: Request, entity: str, response: Response, started: float) -> None:
        body = None
        if req.method in WRITE_METHODS and req.body:
            try:
                body = json.loads(req.body)
            except ValueError:
                body = req.body.decode("utf-8", "replace")
        db.log_request(
            {
                "method": req.method,
                "path": req.path,
                "query": req.query,
                "entity": entity,
                "status": response.status if response.hold_then_drop is None else None,
                "dropped": response.hold_then_drop is not None,
                "timestamp": wire.now_wire(),
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "body": body,
            }
        )

    # -- entity endpoints ------------------------------------------------------------------

    def _entity(self, db, entity: Entity, req: Request, segments, lowered) -> Response:
        method = req.method
        if not lowered:
            if method in ("PATCH", "PUT"):
                return self._update(db, entity, req)
            if method == "POST" and entity.can_create and entity.name == "Companies":
                return self._create_company(db, req)
            raise method_not_allowed(method)
        head = lowered[0]
        if head == "query":
            rest = lowered[1:]
            if rest == []:
                if method not in ("GET", "POST"):
                    raise method_not_allowed(method)
                return self._query(db, entity, req)
            if rest == ["next"]:
                if method != "POST":
                    raise method_not_allowed(method)
                if req.param("paging") is None:
                    raise business_error("The paging parameter is required.")
                return self._query(db, entity, req)
            if rest == ["count"]:
                if method not in ("GET", "POST"):
                    raise method_not_allowed(method)
                compiled, _ = self._compile(db, entity, req)
                ids, rows = db.table(entity.name).snapshot()
                return Response.json(200, {"queryCount": query.count(ids, rows, compiled)})
            raise not_found(req.path)
        if head == "entityinformation":
            if method != "GET":
                raise method_not_allowed(method)
            if len(lowered) == 1:
                return Response.json(200, entity.info())
            if lowered[1:] == ["fields"]:
                return Response.json(200, {"fields": [f.info() for f in entity.fields]})
            if lowered[1:] == ["userdefinedfields"]:
                return Response.json(200, {"fields": [u.info() for u in entity.udfs]})
            raise not_found(req.path)
        try:
            row_id = int(segments[0])
        except ValueError:
            raise not_found(req.path) from None
        if len(lowered) == 1:
            if method != "GET":
                raise method_not_allowed(method)
            return self._get_item(db, entity, row_id)
        if lowered[1:] == ["invoicepdf"] and entity.name == "Invoices":
            if method != "GET":
                raise method_not_allowed(method)
            return self._invoice_pdf(db, row_id)
        raise not_found(req.path)

    def _get_item(self, db, entity: Entity, row_id: int) -> Response:
        table = db.table(entity.name)
        row = table.get(row_id)
        if row is None:
            if db.switches.missing_item == "null":
                return Response.json(200, {"item": None})
            return Response.json(404, {"errors": ["No matching records found."]})
        return Response.json(200, {"item": table.as_dict(row)})

    def _compile(self, db, entity: Entity, req: Request) -> tuple[query.CompiledQuery, str | None]:
        if req.method == "POST":
            body, search = req.json(), None
        else:
            search = req.param("search")
            if search is None:
                raise business_error("The search parameter is required for a GET query.")
            try:
                body = json.loads(search)
            except ValueError:
                raise business_error("The search parameter is not valid JSON.") from None
        allow_empty = db.switches.empty_filter == "match_all"
        return query.compile_query(body, entity, allow_empty_filter=allow_empty), search

    def _query(self, db, entity: Entity, req: Request) -> Response:
        compiled, search = self._compile(db, entity, req)
        token = req.param("paging")
        after = query.decode_token(token, compiled.digest) if token else None
        table = db.table(entity.name)
        ids, rows = table.snapshot()
        if db.switches.result_order == "scrambled":
            page = query.select_page_scrambled(ids, rows, compiled, after)
        else:
            page = query.select_page(ids, rows, compiled, after)

        def url(after_id: int | None) -> str:
            paging = query.encode_token(after_id, compiled.digest)
            base = f"{db.zone_url}V1.0/{entity.name}/query"
            if search is None:
                return f"{base}/next?paging={paging}"
            return f"{base}?search={quote(search, safe='')}&paging={paging}"

        details = {
            "count": len(page.rows),
            "requestCount": compiled.max_records,
            "prevPageUrl": url(page.prev_after) if page.has_prev else None,
            "nextPageUrl": url(page.next_after) if page.next_after is not None else None,
        }
        if compiled.include is not None:
            items = query.render(page.rows, entity, compiled.include)
            return Response.json(200, {"items": items, "pageDetails": details})
        # Whole rows: the same bytes, from each row's cached JSON.
        body = b'{"items":' + table.rows_json(page.rows) + b',"pageDetails":'
        return Response(200, body + wire.dumps(details) + b"}")

    # -- writes ------------------------------------------------------------------------------

    def _update(self, db, entity: Entity, req: Request) -> Response:
        writable = ("Invoices", "Companies", "BillingItems", "Currencies")
        if not entity.can_update or entity.name not in writable:
            raise method_not_allowed(req.method)
        body = req.json()
        if not isinstance(body, dict):
            raise business_error("The request body must be a JSON object.")
        keys = {k.lower(): k for k in body}
        if "id" not in keys:
            raise business_error(f"An id is required to update {entity.name}.")
        try:
            row_id = int(body[keys["id"]])
        except (TypeError, ValueError):
            raise business_error(f"Invalid id: {json.dumps(body[keys['id']])}.") from None
        table = db.table(entity.name)
        with db._write_lock:
            row = table.get(row_id)
            if row is None:
                raise business_error(errors.NO_RECORD)
            changes = _writable_changes(entity, body, row)
            if req.method == "PUT":
                for f in entity.fields:
                    if not f.read_only and f.name not in changes:
                        if f.required:
                            raise business_error(f"{f.name} is required.")
                        changes[f.name] = None
            if entity.name == "Invoices" and "paidDate" in changes:
                raw = next((v for k, v in body.items() if k.lower() == "paiddate"), None)
                if raw is not None:
                    changes["paidDate"] = _paid_date(db.switches, raw)
                elif db.switches.paid_date_null == "ignore":
                    del changes["paidDate"]
            if entity.name == "Companies":
                try:
                    check_own_company_change(row_id, changes)
                except ValueError as error:
                    raise business_error(str(error)) from None
                changes["lastTrackedModifiedDateTime"] = wire.now_wire()
            if entity.name == "Currencies":
                changes["lastModifiedDateTime"] = wire.now_wire()
            table.update(row_id, changes)
        return Response.json(200, {"itemId": row_id})

    def _create_company(self, db, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict):
            raise business_error("The request body must be a JSON object.")
        fields_ = {k: v for k, v in body.items() if k.lower() != "id"}
        entity = db.entity("Companies")
        template = dict.fromkeys(entity.names)
        changes = _writable_changes(entity, fields_, tuple(template.values()))
        for f in entity.fields:
            if f.required and not f.read_only and changes.get(f.name) is None:
                raise business_error(f"{f.name} is required.")
        record = db.create_company(**changes)
        return Response.json(200, {"itemId": record["id"]})

    # -- InvoicePDF --------------------------------------------------------------------------

    def _invoice_pdf(self, db, invoice_id: int) -> Response:
        from sandbox.pdf import render_invoice_pdf

        invoices = db.table("invoices")
        row = invoices.get(invoice_id)
        if row is None:
            return Response.json(404, {"errors": ["No matching records found."]})
        number = row[invoices.entity.index["invoiceNumber"]] or str(invoice_id)
        failure = db.pdf_failures.get(invoice_id)
        if failure is not None:
            return _failed_pdf(db, invoice_id, number, failure)
        company_row = db.table("companies").get(row[invoices.entity.index["companyID"]])
        compress = db.switches.pdf_compress
        key = (db.ci, row[:-1], company_row[:-1] if company_row else None, compress)
        with self._pdf_lock:
            pdf = self._pdf_cache.get(key)
        if pdf is None:
            invoice = invoices.as_dict(row)
            company = db.get_company(invoice["companyID"])
            pdf = render_invoice_pdf(
                invoice,
                company,
                db.invoice_lines(invoice_id),
                compress=compress,
                currency=db.company_currency(invoice["companyID"]),
            )
            with self._pdf_lock:
                self._pdf_cache[key] = pdf
                while len(self._pdf_cache) > 256:
                    self._pdf_cache.popitem(last=False)
        item = {
            "id": invoice_id,
            "contentType": "application/pdf",
            "fileName": f"Invoice-{number}.pdf",
            "fileSize": len(pdf),
            "data": base64.b64encode(pdf).decode(),
        }
        return Response.json(200, {"item": item} if db.switches.pdf_wrapped else item)


PDF_ERROR = "An error occurred while generating the PDF for invoice {id}."


def _failed_pdf(db, invoice_id: int, number: str, kind: str) -> Response:
    """An InvoicePDF answer for an invoice marked with db.fail_invoice_pdf."""
    if kind == "500":
        return Response.json(500, {"errors": [PDF_ERROR.format(id=invoice_id)]})
    if kind == "error_body":
        return Response.json(200, {"errors": [PDF_ERROR.format(id=invoice_id)]})
    data = b"" if kind == "empty" else HTML_PAGE  # "not_pdf": an error page, not a PDF
    item = {
        "id": invoice_id,
        "contentType": "application/pdf",
        "fileName": f"Invoice-{number}.pdf",
        "fileSize": len(data),
        "data": base64.b64encode(data).decode(),
    }
    return Response.json(200, {"item": item} if db.switches.pdf_wrapped else item)


def _paid_date(switches, value: Any) -> str:
    """A written paidDate as stored, per the paid_date_time switch (UNVERIFIED which one
    Autotask does; API.md §10)."""
    try:
        mode = switches.paid_date_time
        if mode == "date":
            return wire.normalize_date(value)
        instant = wire.parse_datetime(value)
        if mode == "keep_time":
            return wire.format_datetime(instant)
        if mode == "local_date":
            instant += timedelta(hours=switches.tenant_utc_offset_hours)
        return wire.format_date(instant.date())
    except ValueError:
        raise business_error(f"Invalid value for paidDate: {json.dumps(value)}.") from None


def _endpoint(segment: str) -> str | None:
    if segment == THRESHOLD_ENDPOINT.lower():
        return THRESHOLD_ENDPOINT
    entity = ENTITIES.get(segment)
    return entity.name if entity else None


def _writable_changes(entity: Entity, body: dict, row: tuple) -> dict[str, Any]:
    """Validated, stored-form values of a PATCH/PUT body. A read-only field is an error
    naming it (SOAP ignored them; REST clients are better served by a loud failure)."""
    changes: dict[str, Any] = {}
    for key, value in body.items():
        lowered = key.lower()
        if lowered == "id":
            continue
        if lowered == "userdefinedfields":
            if not entity.udfs:
                if value in ([], None):
                    continue
                raise business_error(f"{entity.name} has no user-defined fields.")
            changes["userDefinedFields"] = _merge_udfs(entity, row[-1], value)
            continue
        f = entity.field(key)
        if f is None:
            raise business_error(f"Unable to find {key} in the {entity.name}")
        if f.read_only:
            raise business_error(
                f"The field {f.name} is read-only and cannot be updated on {entity.name}."
            )
        changes[f.name] = _write_value(f, value)
    return changes


def _write_value(f, value: Any) -> Any:
    if value is None:
        return None
    bad = business_error(f"Invalid value for {f.name}: {json.dumps(value)}.")
    if f.data_type == "datetime":
        try:
            return wire.normalize_date(value) if f.date_only else wire.normalize_datetime(value)
        except ValueError:
            raise bad from None
    if f.data_type == "boolean":
        if not isinstance(value, bool):
            raise bad
        return value
    if f.data_type in INTEGER_TYPES:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise bad
        try:
            number = int(value)
        except ValueError:
            raise bad from None
        if f.picklist and number not in {v for v, _ in f.picklist}:
            raise business_error(f"Value {number} is not a valid picklist value for {f.name}.")
        return number
    if f.data_type in NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    text = str(value)
    if f.length and len(text) > f.length:
        raise business_error(f"{f.name} exceeds its maximum length of {f.length}.")
    return text


def _merge_udfs(entity: Entity, current, changes: Any) -> list[dict]:
    if not isinstance(changes, list):
        raise business_error("userDefinedFields must be an array.")
    merged = {u["name"].lower(): dict(u) for u in current}
    for udf in changes:
        if not isinstance(udf, dict) or "name" not in udf:
            raise business_error("Each user-defined field needs a name.")
        definition = next((d for d in entity.udfs if d.name.lower() == udf["name"].lower()), None)
        if definition is None:
            raise business_error(f"Unable to find {udf['name']} in the {entity.name} UDFs")
        value = udf.get("value")
        merged[definition.name.lower()] = {
            "name": definition.name,
            "value": None if value is None else str(value),
        }
    return list(merged.values())
