"""Typed, frozen records parsed at the boundary (STYLE.md: a bad shape fails at once).

Field names and types follow ``shared/autotask/API.md`` §5 (Invoices §5.1, Companies §5.2,
Contacts §5.3, PaymentTerms §5.4, BillingItems §5.5), §10 (Currencies), §1 (zone), §4
(ThresholdInformation) and §3.1 (entityInformation/fields). Rules:

- Unknown fields are ignored (Autotask adds fields over time, e.g. ``invoiceStatus``); missing
  optional fields become ``None`` (``IncludeFields`` queries return only what was asked).
- A missing required field or a wrong type raises ``AutotaskResponseError`` naming the entity,
  the record id and the field. Partial data is never returned silently.
- Money is ``Decimal`` (responses are parsed with ``parse_float=Decimal``, so the digits are the
  server's). Date-times are aware UTC ``datetime``s (REST returns UTC, API.md §3.4). Date-only
  fields (``dueDate``, ``paidDate``) are ``date``s taken from the string's date part without any
  time-zone conversion (AT-help: date-only fields are not converted).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar, Self

from .errors import AutotaskResponseError

_MISSING = object()


class _Reader:
    """Reads one raw record with type checks, building error messages that name the field."""

    def __init__(self, entity: str, raw: Any) -> None:
        if not isinstance(raw, Mapping):
            raise AutotaskResponseError(
                f"{entity} record is not an object: {_short(raw)}", entity=entity
            )
        self.entity = entity
        self.raw = raw
        ident = raw.get("id")
        self.label = f"{entity} record {ident}" if ident is not None else f"{entity} record"

    def _fail(self, name: str, problem: str, value: Any = _MISSING) -> AutotaskResponseError:
        suffix = "" if value is _MISSING else f": {_short(value)}"
        return AutotaskResponseError(
            f"{self.label}: field {name!r} {problem}{suffix}", entity=self.entity
        )

    def _get(self, names: tuple[str, ...], required: bool) -> Any:
        raw = self.raw
        for name in names:
            value = raw.get(name)
            if value is not None:
                return value
        if required:
            if any(name in self.raw for name in names):
                raise self._fail(names[0], "is null")
            raise self._fail(names[0], "is missing")
        return None

    def int(self, *names: str, required: bool = False) -> int | None:
        value = self._get(names, required)
        if value is None or type(value) is int:  # fast path: 500 rows x ~10 ints a page
            return value
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise self._fail(names[0], "is not an integer", value)
        if isinstance(value, Decimal):
            if value != value.to_integral_value():
                raise self._fail(names[0], "is not an integer", value)
            return int(value)
        return value

    def str(self, *names: str, required: bool = False) -> str | None:
        value = self._get(names, required)
        if value is None or type(value) is str:
            return value
        if not isinstance(value, str):
            raise self._fail(names[0], "is not a string", value)
        return value

    def code(self, *names: str, required: bool = False) -> str | None:
        """A string that Autotask sometimes sends as a number (``postalCode: 12061`` in the
        django-autotask fixture): accept both, keep it as text."""
        value = self._get(names, required)
        if value is None:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, int | Decimal) and not isinstance(value, bool):
            return str(value)
        raise self._fail(names[0], "is not a string", value)

    def bool(self, *names: str, required: bool = False) -> bool | None:
        value = self._get(names, required)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self._fail(names[0], "is not a boolean", value)
        return value

    def flag(self, *names: str, required: bool = False) -> bool | None:
        """A boolean that real Autotask sends as int 0/1 on some entities (Contacts
        ``isActive``, API.md §5.3): accept bool or 0/1."""
        value = self._get(names, required)
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self._fail(names[0], "is not a boolean or 0/1", value)

    def decimal(self, *names: str, required: bool = False) -> Decimal | None:
        value = self._get(names, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise self._fail(names[0], "is not a number", value)
        result = Decimal(value)
        if not result.is_finite():
            raise self._fail(names[0], "is not a finite number", value)
        return result

    def datetime(self, *names: str, required: bool = False) -> datetime | None:
        value = self._get(names, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(names[0], "is not a date-time string", value)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise self._fail(names[0], "is not an ISO date-time", value) from None
        # REST stores and returns UTC (API.md §3.4); a value without an offset is UTC.
        tz = parsed.tzinfo
        if tz is UTC:
            return parsed
        if tz is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)

    def date(self, *names: str, required: bool = False) -> date | None:
        value = self._get(names, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(names[0], "is not a date string", value)
        try:
            # The date part as written: no time-zone conversion for date-only fields.
            return date.fromisoformat(value[:10])
        except ValueError:
            raise self._fail(names[0], "is not an ISO date", value) from None

    def udfs(self) -> tuple[UserDefinedField, ...]:
        value = self.raw.get("userDefinedFields")
        # django-autotask fixtures show "" and {} for "no UDFs"; a list is the documented form.
        if value in (None, "", {}):
            return ()
        if not isinstance(value, list):
            raise self._fail("userDefinedFields", "is not a list", value)
        result = []
        for item in value:
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise self._fail("userDefinedFields", "has an item without a name", item)
            raw_value = item.get("value")
            result.append(
                UserDefinedField(
                    name=item["name"], value=None if raw_value is None else str(raw_value)
                )
            )
        return tuple(result)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True, slots=True)
class UserDefinedField:
    """``{"name", "value"}``; values are strings on the wire (API.md §5.7)."""

    name: str
    value: str | None


class _Record:
    """Shared helpers for entity records."""

    ENTITY: ClassVar[str]
    # Fields a query must return for the record to parse; added to IncludeFields automatically.
    REQUIRED_FIELDS: ClassVar[tuple[str, ...]] = ("id",)

    @classmethod
    def from_api(cls, raw: Any) -> Self:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Company(_Record):
    """Companies (API.md §5.2). ``bill_to_address1/2`` read ``billToAddress1`` and fall back to
    Swagger-2020's ``billingAddress1`` — which one live servers send is UNVERIFIED."""

    ENTITY: ClassVar[str] = "Companies"

    id: int
    company_name: str | None = None
    company_number: str | None = None
    company_type: int | None = None
    is_active: bool | None = None
    parent_company_id: int | None = None
    owner_resource_id: int | None = None
    phone: str | None = None
    fax: str | None = None
    web_address: str | None = None
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country_id: int | None = None
    bill_to_attention: str | None = None
    bill_to_address1: str | None = None
    bill_to_address2: str | None = None
    bill_to_city: str | None = None
    bill_to_state: str | None = None
    bill_to_zip_code: str | None = None
    bill_to_country_id: int | None = None
    invoice_method: int | None = None
    invoice_template_id: int | None = None
    currency_id: int | None = None
    tax_id: str | None = None
    is_tax_exempt: bool | None = None
    create_date: datetime | None = None
    last_activity_date: datetime | None = None
    last_tracked_modified_date_time: datetime | None = None
    user_defined_fields: tuple[UserDefinedField, ...] = ()

    @classmethod
    def from_api(cls, raw: Any) -> Company:
        r = _Reader(cls.ENTITY, raw)
        return cls(
            id=r.int("id", required=True),
            company_name=r.str("companyName"),
            company_number=r.code("companyNumber"),
            company_type=r.int("companyType"),
            is_active=r.flag("isActive"),
            parent_company_id=r.int("parentCompanyID"),
            owner_resource_id=r.int("ownerResourceID"),
            phone=r.code("phone"),
            fax=r.code("fax"),
            web_address=r.str("webAddress"),
            address1=r.str("address1"),
            address2=r.str("address2"),
            city=r.str("city"),
            state=r.str("state"),
            postal_code=r.code("postalCode"),
            country_id=r.int("countryID"),
            bill_to_attention=r.str("billToAttention"),
            bill_to_address1=r.str("billToAddress1", "billingAddress1"),
            bill_to_address2=r.str("billToAddress2", "billingAddress2"),
            bill_to_city=r.str("billToCity"),
            bill_to_state=r.str("billToState"),
            bill_to_zip_code=r.code("billToZipCode"),
            bill_to_country_id=r.int("billToCountryID"),
            invoice_method=r.int("invoiceMethod"),
            invoice_template_id=r.int("invoiceTemplateID"),
            currency_id=r.int("currencyID"),
            tax_id=r.code("taxID"),
            is_tax_exempt=r.flag("isTaxExempt"),
            create_date=r.datetime("createDate"),
            last_activity_date=r.datetime("lastActivityDate"),
            last_tracked_modified_date_time=r.datetime("lastTrackedModifiedDateTime"),
            user_defined_fields=r.udfs(),
        )


