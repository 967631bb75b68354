"""Deterministic generated data for one sandbox database.

Same seed, sizes and ``today`` → the same rows (everything comes from one
``random.Random(seed)``). Sizes scale: 100,000 invoices with their billing items are built in
a few seconds, which is why invoice and billing-item rows are assembled positionally (in the
column order of sandbox.schema) from precomputed date strings instead of via dicts and
datetime arithmetic.

What the data exercises: several company types (customers, leads, prospects, vendors,
inactive ones), Contacts.isActive as 0/1, payment terms with paymentDueInDays, invoices over
the last two years with lines and tax (invoiceTotal includes tax), due dates from the term,
paid invoices, voided invoices, credits (negative lines lowering the total), invoices
without a number yet, and createDateTime a little after invoiceDateTime.

Tenant-specific parts (company 0, the Currencies rows, companies' currencyID and companyType
values) are applied by sandbox.state.SandboxDatabase on top of these rows, without drawing
from the seeded generator: a database with other currencies or other company-type values has
the same companies and invoices, with the same figures.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from itertools import accumulate
from operator import itemgetter

from sandbox.schema import (
    COMPANIES,
    CONTACTS,
    CURRENCIES,
    INVOICES,
    PAYMENT_TERMS,
    PAYMENT_TERMS_ENTITY,
)

HISTORY_DAYS = 730  # invoices span the last two years
_PAST = HISTORY_DAYS + 60  # company create dates reach a little further back
_FUTURE = 130  # room for due dates after today

RESOURCES = (29682885, 29682886, 29682887, 29682890)
INVOICE_ID_START = 100
COMPANY_ID_START = 174
CONTACT_ID_START = 29683500
BILLING_ITEM_ID_START = 30_000_000
FIRST_INVOICE_NUMBER = 1001

_NAME_A = (
    "Northwind",
    "Blue Harbor",
    "Summit",
    "Redwood",
    "Silver Lake",
    "Granite",
    "Maple Leaf",
    "Lakeside",
    "Ironbridge",
    "Golden Gate",
    "Pioneer",
    "Cedar Point",
    "Harborview",
    "Brightwater",
    "Oak Valley",
    "Evergreen",
    "Riverside",
    "Starlight",
    "Highland",
    "Sunset",
    "Keystone",
    "Crescent",
    "Bluebird",
    "Westfield",
    "Stonegate",
    "Clearview",
    "Falcon",
    "Horizon",
    "Liberty",
    "Meridian",
    "Juniper",
    "Windmill",
    "Copperfield",
    "Bayside",
)
_NAME_B = (
    "Dental",
    "Logistics",
    "Law Group",
    "Accounting",
    "Medical Center",
    "Construction",
    "Realty",
    "Manufacturing",
    "Veterinary Clinic",
    "Insurance",
    "Architects",
    "Foods",
    "Engineering",
    "Consulting",
    "Pharmacy",
    "Auto Repair",
    "Hotel",
    "Credit Union",
    "School District",
    "Florists",
    "Fitness",
    "Printing",
)
_NAME_C = ("LLC", "Inc.", "Ltd.", "Co.", "Group", "Partners", "", "")
_CITIES = (
    ("East Greenbush", "NY", "12061"),
    ("Albany", "NY", "12207"),
    ("Austin", "TX", "78701"),
    ("Denver", "CO", "80202"),
    ("San Jose", "CA", "95113"),
    ("Portland", "OR", "97204"),
    ("Boston", "MA", "02108"),
    ("Raleigh", "NC", "27601"),
    ("Columbus", "OH", "43215"),
    ("Tampa", "FL", "33602"),
    ("Madison", "WI", "53703"),
    ("Boise", "ID", "83702"),
)
_STREETS = (
    "Tech Valley Drive",
    "Main Street",
    "Market Street",
    "Oak Avenue",
    "Park Road",
    "Commerce Way",
    "River Road",
    "Elm Street",
    "Industrial Parkway",
    "Harbor Blvd",
)
_FIRST = (
    "Mary",
    "James",
    "Linda",
    "Robert",
    "Patricia",
    "Michael",
    "Jennifer",
    "David",
    "Susan",
    "Carlos",
    "Aisha",
    "Wei",
    "Priya",
    "Tom",
    "Olga",
    "Kwame",
)
_LAST = (
    "Smith",
    "Robertson",
    "Garcia",
    "Chen",
    "Okafor",
    "Miller",
    "Davis",
    "Kowalski",
    "Nguyen",
    "Patel",
    "Johnson",
    "Brown",
    "Silva",
    "Müller",
    "O'Brien",
)
_TITLES = ("Office Manager", "Owner", "CFO", "Accounts Payable", "IT Coordinator", "", "")
# (taxRegionName, rate)
TAX_REGIONS = (
    ("NY State Tax", 0.08875),
    ("TX Sales Tax", 0.0625),
    ("CA Sales Tax", 0.0725),
    ("VAT", 0.2),
    ("Tax Exempt", 0.0),
)
# (itemName, description, billingItemType, rates, quantities)
_CATALOG = (
    (
        "Managed Services - Per User",
        "Monthly managed services per user",
        6,
        (35.0, 45.0, 65.0),
        (5.0, 8.0, 12.0, 20.0, 35.0),
    ),
    (
        "Remote Support",
        "Remote support labour",
        1,
        (95.0, 125.0, 150.0),
        (0.5, 1.0, 1.5, 2.25, 4.0),
    ),
    ("Onsite Support", "Onsite technician visit", 1, (135.0, 165.0), (1.0, 2.0, 3.5)),
    ("Microsoft 365 Business Premium", "Licence subscription", 5, (22.0, 26.4), (5.0, 10.0, 25.0)),
    ("Backup Storage", "Cloud backup per TB", 6, (49.99, 79.0), (1.0, 2.0, 3.0)),
    ("Firewall Appliance", "Hardware sale", 3, (599.0, 1249.0), (1.0,)),
    ("Project Labour", "Server migration project hours", 1, (140.0,), (4.0, 8.0, 16.0)),
    ("Ticket Charge", "After-hours emergency callout", 10, (250.0,), (1.0,)),
)
_CREDITS = ("Credit: service outage", "Credit: duplicate charge", "Credit: goodwill discount")
# ISO code → (description, units per US dollar). The rates are fixed illustrative figures;
# Autotask's exchangeRate is relative to the internal currency (its meaning is UNVERIFIED).
CURRENCY_INFO = {
    "USD": ("US Dollar", 1.0),
    "EUR": ("Euro", 0.92),
    "GBP": ("British Pound", 0.79),
    "CAD": ("Canadian Dollar", 1.36),
    "AUD": ("Australian Dollar", 1.52),
    "NZD": ("New Zealand Dollar", 1.66),
    "CHF": ("Swiss Franc", 0.88),
    "SEK": ("Swedish Krona", 10.5),
    "ZAR": ("South African Rand", 18.2),
}


def currency_row(currency_id: int, code: str, internal: str, stamp: str) -> tuple:
    """One Currencies row (schema column order). ``internal`` is the database's own currency:
    the one row with isInternalCurrency true and exchangeRate 1."""
    code = code.upper()
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"a currency is a 3-letter ISO code, not {code!r}")
    description, per_usd = CURRENCY_INFO.get(code, (code, 1.0))
    base = CURRENCY_INFO.get(internal.upper(), (internal, 1.0))[1]
    row = {
        "id": currency_id,
        "currencyNegativeFormat": None,
        "currencyPositiveFormat": None,
        "description": description,
        "displaySymbol": None,
        "exchangeRate": round(per_usd / base, 6),
        "isActive": True,
        "isInternalCurrency": code == internal.upper(),
        "lastModifiedDateTime": stamp,
        "name": code,
        "updateResourceID": RESOURCES[0],
        "userDefinedFields": (),
    }
    return tuple(row[n] for n in CURRENCIES.names)


def generate(*, seed: int, companies: int, invoices: int, today: date) -> dict[str, list[tuple]]:
    """Rows (tuples in schema column order) for every entity, keyed by lower-case name."""
    rng = random.Random(seed)
    base = today - timedelta(days=_PAST)
    day_prefix = [(base + timedelta(days=k)).isoformat() for k in range(_PAST + _FUTURE)]
    midnight = [f"{p}T00:00:00.000Z" for p in day_prefix]
    today_idx = _PAST

    def stamp(day: int) -> str:
        ms = rng.randrange(25_200_000, 68_400_000)  # 07:00-19:00
        s, ms = divmod(ms, 1000)
        m, s = divmod(s, 60)
        h, m = divmod(m, 60)
        return f"{day_prefix[day]}T{h:02d}:{m:02d}:{s:02d}.{ms:03d}Z"

    company_rows, customer_info = _companies(rng, companies, stamp, today_idx)
    contact_rows = _contacts(rng, company_rows, stamp, today_idx)
    invoice_rows, item_rows = _invoices(
        rng, invoices, customer_info, day_prefix, midnight, today_idx
    )
    term_rows = [
        (term_id, name, f"Payment due {days} days after the invoice date" if days else
         "Payment due on receipt", True, days, ())
        for term_id, name, days in PAYMENT_TERMS
    ]  # fmt: skip
    assert len(term_rows[0]) == len(PAYMENT_TERMS_ENTITY.names)
    return {
        "companies": company_rows,
        "contacts": contact_rows,
        "paymentterms": term_rows,
        "invoices": invoice_rows,
        "billingitems": item_rows,
    }


def _companies(rng, count, stamp, today_idx):
    types = (1, 2, 3, 4, 6, 7, 8)
    cum = list(accumulate((66, 10, 8, 4, 4, 5, 3)))
    getter = itemgetter(*COMPANIES.names)
    rows = []
    customers = []  # (company id, tax rate, tax region name, weight)
    seen: dict[str, int] = {}
    company_id = COMPANY_ID_START
    for n in range(count):
        company_type = rng.choices(types, cum_weights=cum)[0] if n else 1
        name = f"{rng.choice(_NAME_A)} {rng.choice(_NAME_B)} {rng.choice(_NAME_C)}".strip()
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name} ({seen[name]})"
        active = company_type not in (4, 6) and rng.random() > 0.03
        city, state, postal = rng.choice(_CITIES)
        address = f"{rng.randrange(1, 999)} {rng.choice(_STREETS)}"
        tax_name, tax_rate = rng.choice(TAX_REGIONS)
        created_day = (
            rng.randrange(0, 40) if company_type in (1, 6) else rng.randrange(0, today_idx)
        )
        created = stamp(created_day)
        last_activity = stamp(rng.randrange(created_day, today_idx))
        phone = f"{rng.randrange(201, 989)}-555-{rng.randrange(1000, 9999)}"
        ranking = rng.choice(("Golden", "Silver", "Bronze", None))
        udfs = [
            {"name": "Customer Ranking", "value": ranking},
            {"name": "Payment Portal", "value": "Yes" if rng.random() < 0.5 else None},
        ]
        row = {
            "id": company_id,
            "companyName": name,
            "companyNumber": str(100000 + company_id),
            "companyType": company_type,
            "isActive": active,
            "phone": phone,
            "fax": "",
            "webAddress": "www."
            + "".join(ch for ch in name.lower() if ch.isalnum())[:24]
            + ".test",
            "address1": address,
            "address2": rng.choice(("", "", "Suite 2", "Floor 3")),
            "city": city,
            "state": state,
            "postalCode": postal,
            "countryID": 237,
            "billToAddressToUse": 1,
            "billToAttention": "Accounts Payable" if rng.random() < 0.4 else "",
            "billToAddress1": address,
            "billToAddress2": "",
            "billToCity": city,
            "billToState": state,
            "billToZipCode": postal,
            "billToCountryID": 237,
            "currencyID": 1,
            "invoiceTemplateID": 102,
            "isTaxExempt": tax_rate == 0.0,
            "taxRegionID": TAX_REGIONS.index((tax_name, tax_rate)) + 1,
            "classification": None,
            "marketSegmentID": None,
            "territoryID": None,
            "assetValue": None,
            "parentCompanyID": None,
            "ownerResourceID": rng.choice(RESOURCES),
            "createdByResourceID": RESOURCES[0],
            "createDate": created,
            "lastActivityDate": last_activity,
            "lastTrackedModifiedDateTime": last_activity,
            "userDefinedFields": udfs,
        }
        rows.append(getter(row))
        if company_type in (1, 6):
            weight = rng.choice((1, 1, 2, 3, 8))
            customers.append((company_id, tax_rate, tax_name, weight, company_type == 6))
        company_id += rng.choice((1, 1, 1, 2, 3))
    return rows, customers


def _contacts(rng, company_rows, stamp, today_idx):
    getter = itemgetter(*CONTACTS.names)
    idx = COMPANIES.index
    rows = []
    contact_id = CONTACT_ID_START
    for company in company_rows:
        for k in range(rng.choice((1, 1, 2, 2, 3, 4))):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            domain = company[idx["webAddress"]][4:]
            created_day = rng.randrange(0, today_idx)
            modified = stamp(rng.randrange(created_day, today_idx))
            row = {
                "id": contact_id,
                "companyID": company[0],
                "firstName": first,
                "lastName": last,
                "title": rng.choice(_TITLES),
                "emailAddress": f"{first[0].lower()}{last.lower().replace(chr(39), '')}@{domain}",
                "emailAddress2": "",
                "phone": company[idx["phone"]],
                "mobilePhone": f"{rng.randrange(201, 989)}-555-{rng.randrange(1000, 9999)}",
                "addressLine": company[idx["address1"]],
                "city": company[idx["city"]],
                "state": company[idx["state"]],
                "zipCode": company[idx["postalCode"]],
                "countryID": 237,
                "isActive": 1 if company[idx["isActive"]] and rng.random() > 0.1 else 0,
                "primaryContact": k == 0,
                "externalID": "",
                "createDate": stamp(created_day),
                "lastActivityDate": modified,
                "lastModifiedDate": modified,
                "userDefinedFields": (),
            }
            rows.append(getter(row))
            contact_id += 1
    return rows


def _invoices(rng, count, customers, day_prefix, midnight, today_idx):
    if not customers or not count:
        return [], []
    cum = list(accumulate(c[3] for c in customers))
    owners = rng.choices(customers, cum_weights=cum, k=count)
    first_day = today_idx - HISTORY_DAYS
    days = sorted(rng.randrange(first_day, today_idx) for _ in range(count))
    term_cum = list(accumulate((60, 15, 10, 5, 10)))
    terms = rng.choices(PAYMENT_TERMS, cum_weights=term_cum, k=count)
    rand, randrange, choice = rng.random, rng.randrange, rng.choice

    invoices = []
    items = []
    invoice_id = INVOICE_ID_START
    item_id = BILLING_ITEM_ID_START
    number = FIRST_INVOICE_NUMBER
    for n in range(count):
        company_id, tax_rate, tax_name, _weight, cancelled = owners[n]
        day = days[n]
        if cancelled:  # a cancelled customer's invoices all predate the cancellation
            day = min(day, today_idx - 200)
        term_id, _term_name, term_days = terms[n]
        ms = randrange(25_200_000, 64_800_000)
        s, ms = divmod(ms, 1000)
        m, s = divmod(s, 60)
        h, m = divmod(m, 60)
        created = f"{day_prefix[day]}T{h:02d}:{m:02d}:{s:02d}.{ms:03d}Z"
        # Lines: 1-4, each (itemName, description, type, qty, rate, extended, tax, total).
        net = tax_total = 0.0
        line_count = 1 + (rand() < 0.45) + (rand() < 0.2) + (rand() < 0.08)
        line_item = invoice_id * 10
        for _ in range(line_count):
            name, description, item_type, rates, quantities = choice(_CATALOG)
            rate, qty = choice(rates), choice(quantities)
            extended = round(qty * rate, 2)
            tax = round(extended * tax_rate, 4)
            net += extended
            tax_total += tax
            # id, invoiceID, companyID, itemName, description, billingItemType, subType,
            # quantity, rate, extendedPrice, taxDollars, totalAmount, ourCost, itemDate,
            # postedDate, webServiceDate, lineItemID, lineItemFullDescription, contractID,
            # ticketID, nonBillable, userDefinedFields
            items.append((
                item_id, invoice_id, company_id, name, description, item_type, None,
                qty, rate, extended, tax, round(extended + tax, 4), round(extended * 0.55, 2),
                midnight[day - 1], created, None, line_item, description, None, None, 0, (),
            ))  # fmt: skip
            item_id += 1
        if rand() < 0.03:  # a credit: a negative line lowering the total
            amount = -round(min(net, choice((25.0, 50.0, 100.0, 150.0))), 2)
            tax = round(amount * tax_rate, 4)
            net += amount
            tax_total += tax
            credit = choice(_CREDITS)
            items.append((
                item_id, invoice_id, company_id, credit, credit, 2, None, 1.0, amount, amount,
                tax, round(amount + tax, 4), 0.0, midnight[day - 1], created, None,
                line_item + 1, credit, None, None, 0, (),
            ))  # fmt: skip
            item_id += 1
        age = today_idx - day
        voided = rand() < 0.02
        paid = None
        if not voided:
            chance = 0.95 if age > term_days + 45 else 0.6 if age > term_days else 0.25
            if rand() < chance:
                paid = midnight[min(day + randrange(0, term_days + 20), today_idx)]
        empty_number = rand() < (0.3 if age <= 1 else 0.01)
        if empty_number:
            invoice_number = ""
        else:
            invoice_number = str(number)
            number += 1
        # Column order of schema.INVOICES (alphabetical after id, like the real payload).
        invoices.append((
            invoice_id,  # id
            1000 + day,  # batchID: one invoicing run per day
            "PO required on remittance" if rand() < 0.05 else None,  # comments
            company_id,
            created,  # createDateTime
            choice(RESOURCES),  # creatorResourceID
            midnight[day + term_days],  # dueDate
            midnight[day - choice((7, 14, 30))],  # fromDate
            midnight[day],  # invoiceDateTime
            102,  # invoiceEditorTemplateID
            invoice_number,
            round(net + tax_total, 4),  # invoiceTotal (includes tax)
            voided,  # isVoided
            f"PO-{randrange(1000, 9999)}" if rand() < 0.1 else "",  # orderNumber
            paid,  # paidDate
            term_id,  # paymentTerm
            None,  # taxGroup
            tax_name,  # taxRegionName
            midnight[day],  # toDate
            round(tax_total, 4),  # totalTaxValue
            choice(RESOURCES) if voided else None,  # voidedByResourceID
            f"{day_prefix[min(day + randrange(1, 10), today_idx)]}T16:02:11.540Z"
            if voided
            else None,  # voidedDate
            None,  # webServiceDate
            1,  # invoiceStatus
            None,  # invoiceTaxMethodExternalCode
            (),  # userDefinedFields
        ))  # fmt: skip
        invoice_id += choice((1, 1, 1, 1, 2, 3))
    assert not invoices or len(invoices[0]) == len(INVOICES.names)
    return invoices, items
