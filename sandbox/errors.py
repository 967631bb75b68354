"""The one error type of the Autotask side of the sandbox, and the texts Autotask uses."""

from __future__ import annotations


class ApiError(Exception):
    """An Autotask-shaped failure. ``body`` is JSON-able (``{"errors": [...]}`` for business
    errors, ASP.NET's ``{"Message": ...}`` for framework errors) or raw bytes."""

    def __init__(
        self,
        status: int,
        body: object,
        *,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.content_type = content_type


def business_error(*messages: str, status: int = 500) -> ApiError:
    """Autotask answers validation and business-rule failures with 500 + an errors array."""
    return ApiError(status, {"errors": list(messages)})


def method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405, {"Message": f"The requested resource does not support http method '{method}'."}
    )


ZONE_UNKNOWN = "Zone information could not be determined"
UNKNOWN_USER = (
    "Unable to authenticate the API user: the UserName is not a valid API user in any zone."
)
BAD_INTEGRATION_CODE = (
    "Authentication failed: the ApiIntegrationCode is invalid or was not supplied. "
    "IntegrationCode is invalid."
)
NO_PERMISSION = (
    "The logged in Resource does not have the adequate permissions to access this entity."
)
THREAD_LIMIT = (
    "Thread Threshold Exceeded: The Autotask API thread threshold of {limit} threads has been "
    "exceeded. Itgenatr005"
)
HOURLY_THRESHOLD = (
    "Request threshold exceeded: this database has used its external request threshold of "
    "{threshold} requests in the last 60 minutes. Try again later."
)
OR_LIMIT = "Invalid query syntax. Queries are limited to 500 or fewer 'OR' conditions."
NO_RECORD = (
    "No matching records found. The logged in Resource may not have the required permissions "
    "to update the data."
)
DENIED_401 = {"Message": "Authorization has been denied for this request."}