@dataclass(frozen=True, slots=True)
class Contact(_Record):
    """Contacts (API.md §5.3). ``isActive`` is int 0/1 in real Autotask; bool accepted too."""

    ENTITY: ClassVar[str] = "Contacts"
    REQUIRED_FIELDS: ClassVar[tuple[str, ...]] = ("id", "companyID")

    id: int
    company_id: int
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    email_address: str | None = None
    email_address2: str | None = None
    email_address3: str | None = None
    phone: str | None = None
    mobile_phone: str | None = None
    is_active: bool | None = None
    primary_contact: bool | None = None
    company_location_id: int | None = None
    external_id: str | None = None
    create_date: datetime | None = None
    last_activity_date: datetime | None = None
    last_modified_date: datetime | None = None
    user_defined_fields: tuple[UserDefinedField, ...] = ()

    @classmethod
    def from_api(cls, raw: Any) -> Contact:
        r = _Reader(cls.ENTITY, raw)
        return cls(
            id=r.int("id", required=True),
            company_id=r.int("companyID", required=True),
            first_name=r.str("firstName"),
            last_name=r.str("lastName"),
            title=r.str("title"),
            email_address=r.str("emailAddress"),
            email_address2=r.str("emailAddress2"),
            email_address3=r.str("emailAddress3"),
            phone=r.code("phone"),
            mobile_phone=r.code("mobilePhone"),
            is_active=r.flag("isActive"),
            primary_contact=r.flag("primaryContact"),
            company_location_id=r.int("companyLocationID"),
            external_id=r.code("externalID"),
            create_date=r.datetime("createDate"),
            last_activity_date=r.datetime("lastActivityDate"),
            last_modified_date=r.datetime("lastModifiedDate"),
            user_defined_fields=r.udfs(),
        )


