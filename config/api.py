"""One place maps domain errors to HTTP for the API: every error body has `detail` and `code`
(DRF's own errors too), and the query-parameter helpers every list uses (an invalid filter
value is a 400 naming the parameter, never silently ignored)."""

import re
from decimal import Decimal

from django.core.exceptions import PermissionDenied
from django.http import Http404
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class DomainError(Exception):
    """A business rule refused the request. `code` is stable for integrators; `status` is the
    HTTP status; `extra` is merged into the body; `headers` are added to the response."""

    status = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        extra: dict | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status_code:
            self.status = status_code
        self.extra = extra or {}
        self.headers = headers or {}


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        body = {"detail": exc.message, "code": exc.code, **exc.extra}
        return Response(body, status=exc.status, headers=exc.headers)
    response = drf_exception_handler(exc, context)
    # DRF's own single-message errors (a JSON parse error, 405, 406, 415, throttling, auth)
    # carry the documented `code` too: {"detail": "...", "code": "parse_error"}.
    if (
        response is not None
        and isinstance(response.data, dict)
        and set(response.data) == {"detail"}
    ):
        if isinstance(exc, APIException):
            codes = exc.get_codes()
            response.data["code"] = codes if isinstance(codes, str) else exc.default_code
        elif isinstance(exc, Http404):
            response.data["code"] = "not_found"
        elif isinstance(exc, PermissionDenied):
            response.data["code"] = "permission_denied"
    return response


# --- query parameters of API lists (shared: every list view parses its filters here) --------


class InvalidParameter(DomainError):
    """400 `invalid_parameter` naming the query parameter: an invalid filter value is refused,
    never silently ignored (a typo would otherwise return everything)."""

    code = "invalid_parameter"

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}", extra={"parameter": name})


ARCHIVED_CHOICES = ["no", "only", "all"]
BIGINT_MAX = 2**63 - 1
# The OpenAPI schema of an `int_param` (an id filter): what it accepts, no more, no less.
ID_PARAMETER_SCHEMA = {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}


def int_param(params, name: str, *, minimum: int = 1) -> int | None:
    """`?name=` as an integer ≥ minimum (and a PostgreSQL bigint), None when absent or empty."""
    raw = params.get(name, "")
    if raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or not minimum <= int(raw) <= BIGINT_MAX:
        raise InvalidParameter(name, f"must be an integer of at least {minimum}.")
    return int(raw)


def choice_param(params, name: str, choices, default: str = "") -> str:
    """`?name=` as one of `choices` (`default` when absent or empty)."""
    raw = params.get(name, "")
    if raw == "":
        return default
    allowed = [str(c) for c in choices]
    if raw not in allowed:
        raise InvalidParameter(name, f"must be one of {', '.join(allowed)}.")
    return raw


def ordering_choices(sorts) -> list[str]:
    """`?ordering=` values of a list sorted by `sorts` (field names): each, or `-` it."""
    return [k for name in sorts for k in (name, f"-{name}")]


def ordering_param(params, sorts) -> str:
    """`?ordering=` as one of ordering_choices(sorts), "" (the default order) when absent."""
    return choice_param(params, "ordering", ordering_choices(sorts))


def bool_param(params, name: str) -> bool:
    """`?name=` as true (1/true) or false (0/false, absent or empty)."""
    return choice_param(params, name, ["1", "true", "0", "false"]) in ("1", "true")


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField turns a number into one ("name": 0 →
    "0"), which the schema's `type: string` does not allow."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# Money in request bodies: a string of at most 12 digits before the point and 2 after. The
# patterns are what DRF accepts within the bounds (drf-spectacular does not map a DecimalField's
# min_value onto a string); the value is checked by DRF as before.
AMOUNT_PATTERN = r"^(?:[1-9]\d{0,11}(?:\.\d{0,2})?|0?\.(?:[1-9]\d?|0[1-9]))$"  # ≥ 0.01
NON_NEGATIVE_AMOUNT_PATTERN = r"^(?:\d{1,12}(?:\.\d{0,2})?|\.\d{1,2})$"  # ≥ 0


@extend_schema_field({"type": "string", "format": "decimal", "pattern": AMOUNT_PATTERN})
class AmountField(serializers.DecimalField):
    """A money amount of at least 0.01."""

    def __init__(self, **kwargs):
        super().__init__(max_digits=14, decimal_places=2, min_value=Decimal("0.01"), **kwargs)


@extend_schema_field(
    {"type": "string", "format": "decimal", "pattern": NON_NEGATIVE_AMOUNT_PATTERN}
)
class NonNegativeAmountField(serializers.DecimalField):
    """A money amount of at least 0."""

    def __init__(self, **kwargs):
        super().__init__(max_digits=14, decimal_places=2, min_value=Decimal("0"), **kwargs)


class ErrorSerializer(serializers.Serializer):
    """The body of every DomainError answer (one component in the OpenAPI schema)."""

    detail = serializers.CharField()
    code = serializers.CharField()


GENERIC_ERROR = {
    "description": "Error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "`detail` and `code` for domain errors; field → messages for "
                "validation errors.",
                "additionalProperties": True,
            }
        }
    },
}


