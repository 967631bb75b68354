"""The control surface: JSON over HTTP under ``/_sandbox/``, no Autotask auth.

For tests, the demo and benchmarks. Every route calls a public SandboxDatabase method, so the
same operations are available in-process (named in brackets). ``{db}`` is a database's ``ci``
or its username. Errors: 404 ``{"error": …}`` for an unknown database/record/route, 400 for a
bad value. Requests here are not in any database's request log and use no threshold.

Databases
  GET    /_sandbox/databases                        list (summary() of each)
  GET    /_sandbox/databases/{db}                   counts, switches, faults [summary]

Invoices (what happens in the Autotask UI)
  POST   /_sandbox/databases/{db}/invoices          create [create_invoice]: {"companyID": 174,
         "lines": [{"quantity": 2, "rate": 50.0, "itemName": "…"}], "invoiceDate": "2025-10-01",
         "paymentTerm": 1, "invoiceNumber": "X-1" ("" = no number yet), "taxRate": 0.08,
         "taxRegionName": "…", "createDateTime": "…"}; all but companyID optional; the
         company's pending credits land on it → {"item": …}
  GET    /_sandbox/databases/{db}/invoices/{id}     {"item": invoice, "lines": [billing items]}
  PATCH  /_sandbox/databases/{db}/invoices/{id}     change fields by wire name [update_invoice],
         e.g. {"paidDate": "2025-10-02"}, {"paidDate": null} (clear), {"invoiceNumber": "1099"}
         → {"item": …}; amounts and dates of a posted invoice (invoiceTotal, dueDate, …) → 400
         unless switch invoice_edit_in_place (legacy)
  POST   /_sandbox/databases/{db}/invoices/{id}/void      [void_invoice] → {"item": …}
  POST   /_sandbox/databases/{db}/invoices/{id}/reissue   void it and invoice it again
         [reissue_invoice]: optional {"invoiceTotal": 90.5, "dueDate": "2025-11-01"}
         → {"voided_id": id, "new_id": replacement id}
  PUT    /_sandbox/databases/{db}/invoices/{id}/pdf-failure   its InvoicePDF fails
         [fail_invoice_pdf]: {"kind": "500" | "error_body" | "empty" | "not_pdf"} (POST too)
  DELETE /_sandbox/databases/{db}/invoices/{id}/pdf-failure   works again
         [clear_invoice_pdf_failure]
  POST   /_sandbox/databases/{db}/invoices/{id}/credits   legacy (switch credit_in_place, else
         400): negative line lowering that invoice's total [add_credit]: {"amount": 25.0,
         "description": "Credit"} → {"item": line}
  DELETE /_sandbox/databases/{db}/invoices/{id}     legacy (switch invoice_delete, else 400):
         remove with its lines [delete_invoice]

Companies
  POST   /_sandbox/databases/{db}/companies         create [create_company]: {"companyName": …,
         any Companies field, "currency": "EUR" (ISO code, optional)} → {"item": …}
  GET    /_sandbox/databases/{db}/companies/{id}    {"item": …}
  PATCH  /_sandbox/databases/{db}/companies/{id}    change fields [update_company]; "currency":
         "EUR" sets currencyID
  DELETE /_sandbox/databases/{db}/companies/{id}    remove with its contacts [delete_company];
         company 0 (the tenant's own) → 400
  POST   /_sandbox/databases/{db}/companies/{id}/credits  a credit for the company's next
         invoice [add_company_credit]: {"amount": 25.0, "description": "Credit"}
         → {"item": pending credit line, "pending": [its pending credits]}
  GET    /_sandbox/databases/{db}/companies/{id}/credits  {"pending": […]} [pending_credits]

Tenant settings
  GET    /_sandbox/databases/{db}/currencies        {"currencies": [Currencies rows]}
  POST   /_sandbox/databases/{db}/currencies        {"name": "EUR"} → {"id": …} [currency_id]
  GET    /_sandbox/databases/{db}/company-types     {"companyTypes": {"1": "Customer", …}}
  PUT    /_sandbox/databases/{db}/company-types     {"1": "Lead", "3": "Customer", …}: the
         companyType picklist; companies keep their role by label [set_company_types]

Faults (see sandbox.faults for kinds)
  GET    /_sandbox/databases/{db}/faults            [describe_faults]
  PUT    /_sandbox/databases/{db}/faults            share [set_faults]: {"latency_ms": 0,
         "error_rate": 0.1, "kinds": ["503_html", …], "seed": 7, "timeout_seconds": 30,
         "retry_after": null, "entities": ["Invoices"]}
  POST   /_sandbox/databases/{db}/faults/next       queue [fail_next]: {"count": 3, "kind": "429",
         "entity": null, "retry_after": 2, "seconds": 30}
  DELETE /_sandbox/databases/{db}/faults            clear share, queue and latency [clear_faults]

Switches (see state.Switches; plus "threshold" and "latency_ms")
  GET    /_sandbox/databases/{db}/switches          [settings]
  PATCH  /_sandbox/databases/{db}/switches          [set_switches]: {"missing_item": "null",
         "threshold": 100, "usage_delay_50": 0.01, …}

Request log and counters
  GET    /_sandbox/databases/{db}/requests          ?entity=Invoices&method=PATCH&status=200 →
         {"requests": [{method, path, query, entity, status, dropped, timestamp, duration_ms,
         body}], "requestsThisHour": N} [requests, requests_count]; never headers/secrets
  DELETE /_sandbox/databases/{db}/requests          reset log and rolling-hour count
         [reset_counters]
"""