@dataclass(frozen=True, slots=True)
class Invoice(_Record):
    """Invoices (API.md §5.1). ``invoice_total`` includes tax. ``due_date``/``paid_date`` are
    date-only (``paidDate`` stores the date only, AT-help Invoices page)."""

    ENTITY: ClassVar[str] = "Invoices"
    REQUIRED_FIELDS: ClassVar[tuple[str, ...]] = ("id", "companyID")

    id: int
    company_id: int
    invoice_number: str | None = None
    invoice_date_time: datetime | None = None
    create_date_time: datetime | None = None
    creator_resource_id: int | None = None
    due_date: date | None = None
    from_date: datetime | None = None
    to_date: datetime | None = None
    invoice_total: Decimal | None = None
    total_tax_value: Decimal | None = None
    is_voided: bool | None = None
    voided_date: datetime | None = None
    voided_by_resource_id: int | None = None
    paid_date: date | None = None
    payment_term: int | None = None
    comments: str | None = None
    order_number: str | None = None
    batch_id: int | None = None
    invoice_editor_template_id: int | None = None
    tax_group: int | None = None
    tax_region_name: str | None = None
    web_service_date: datetime | None = None
    invoice_status: int | None = None

    @classmethod
    def from_api(cls, raw: Any) -> Invoice:
        r = _Reader(cls.ENTITY, raw)
        return cls(
            id=r.int("id", required=True),
            company_id=r.int("companyID", required=True),
            invoice_number=r.code("invoiceNumber"),
            invoice_date_time=r.datetime("invoiceDateTime"),
            create_date_time=r.datetime("createDateTime"),
            creator_resource_id=r.int("creatorResourceID"),
            due_date=r.date("dueDate"),
            from_date=r.datetime("fromDate"),
            to_date=r.datetime("toDate"),
            invoice_total=r.decimal("invoiceTotal"),
            total_tax_value=r.decimal("totalTaxValue"),
            is_voided=r.flag("isVoided"),
            voided_date=r.datetime("voidedDate"),
            voided_by_resource_id=r.int("voidedByResourceID"),
            paid_date=r.date("paidDate"),
            payment_term=r.int("paymentTerm"),
            comments=r.str("comments"),
            order_number=r.code("orderNumber"),
            batch_id=r.int("batchID"),
            invoice_editor_template_id=r.int("invoiceEditorTemplateID"),
            tax_group=r.int("taxGroup"),
            tax_region_name=r.str("taxRegionName"),
            web_service_date=r.datetime("webServiceDate"),
            invoice_status=r.int("invoiceStatus"),
        )


