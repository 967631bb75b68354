"""Invoice PDFs in real time (seed: "Real Time — PDF Invoices").

The stored PDF is served when it was made from the invoice's current Autotask data (its
fingerprint matches); otherwise it is fetched from Autotask at that moment, stored and served.
If Autotask cannot be reached and an older PDF exists, the older one is served and marked stale
rather than failing the customer's download.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.db import transaction

from config.encryption import SecretUnavailable
from integrations import clients
from integrations.autotask.errors import AutotaskError
from integrations.selectors import connection_for

from .models import Invoice

log = logging.getLogger(__name__)


class PdfUnavailable(Exception):
    def __init__(self, message: str, *, status: int = 503):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class PdfFile:
    content: bytes
    filename: str
    stale: bool = False


def _is_current(invoice: Invoice) -> bool:
    return bool(invoice.pdf) and invoice.pdf_fingerprint == invoice.autotask_fingerprint


def _read(invoice: Invoice, *, stale: bool) -> PdfFile:
    with invoice.pdf.open("rb") as fh:
        return PdfFile(fh.read(), f"invoice-{invoice.number}.pdf", stale=stale)


def fetch_and_store(invoice: Invoice, client) -> None:
    """Download the PDF from Autotask and store it with the fingerprint it was made from."""
    fingerprint = invoice.autotask_fingerprint
    pdf = client.get_invoice_pdf(invoice.autotask_id)
    old_name = invoice.pdf.name if invoice.pdf else None
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        locked.pdf.save(
            f"{invoice.partner_id}-{invoice.autotask_id}.pdf", ContentFile(pdf.content), save=False
        )
        locked.pdf_fingerprint = fingerprint
        locked.save(update_fields=["pdf", "pdf_fingerprint", "updated_at"])
    if old_name and old_name != locked.pdf.name:
        locked.pdf.storage.delete(old_name)
    invoice.pdf, invoice.pdf_fingerprint = locked.pdf, fingerprint


def invoice_pdf(invoice: Invoice) -> PdfFile:
    if invoice.source != "autotask":
        raise PdfUnavailable("This invoice was created here; it has no Autotask PDF.", status=404)
    if _is_current(invoice):
        return _read(invoice, stale=False)
    connection = connection_for(partner=invoice.partner_id)
    try:
        if connection is None or not connection.is_active:
            # The partner's state, not an outage: 409, as for other actions that need it.
            raise PdfUnavailable("Autotask is not connected.", status=409)
        with clients.build_client(connection) as client:
            fetch_and_store(invoice, client)
        return _read(invoice, stale=False)
    except (AutotaskError, SecretUnavailable, PdfUnavailable) as exc:
        log.warning("invoice %s: PDF fetch failed: %s", invoice.pk, type(exc).__name__)
        if invoice.pdf:
            return _read(invoice, stale=True)
        if isinstance(exc, PdfUnavailable):
            raise
        raise PdfUnavailable(
            "Autotask could not provide this PDF right now; try again in a few minutes."
        ) from exc
