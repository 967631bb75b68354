"""Entity metadata: which fields exist, their types, and which are writable or queryable.

One source for three things that must agree: the column order of stored rows, the filter
compiler's checks (unknown field, non-queryable field, boolean values), and the
``entityInformation`` / ``entityInformation/fields`` answers a client reads at run time.
Read-only and queryable flags follow API.md §5 (Invoices: only invoiceNumber, paidDate and
webServiceDate are writable; dueDate is not queryable).

Entities here are the defaults. A database may replace a picklist with its own values (the
companyType picklist is per tenant, API.md §10): ``with_picklist`` makes that database's copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

INTEGER_TYPES = frozenset({"integer", "long", "short"})
NUMBER_TYPES = frozenset({"double", "decimal"})

# Autotask's standard companyType values; a tenant may have others (a public fixture has
# 3 = Customer), so a database can bring its own (SandboxDatabase(company_types=…)).
COMPANY_TYPES: tuple[tuple[int, str], ...] = (
    (1, "Customer"),
    (2, "Lead"),
    (3, "Prospect"),
    (4, "Dead"),
    (6, "Cancellation"),
    (7, "Vendor"),
    (8, "Partner"),
)

# (id, name, paymentDueInDays). Id 1 = Net 30 as in the real fixture (invoice 155 is due
# 30 days after its date with paymentTerm 1).
PAYMENT_TERMS: tuple[tuple[int, str, int], ...] = (
    (1, "Net 30", 30),
    (2, "Net 15", 15),
    (3, "Net 45", 45),
    (4, "Net 60", 60),
    (5, "Due on receipt", 0),
)

BILLING_ITEM_TYPES: tuple[tuple[int, str], ...] = (
    (1, "Labour"),
    (2, "Labour Adjustment"),
    (3, "Project Cost"),
    (5, "Contract Cost"),
    (6, "Recurring Contract Service"),
    (10, "Ticket Charge"),
)

TAX_GROUPS: tuple[tuple[int, str], ...] = ((1, "Standard"), (2, "Reduced"), (3, "Exempt"))


@dataclass(frozen=True)
class Field:
    name: str
    data_type: str  # Autotask's names: long, integer, short, double, string, boolean, datetime
    read_only: bool = True
    queryable: bool = True
    required: bool = False
    length: int = 0
    reference: str = ""
    picklist: tuple[tuple[int, str], ...] = ()
    date_only: bool = False  # stored as midnight; writes drop the time

    def info(self) -> dict:
        """The ``entityInformation/fields`` item for this field."""
        return {
            "name": self.name,
            "dataType": self.data_type,
            "length": self.length,
            "isRequired": self.required,
            "isReadOnly": self.read_only,
            "isQueryable": self.queryable,
            "isReference": bool(self.reference),
            "referenceEntityType": self.reference,
            "isPickList": bool(self.picklist),
            "picklistValues": [
                {
                    "value": str(value),
                    "label": label,
                    "isDefaultValue": False,
                    "sortOrder": order,
                    "parentValue": "",
                    "isActive": True,
                    "isSystem": True,
                }
                for order, (value, label) in enumerate(self.picklist, start=1)
            ],
            "picklistParentValueField": "",
            "isSupportedWebhookField": False,
        }


@dataclass(frozen=True)
class UdfDefinition:
    name: str
    type: str = "string"
    queryable: bool = True

    def info(self) -> dict:
        return {
            "name": self.name,
            "label": self.name,
            "type": self.type,
            "length": 100,
            "description": "",
            "isRequired": False,
            "isReadOnly": False,
            "isQueryable": self.queryable,
            "isReference": False,
            "referenceEntityType": "",
            "isPickList": False,
            "picklistValues": [],
            "picklistParentValueField": "",
            "defaultValue": None,
            "isSupportedWebhookField": False,
        }


@dataclass(frozen=True)
class Entity:
    """An entity's metadata. ``fields`` is also the column order of stored rows; every row
    ends with ``userDefinedFields`` (a list of ``{"name", "value"}``, usually empty)."""

    name: str
    fields: tuple[Field, ...]
    can_create: bool = False
    can_update: bool = False
    can_delete: bool = False
    webhooks: bool = False
    udfs: tuple[UdfDefinition, ...] = ()
    names: tuple[str, ...] = field(init=False)
    index: dict[str, int] = field(init=False)
    by_lower: dict[str, Field] = field(init=False)

    def __post_init__(self) -> None:
        names = (*(f.name for f in self.fields), "userDefinedFields")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "index", {n: i for i, n in enumerate(names)})
        object.__setattr__(self, "by_lower", {f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> Field | None:
        return self.by_lower.get(name.lower()) if isinstance(name, str) else None

    def with_picklist(self, field_name: str, picklist: tuple[tuple[int, str], ...]) -> Entity:
        """A copy of this entity whose ``field_name`` has other picklist values."""
        fields_ = tuple(
            replace(f, picklist=picklist) if f.name == field_name else f for f in self.fields
        )
        return replace(self, fields=fields_)

    def info(self) -> dict:
        return {
            "info": {
                "name": self.name[:-1] if self.name.endswith("s") else self.name,
                "canCreate": self.can_create,
                "canDelete": self.can_delete,
                "canQuery": True,
                "canUpdate": self.can_update,
                "userAccessForCreate": "All" if self.can_create else "None",
                "userAccessForDelete": "All" if self.can_delete else "None",
                "userAccessForQuery": "All",
                "userAccessForUpdate": "All" if self.can_update else "None",
                "hasUserDefinedFields": bool(self.udfs),
                "supportsWebhookCallouts": self.webhooks,
            }
        }


def _f(name: str, data_type: str, **kwargs) -> Field:
    return Field(name, data_type, **kwargs)


RW = {"read_only": False}

COMPANIES = Entity(
    "Companies",
    (
        _f("id", "long", required=True),
        _f("companyName", "string", length=100, required=True, **RW),
        _f("companyNumber", "string", length=50, **RW),
        _f("companyType", "short", required=True, picklist=COMPANY_TYPES, **RW),
        _f("isActive", "boolean", **RW),
        _f("phone", "string", length=25, required=True, **RW),
        _f("fax", "string", length=25, **RW),
        _f("webAddress", "string", length=255, **RW),
        _f("address1", "string", length=150, **RW),
        _f("address2", "string", length=150, **RW),
        _f("city", "string", length=50, **RW),
        _f("state", "string", length=25, **RW),
        _f("postalCode", "string", length=20, **RW),
        _f("countryID", "integer", reference="Country", **RW),
        _f("billToAddressToUse", "integer", picklist=((1, "Use Account Address"),), **RW),
        _f("billToAttention", "string", length=100, **RW),
        _f("billToAddress1", "string", length=150, **RW),
        _f("billToAddress2", "string", length=150, **RW),
        _f("billToCity", "string", length=50, **RW),
        _f("billToState", "string", length=128, **RW),
        _f("billToZipCode", "string", length=50, **RW),
        _f("billToCountryID", "integer", reference="Country", **RW),
        _f("currencyID", "integer", reference="Currency", **RW),
        _f("invoiceTemplateID", "integer", reference="InvoiceTemplate", **RW),
        _f("isTaxExempt", "boolean", **RW),
        _f("taxRegionID", "integer", reference="TaxRegion", queryable=False, **RW),
        _f("classification", "integer", **RW),
        _f("marketSegmentID", "integer", **RW),
        _f("territoryID", "integer", **RW),
        _f("assetValue", "double", queryable=False, **RW),
        _f("parentCompanyID", "integer", reference="Company", **RW),
        _f("ownerResourceID", "integer", reference="Resource", required=True, **RW),
        _f("createdByResourceID", "integer", reference="Resource"),
        _f("createDate", "datetime"),
        _f("lastActivityDate", "datetime"),
        _f("lastTrackedModifiedDateTime", "datetime"),
    ),
    can_create=True,
    can_update=True,
    webhooks=True,
    udfs=(UdfDefinition("Customer Ranking"), UdfDefinition("Payment Portal")),
)

CONTACTS = Entity(
    "Contacts",
    (
        _f("id", "long", required=True),
        _f("companyID", "integer", reference="Company", required=True),
        _f("firstName", "string", length=50, required=True, **RW),
        _f("lastName", "string", length=50, required=True, **RW),
        _f("title", "string", length=50, **RW),
        _f("emailAddress", "string", length=254, **RW),
        _f("emailAddress2", "string", length=254, **RW),
        _f("phone", "string", length=25, **RW),
        _f("mobilePhone", "string", length=25, **RW),
        _f("addressLine", "string", length=128, **RW),
        _f("city", "string", length=32, **RW),
        _f("state", "string", length=40, **RW),
        _f("zipCode", "string", length=16, **RW),
        _f("countryID", "integer", reference="Country", **RW),
        # Real Autotask sends Contacts.isActive as 0/1, not a boolean (API.md §5.3).
        _f("isActive", "integer", required=True, **RW),
        _f("primaryContact", "boolean", **RW),
        _f("externalID", "string", length=50, **RW),
        _f("createDate", "datetime"),
        _f("lastActivityDate", "datetime"),
        _f("lastModifiedDate", "datetime"),
    ),
    can_create=True,
    can_update=True,
    can_delete=True,
    webhooks=True,
    udfs=(UdfDefinition("Preferred Channel"),),
)

PAYMENT_TERMS_ENTITY = Entity(
    "PaymentTerms",
    (
        _f("id", "long", required=True),
        _f("name", "string", length=100, required=True, **RW),
        _f("description", "string", length=500, **RW),
        _f("isActive", "boolean", required=True, **RW),
        _f("paymentDueInDays", "integer", required=True, **RW),
    ),
    can_create=True,
    can_update=True,
)

INVOICES = Entity(
    "Invoices",
    (
        _f("id", "long", required=True),
        _f("batchID", "integer"),
        _f("comments", "string", length=4000),
        _f("companyID", "integer", reference="Company", required=True),
        _f("createDateTime", "datetime"),
        _f("creatorResourceID", "integer", reference="Resource"),
        _f("dueDate", "datetime", queryable=False, date_only=True),
        _f("fromDate", "datetime"),
        _f("invoiceDateTime", "datetime", required=True),
        _f("invoiceEditorTemplateID", "integer", reference="InvoiceTemplate"),
        _f("invoiceNumber", "string", length=100, **RW),
        _f("invoiceTotal", "double"),
        _f("isVoided", "boolean"),
        _f("orderNumber", "string", length=20),
        _f("paidDate", "datetime", date_only=True, **RW),
        _f(
            "paymentTerm",
            "integer",
            picklist=tuple((term_id, name) for term_id, name, _ in PAYMENT_TERMS),
        ),
        _f("taxGroup", "integer", picklist=TAX_GROUPS),
        _f("taxRegionName", "string", length=200),
        _f("toDate", "datetime"),
        _f("totalTaxValue", "double"),
        _f("voidedByResourceID", "integer", reference="Resource"),
        _f("voidedDate", "datetime"),
        _f("webServiceDate", "datetime", **RW),
        _f("invoiceStatus", "integer"),
        _f("invoiceTaxMethodExternalCode", "string", length=100),
    ),
    can_update=True,
)

BILLING_ITEMS = Entity(
    "BillingItems",
    (
        _f("id", "long", required=True),
        _f("invoiceID", "integer", reference="Invoice"),
        _f("companyID", "integer", reference="Company", required=True),
        _f("itemName", "string", length=100),
        _f("description", "string", length=2000),
        _f("billingItemType", "integer", picklist=BILLING_ITEM_TYPES),
        _f("subType", "integer"),
        _f("quantity", "double"),
        _f("rate", "double"),
        _f("extendedPrice", "double"),
        _f("taxDollars", "double"),
        _f("totalAmount", "double"),
        _f("ourCost", "double"),
        _f("itemDate", "datetime"),
        _f("postedDate", "datetime"),
        _f("webServiceDate", "datetime", **RW),
        _f("lineItemID", "long"),
        _f("lineItemFullDescription", "string", length=2000, queryable=False),
        _f("contractID", "integer", reference="Contract"),
        _f("ticketID", "integer", reference="Ticket"),
        _f("nonBillable", "integer"),
    ),
    can_update=True,
)

# Swagger-2020 CurrencyModel. Whether ``name`` holds the ISO code ("EUR") is UNVERIFIED; the
# sandbox puts the code there and the currency's English name in ``description``.
CURRENCIES = Entity(
    "Currencies",
    (
        _f("id", "long", required=True),
        _f("currencyNegativeFormat", "string", length=50, **RW),
        _f("currencyPositiveFormat", "string", length=50, **RW),
        _f("description", "string", length=100, **RW),
        _f("displaySymbol", "integer", **RW),
        _f("exchangeRate", "double", **RW),
        _f("isActive", "boolean", required=True, **RW),
        _f("isInternalCurrency", "boolean"),
        _f("lastModifiedDateTime", "datetime"),
        _f("name", "string", length=3, required=True),
        _f("updateResourceID", "integer", reference="Resource"),
    ),
    can_update=True,
)

ENTITIES: dict[str, Entity] = {
    e.name.lower(): e
    for e in (COMPANIES, CONTACTS, PAYMENT_TERMS_ENTITY, INVOICES, BILLING_ITEMS, CURRENCIES)
}