@dataclass(frozen=True, slots=True)
class PaymentTerm(_Record):
    """PaymentTerms (API.md §5.4)."""

    ENTITY: ClassVar[str] = "PaymentTerms"

    id: int
    name: str | None = None
    description: str | None = None
    is_active: bool | None = None
    payment_due_in_days: int | None = None

    @classmethod
    def from_api(cls, raw: Any) -> PaymentTerm:
        r = _Reader(cls.ENTITY, raw)
        return cls(
            id=r.int("id", required=True),
            name=r.str("name"),
            description=r.str("description"),
            is_active=r.flag("isActive"),
            payment_due_in_days=r.int("paymentDueInDays"),
        )


@dataclass(frozen=True, slots=True)
class Currency(_Record):
    """Currencies (API.md §10: ``Companies.currencyID`` points here; fields from Swagger-2020
    ``CurrencyModel``). ``code`` is ``name`` upper-cased: the ISO code ("EUR") as far as the
    evidence goes (UNVERIFIED that Autotask puts the code there), None when missing or not three
    letters, so a caller never takes a description for a code. ``is_internal`` marks the
    database's own currency (a company whose currencyID is null is in it). Every field but
    ``id`` may be missing; ``displaySymbol`` is typed integer in Swagger-2020, kept as text."""

    ENTITY: ClassVar[str] = "Currencies"

    id: int
    code: str | None = None
    description: str | None = None
    is_active: bool | None = None
    is_internal: bool | None = None
    display_symbol: str | None = None
    exchange_rate: Decimal | None = None

    @classmethod
    def from_api(cls, raw: Any) -> Currency:
        r = _Reader(cls.ENTITY, raw)
        name = (r.code("name") or "").strip().upper()
        return cls(
            id=r.int("id", required=True),
            code=name if len(name) == 3 and name.isascii() and name.isalpha() else None,
            description=r.str("description"),
            is_active=r.flag("isActive"),
            is_internal=r.flag("isInternalCurrency"),
            display_symbol=r.code("displaySymbol"),
            exchange_rate=r.decimal("exchangeRate"),
        )


