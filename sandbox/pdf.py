"""A real invoice PDF (reportlab), rendered on request rather than at generation time so a
100,000-invoice database costs nothing until someone asks for a PDF.

``compress=False`` leaves page streams uncompressed, so tests can find the invoice number in
the bytes without a PDF parser; ``invariant`` makes the output byte-identical per input.
"""

from __future__ import annotations

import io


def render_invoice_pdf(
    invoice: dict,
    company: dict | None,
    lines: list[dict],
    *,
    compress: bool,
    currency: str | None = None,
) -> bytes:
    """``currency``: the company's ISO code, printed with the total (amounts are in it)."""
    from reportlab.lib.pagesizes import A4  # imported lazily: reportlab is slow to import
    from reportlab.pdfgen import canvas

    number = invoice["invoiceNumber"] or str(invoice["id"])
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, pageCompression=1 if compress else 0, invariant=1)
    pdf.setTitle(f"Invoice {number}")
    pdf.setAuthor("Autotask sandbox")
    _width, height = A4
    y = height - 60

    def line(text: str, *, x: float = 50, size: int = 10, bold: bool = False) -> None:
        nonlocal y
        if y < 70:
            pdf.showPage()
            y = height - 60
        pdf.setFont("Helvetica-Bold" if bold else "Helvetica", size)
        pdf.drawString(x, y, text)

    line(f"Invoice {number}", size=18, bold=True)
    y -= 28
    customer = company["companyName"] if company else f"Company {invoice['companyID']}"
    line(f"Customer: {customer}")
    y -= 14
    if company:
        line(f"{company['billToAddress1'] or company['address1'] or ''}")
        y -= 14
        line(f"{company['billToCity'] or ''} {company['billToState'] or ''} "
             f"{company['billToZipCode'] or ''}")  # fmt: skip
        y -= 14
    line(
        f"Invoice date: {invoice['invoiceDateTime'][:10]}    Due: {(invoice['dueDate'] or '')[:10]}"
    )
    y -= 14
    if invoice["isVoided"]:
        line("VOIDED", bold=True)
        y -= 14
    y -= 14
    line("Description", bold=True)
    line("Qty", x=330, bold=True)
    line("Rate", x=390, bold=True)
    line("Amount", x=470, bold=True)
    y -= 16
    for item in lines:
        line(str(item["itemName"] or item["description"] or "")[:55])
        line(f"{item['quantity']:g}", x=330)
        line(f"{item['rate']:.2f}", x=390)
        line(f"{item['extendedPrice']:.2f}", x=470)
        y -= 14
    y -= 10
    subtotal = invoice["invoiceTotal"] - invoice["totalTaxValue"]
    line("Subtotal", x=390)
    line(f"{subtotal:.2f}", x=470)
    y -= 14
    line(f"Tax ({invoice['taxRegionName'] or 'none'})", x=330)
    line(f"{invoice['totalTaxValue']:.2f}", x=470)
    y -= 14
    line(f"Total {currency}" if currency else "Total", x=390, bold=True)
    line(f"{invoice['invoiceTotal']:.2f}", x=470, bold=True)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()