from __future__ import annotations

import json
from typing import Any

from sandbox.api import Request, Response


class _ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def handle(sandbox, req: Request) -> Response:
    segments = [s for s in req.path.split("/") if s][1:]
    try:
        payload = _route(sandbox, req, segments)
        return Response.json(200, payload)
    except _ControlError as error:
        return Response.json(error.status, {"error": str(error)})
    except KeyError as error:
        return Response.json(404, {"error": str(error.args[0] if error.args else error)})
    except (ValueError, TypeError) as error:
        return Response.json(400, {"error": str(error)})


def _body(req: Request) -> dict:
    if not req.body:
        return {}
    try:
        body = json.loads(req.body)
    except ValueError:
        raise _ControlError(400, "body is not JSON") from None
    if not isinstance(body, dict):
        raise _ControlError(400, "body must be a JSON object")
    return body


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _ControlError(404, f"not an id: {value}") from None


def _route(sandbox, req: Request, segments: list[str]) -> Any:
    method = req.method
    if segments[:1] != ["databases"]:
        raise _ControlError(404, f"no control route {req.path}")
    if len(segments) == 1:
        if method != "GET":
            raise _ControlError(405, "GET only")
        return {"databases": [db.summary() for db in sandbox.databases]}
    db = sandbox.database_by_key(segments[1])
    rest = segments[2:]
    route = (method, *[s if not s.isdigit() else "#" for s in rest])
    body = _body(req) if method in ("POST", "PUT", "PATCH") else {}

    if route == ("GET",):
        return db.summary()
    if route == ("POST", "invoices"):
        return {"item": db.create_invoice(**_invoice_kwargs(body))}
    if route in (("GET", "invoices", "#"), ("PATCH", "invoices", "#"), ("DELETE", "invoices", "#")):
        invoice_id = _int(rest[1])
        if method == "DELETE":
            db.delete_invoice(invoice_id)
            return {"deleted": invoice_id}
        if method == "PATCH":
            return {"item": db.update_invoice(invoice_id, **body)}
        invoice = db.get_invoice(invoice_id)
        if invoice is None:
            raise KeyError(f"invoice {invoice_id} not found")
        return {"item": invoice, "lines": db.invoice_lines(invoice_id)}
    if route == ("POST", "invoices", "#", "void"):
        return {"item": db.void_invoice(_int(rest[1]), **body)}
    if route == ("POST", "invoices", "#", "credits"):
        return {"item": db.add_credit(_int(rest[1]), **body)}
    if route == ("POST", "invoices", "#", "reissue"):
        kwargs = _keys(body, {"invoicetotal": "invoice_total", "duedate": "due_date"})
        return db.reissue_invoice(_int(rest[1]), **kwargs)
    if route in (("PUT", "invoices", "#", "pdf-failure"), ("POST", "invoices", "#", "pdf-failure")):
        return db.fail_invoice_pdf(_int(rest[1]), **_keys(body, {"kind": "kind"}))
    if route == ("DELETE", "invoices", "#", "pdf-failure"):
        return {"pdfFailures": db.clear_invoice_pdf_failure(_int(rest[1]))}
    if route == ("POST", "companies"):
        return {"item": db.create_company(**body)}
    if route == ("POST", "companies", "#", "credits"):
        company_id = _int(rest[1])
        kwargs = _keys(body, {"amount": "amount", "description": "description"})
        if "amount" not in kwargs:
            raise _ControlError(400, "amount is required")
        item = db.add_company_credit(company_id, **kwargs)
        return {"item": item, "pending": db.pending_credits(company_id)}
    if route == ("GET", "companies", "#", "credits"):
        company_id = _int(rest[1])
        if db.get_company(company_id) is None:
            raise KeyError(f"company {company_id} not found")
        return {"pending": db.pending_credits(company_id)}
    if route == ("GET", "currencies"):
        return {"currencies": db.currencies()}
    if route == ("POST", "currencies"):
        code = _keys(body, {"name": "name"}).get("name")
        if not code:
            raise _ControlError(400, "name (an ISO code) is required")
        return {"id": db.currency_id(code, create=True)}
    if route == ("GET", "company-types"):
        return {"companyTypes": {str(v): label for v, label in db.company_types}}
    if route == ("PUT", "company-types"):
        return {"companyTypes": db.set_company_types(body)}
    if route in (("GET", "companies", "#"), ("PATCH", "companies", "#")):
        company_id = _int(rest[1])
        if method == "PATCH":
            return {"item": db.update_company(company_id, **body)}
        company = db.get_company(company_id)
        if company is None:
            raise KeyError(f"company {company_id} not found")
        return {"item": company}
    if route == ("DELETE", "companies", "#"):
        db.delete_company(_int(rest[1]))
        return {"deleted": _int(rest[1])}
    if route == ("GET", "faults"):
        return db.describe_faults()
    if route == ("PUT", "faults"):
        return db.set_faults(**body)
    if route == ("POST", "faults", "next"):
        return db.fail_next(body.pop("count", 1), body.pop("kind"), **body)
    if route == ("DELETE", "faults"):
        return db.clear_faults()
    if route == ("GET", "switches"):
        return db.settings()
    if route == ("PATCH", "switches"):
        return db.set_switches(**body)
    if route == ("GET", "requests"):
        status = req.param("status")
        return {
            "requests": db.requests(
                entity=req.param("entity"),
                method=req.param("method"),
                status=int(status) if status else None,
            ),
            "requestsThisHour": db.requests_count(),
        }
    if route == ("DELETE", "requests"):
        db.reset_counters()
        return {"requests": [], "requestsThisHour": db.requests_count()}
    raise _ControlError(404, f"no control route {method} {req.path}")


_INVOICE_KEYS = {
    "companyid": "company_id",
    "lines": "lines",
    "invoicedate": "invoice_date",
    "paymentterm": "payment_term",
    "invoicenumber": "invoice_number",
    "taxrate": "tax_rate",
    "taxregionname": "tax_region_name",
    "createdatetime": "create_date_time",
}


def _keys(body: dict, names: dict[str, str]) -> dict:
    """Body keys (case-insensitive, ``_`` ignored) → keyword arguments; others are a 400."""
    kwargs = {}
    for key, value in body.items():
        name = names.get(key.lower().replace("_", ""))
        if name is None:
            raise _ControlError(400, f"unknown attribute {key!r}; one of {sorted(names)}")
        kwargs[name] = value
    return kwargs


def _invoice_kwargs(body: dict) -> dict:
    kwargs = {}
    for key, value in body.items():
        name = _INVOICE_KEYS.get(key.lower().replace("_", ""))
        if name is None:
            raise _ControlError(400, f"unknown invoice attribute {key!r}")
        kwargs[name] = value
    if "company_id" not in kwargs:
        raise _ControlError(400, "companyID is required")
    return kwargs