@dataclass(frozen=True, slots=True)
class BillingItem(_Record):
    """BillingItems — invoice lines (API.md §5.5). ``invoice_id`` is None for items not yet
    invoiced."""

    ENTITY: ClassVar[str] = "BillingItems"

    id: int
    invoice_id: int | None = None
    company_id: int | None = None
    item_name: str | None = None
    description: str | None = None
    billing_item_type: int | None = None
    sub_type: int | None = None
    quantity: Decimal | None = None
    rate: Decimal | None = None
    extended_price: Decimal | None = None
    tax_dollars: Decimal | None = None
    total_amount: Decimal | None = None
    our_cost: Decimal | None = None
    item_date: datetime | None = None
    posted_date: datetime | None = None
    web_service_date: datetime | None = None
    line_item_id: int | None = None
    contract_id: int | None = None
    project_id: int | None = None
    ticket_id: int | None = None
    task_id: int | None = None
    purchase_order_number: str | None = None
    non_billable: bool | None = None

    @classmethod
    def from_api(cls, raw: Any) -> BillingItem:
        r = _Reader(cls.ENTITY, raw)
        return cls(
            id=r.int("id", required=True),
            invoice_id=r.int("invoiceID"),
            company_id=r.int("companyID"),
            item_name=r.str("itemName"),
            description=r.str("description"),
            billing_item_type=r.int("billingItemType"),
            sub_type=r.int("subType"),
            quantity=r.decimal("quantity"),
            rate=r.decimal("rate"),
            extended_price=r.decimal("extendedPrice"),
            tax_dollars=r.decimal("taxDollars"),
            total_amount=r.decimal("totalAmount"),
            our_cost=r.decimal("ourCost"),
            item_date=r.datetime("itemDate"),
            posted_date=r.datetime("postedDate"),
            web_service_date=r.datetime("webServiceDate"),
            line_item_id=r.int("lineItemID"),
            contract_id=r.int("contractID"),
            project_id=r.int("projectID"),
            ticket_id=r.int("ticketID"),
            task_id=r.int("taskID"),
            purchase_order_number=r.code("purchaseOrderNumber"),
            non_billable=r.flag("nonBillable"),
        )


@dataclass(frozen=True, slots=True)
class ZoneInfo:
    """zoneInformation answer (API.md §1). ``base_url`` is ``url`` normalised to end in
    ``/ATServicesRest/`` whatever its case or trailing slash; requests go to
    ``{base_url}V1.0/{Entity}``. ``ci`` identifies the Autotask database (limits key on it)."""

    zone_name: str | None
    base_url: str
    web_url: str | None
    ci: int | None

    @classmethod
    def from_api(cls, raw: Any) -> ZoneInfo:
        r = _Reader("zoneInformation", raw)
        url = r.str("url", required=True)
        return cls(
            zone_name=r.str("zoneName"),
            base_url=normalize_base_url(url),
            web_url=r.str("webUrl"),
            ci=r.int("ci"),
        )

    def api_url(self, path: str) -> str:
        return f"{self.base_url}V1.0/{path.lstrip('/')}"

    def to_json(self) -> dict[str, Any]:
        return {
            "zoneName": self.zone_name,
            "url": self.base_url,
            "webUrl": self.web_url,
            "ci": self.ci,
        }


def normalize_base_url(url: str) -> str:
    """``https://host/ATServicesRest/`` from any casing, with or without the trailing slash;
    if the segment is missing entirely it is added (API.md §0)."""
    trimmed = url.strip().rstrip("/")
    if not trimmed.lower().endswith("/atservicesrest"):
        trimmed += "/ATServicesRest"
    return trimmed + "/"


@dataclass(frozen=True, slots=True)
class ThresholdInfo:
    """``GET /V1.0/ThresholdInformation`` (API.md §4). Timeframe is in minutes (UNVERIFIED
    unit, inferred from the usual value 60)."""

    external_request_threshold: int
    request_threshold_timeframe: int
    current_timeframe_request_count: int

    @classmethod
    def from_api(cls, raw: Any) -> ThresholdInfo:
        r = _Reader("ThresholdInformation", raw)
        return cls(
            external_request_threshold=r.int("externalRequestThreshold", required=True),
            request_threshold_timeframe=r.int("requestThresholdTimeframe", required=True),
            current_timeframe_request_count=r.int("currentTimeframeRequestCount", required=True),
        )


@dataclass(frozen=True, slots=True)
class PicklistValue:
    value: str
    label: str | None
    is_default_value: bool | None
    sort_order: int | None
    parent_value: str | None
    is_active: bool | None
    is_system: bool | None


