"""One place maps domain errors to HTTP for the API."""

from rest_framework import serializers, status
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
    return drf_exception_handler(exc, context)


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


class Pagination(PageNumberPagination):
    """Every list of the API: `?page=` and `?page_size=` (1 to 500, default 50); a page size out of
    range is clamped, as DRF does (a larger one gives 500 rows, not an error)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