def add_standard_error_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: every operation documents the error answers DRF
    gives everywhere (400 for input, 401/403 for auth, 404), unless it documented its own."""
    for methods in result.get("paths", {}).values():
        for method, operation in methods.items():
            responses = operation.setdefault("responses", {})
            # 404: an unknown or another partner's id, or a page past the end of a list.
            codes = ["401", "403", "404"]
            if method in ("post", "put", "patch") or operation.get("parameters"):
                codes.append("400")
            for code in codes:
                responses.setdefault(code, GENERIC_ERROR)
    return result


# Unicode "Cc" (C0, DEL, C1): config/middleware.py answers 400 to any query parameter with one.
NO_CONTROL_CHARACTERS = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


def describe_query_strings(result, generator, request, public):
    """drf-spectacular postprocessing hook: what every query parameter of ours accepts.

    - A free-text one (`?search=`) may not hold control characters (config/middleware.py
      refuses them with 400): a `pattern` says so; enums and dates are constrained already.
    - An empty value is the parameter left out (`?status=&from=`, as an HTML form sends them;
      int_param, choice_param and parse_date_range read it so): `allowEmptyValue`.
    """
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") != "query":
                    continue
                schema = parameter.get("schema", {})
                if schema.get("type") == "string" and not {"enum", "format", "pattern"} & set(
                    schema
                ):
                    schema["pattern"] = NO_CONTROL_CHARACTERS
                if not parameter.get("required"):
                    parameter["allowEmptyValue"] = True
    return result


# DRF's CharField refuses NUL ("Null characters are not allowed.") and trims whitespace first
# (so a required one of only spaces is blank): what a free-text request field accepts.
NO_NUL = "^[^\\u0000]*$"
NOT_BLANK_NO_NUL = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"


def describe_request_strings(result, generator, request, public):
    """drf-spectacular postprocessing hook: the free-text fields of request bodies (the
    `…Request` components) say what DRF's CharField accepts, with a `pattern` (above)."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if not name.endswith("Request"):
            continue
        for prop in component.get("properties", {}).values():
            if prop.get("type") != "string" or {"enum", "format", "pattern"} & set(prop):
                continue
            prop["pattern"] = NOT_BLANK_NO_NUL if prop.get("minLength", 0) >= 1 else NO_NUL
    return result


# drf-spectacular's pattern for a DecimalField, `^-?\d{0,12}(?:\.\d{0,2})?$`, matches "", "-"
# and ".", which DRF refuses ("A valid number is required."): at least one digit.
_LOOSE_DECIMAL = re.compile(r"^\^-\?\\d\{0,(\d+)\}\(\?:\\\.\\d\{0,(\d+)\}\)\?\$$")


def tighten_decimal_patterns(result, generator, request, public):
    """drf-spectacular postprocessing hook: decimal strings need a digit (_LOOSE_DECIMAL)."""
    for component in result.get("components", {}).get("schemas", {}).values():
        for prop in component.get("properties", {}).values():
            match = _LOOSE_DECIMAL.match(prop.get("pattern", ""))
            if prop.get("format") == "decimal" and match:
                whole, places = match.groups()
                prop["pattern"] = (
                    rf"^-?(?:\d{{1,{whole}}}(?:\.\d{{0,{places}}})?|\.\d{{1,{places}}})$"
                )
    return result


# OpenAPI links: what a created object's id leads to (drf-spectacular emits none). Schemathesis's
# stateful phase follows them (tests/api/test_schema_fuzz.py); clients' generators may too.
LINKS = {
    "customers_create": [
        "customers_retrieve",
        "customers_archive_create",
        "customers_unarchive_create",
    ],
    "invoices_create": [
        "invoices_retrieve",
        "invoices_timeline",
        "invoices_pdf_retrieve",
        "invoices_archive_create",
        "invoices_unarchive_create",
        "invoices_move_payments",
    ],
    "payments_create": ["payments_retrieve", "payments_destroy"],
    "auth_tokens_create": ["auth_tokens_retrieve", "auth_tokens_destroy"],
    "sync_fetch_new_data_create": ["sync_runs_retrieve", "sync_runs_changes_list"],
    "sync_fetch_unpaid_invoices_create": ["sync_runs_retrieve", "sync_runs_changes_list"],
}


def add_links(result, generator, request, public):
    """drf-spectacular postprocessing hook: the 2xx answer of each operation in LINKS links to
    the operations on the object it created (`{id}` = `$response.body#/id`)."""
    operations = {
        operation.get("operationId"): operation
        for methods in result.get("paths", {}).values()
        for operation in methods.values()
    }
    for source, targets in LINKS.items():
        operation = operations.get(source)
        if operation is None:
            continue
        created = [code for code in operation.get("responses", {}) if code.startswith("2")]
        for code in created[:1]:
            links = operation["responses"][code].setdefault("links", {})
            for target in targets:
                if target in operations:
                    links[target] = {
                        "operationId": target,
                        "parameters": {"id": "$response.body#/id"},
                    }
    return result


class Pagination(PageNumberPagination):
    """Every list of the API: `?page=` and `?page_size=` (1 to 500, default 50). A page size above
    500 gives 500 rows, as DRF does; one that is not an integer of at least 1 is a 400 naming
    the parameter (issue 18: never silently the default). A page past the end is a 404."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request):
        size = int_param(request.query_params, self.page_size_query_param)
        return self.page_size if size is None else min(size, self.max_page_size)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["maximum"] = BIGINT_MAX  # int_param's bound
        return parameters