@dataclass(frozen=True, slots=True)
class EntityField:
    """One item of ``GET /{Entity}/entityInformation/fields`` (API.md §3.1). UDF metadata uses
    ``type`` instead of ``dataType``; both are accepted."""

    name: str
    data_type: str | None
    length: int | None
    is_required: bool | None
    is_read_only: bool | None
    is_queryable: bool | None
    is_reference: bool | None
    reference_entity_type: str | None
    is_pick_list: bool | None
    picklist_values: tuple[PicklistValue, ...]
    picklist_parent_value_field: str | None
    is_supported_webhook_field: bool | None

    @classmethod
    def from_api(cls, raw: Any, *, entity: str = "entityInformation") -> EntityField:
        r = _Reader(f"{entity} field", raw)
        r.label = f"{entity} field {raw.get('name')!r}" if isinstance(raw, Mapping) else r.label
        values = raw.get("picklistValues") or []
        if not isinstance(values, list):
            raise AutotaskResponseError(
                f"{r.label}: field 'picklistValues' is not a list: {_short(values)}",
                entity=entity,
            )
        picklist = []
        for item in values:
            p = _Reader(f"{entity} picklist value", item)
            picklist.append(
                PicklistValue(
                    value=p.code("value", required=True),
                    label=p.str("label"),
                    is_default_value=p.flag("isDefaultValue"),
                    sort_order=p.int("sortOrder"),
                    parent_value=p.code("parentValue"),
                    is_active=p.flag("isActive"),
                    is_system=p.flag("isSystem"),
                )
            )
        return cls(
            name=r.str("name", required=True),
            data_type=r.str("dataType", "type"),
            length=r.int("length"),
            is_required=r.flag("isRequired"),
            is_read_only=r.flag("isReadOnly"),
            is_queryable=r.flag("isQueryable"),
            is_reference=r.flag("isReference"),
            reference_entity_type=r.str("referenceEntityType"),
            is_pick_list=r.flag("isPickList"),
            picklist_values=tuple(picklist),
            picklist_parent_value_field=r.str("picklistParentValueField"),
            is_supported_webhook_field=r.flag("isSupportedWebhookField"),
        )


@dataclass(frozen=True, slots=True)
class InvoicePdf:
    """``GET /Invoices/{id}/InvoicePDF`` decoded (API.md §5.1 "Special endpoints")."""

    invoice_id: int
    content: bytes = b""
    file_name: str | None = None
    content_type: str | None = None
    file_size: int | None = None

    @classmethod
    def from_api(cls, raw: Any, *, invoice_id: int) -> InvoicePdf:
        entity = "Invoices"
        # Flat envelope (current spec) or wrapped in {"item": {...}} (n8n) — accept both.
        if isinstance(raw, Mapping) and "data" not in raw and isinstance(raw.get("item"), Mapping):
            raw = raw["item"]
        r = _Reader(entity, raw)
        r.label = f"Invoices record {invoice_id} InvoicePDF"
        encoded = r.str("data", required=True)
        try:
            content = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise AutotaskResponseError(
                f"{r.label}: field 'data' is not valid base64", entity=entity
            ) from None
        if not content.startswith(b"%PDF-"):
            raise AutotaskResponseError(
                f"{r.label}: data is not a PDF (starts with {content[:8]!r})", entity=entity
            )
        return cls(
            invoice_id=invoice_id,
            content=content,
            file_name=r.str("fileName"),
            content_type=r.str("contentType"),
            file_size=r.int("fileSize"),
        )


RECORD_TYPES: dict[str, type[_Record]] = {
    cls.ENTITY.lower(): cls
    for cls in (Company, Contact, Invoice, PaymentTerm, BillingItem, Currency)
}


def record_type_for(entity: str) -> type[_Record] | None:
    """The typed record class for an entity path name (case-insensitive), if we have one."""
    return RECORD_TYPES.get(entity.lower())


def field_names(record_type: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(record_type))
