"""Each response shape maps to one error type with the right ``retryable`` flag (API.md §2,
§4, §7). Bodies are the recorded ones from shared/autotask/samples where they exist."""

from datetime import UTC, datetime

import pytest

from integrations.autotask.errors import (
    AutotaskAuthError,
    AutotaskRequestError,
    AutotaskResponseError,
    AutotaskThrottled,
    AutotaskTransientError,
    error_for_response,
    parse_retry_after,
)

NOW = datetime(2025, 10, 1, 12, 0, 0, tzinfo=UTC)
HTML = b"<!DOCTYPE html><html><body><h1>Service Unavailable</h1></body></html>"


def classify(status, body=b"", headers=None):
    error, _ = error_for_response(
        status=status,
        headers=headers or {},
        content=body,
        method="POST",
        path="/ATServicesRest/V1.0/Invoices/query",
        entity="Invoices",
        secrets=("s3cr3t",),
        now=lambda: NOW,
    )
    return error


@pytest.mark.parametrize(
    ("status", "body", "cls", "kind", "retryable"),
    [
        (401, b"", AutotaskAuthError, "bad_secret", False),
        (401, b'{"errors":["Unauthorized"]}', AutotaskAuthError, "bad_secret", False),
        (
            500,
            b'{"errors":["Zone information could not be determined"]}',
            AutotaskAuthError,
            "unknown_user",
            False,
        ),
        (
            500,
            b'{"errors":["IntegrationCode is invalid"]}',
            AutotaskAuthError,
            "bad_integration_code",
            False,
        ),
        (
            500,
            b'{"errors":["Invalid API tracking identifier"]}',
            AutotaskAuthError,
            "bad_integration_code",
            False,
        ),
        (
            500,
            b'{"errors":["The logged in Resource does not have the adequate permissions to '
            b'query this entity type."]}',
            AutotaskAuthError,
            "permission",
            False,
        ),
        (403, b"", AutotaskAuthError, "permission", False),
        (429, b'{"errors":["Request threshold exceeded"]}', AutotaskThrottled, "throttled", True),
        (
            500,
            b'{"errors":["Thread Threshold Exceeded - The Autotask API thread threshold of 3 '
            b'threads has been exceeded. Itgenatr005"]}',
            AutotaskThrottled,
            "throttled",
            True,
        ),
        (500, b"", AutotaskTransientError, "server_error", True),
        (503, b'{"errors":["maintenance"]}', AutotaskTransientError, "server_error", True),
        (
            500,
            b'{"Message":"An error has occurred."}',
            AutotaskTransientError,
            "server_error",
            True,
        ),
        (502, HTML, AutotaskTransientError, "server_error", True),
        (500, b'{"items": [', AutotaskTransientError, "server_error", True),
        (
            500,
            b'{"errors":["Unable to find limit in the Companies"]}',
            AutotaskRequestError,
            "request",
            False,
        ),
        (
            500,
            b'{"errors":["Invalid query syntax. Queries are limited to 500 or fewer \'OR\' '
            b'conditions."]}',
            AutotaskRequestError,
            "request",
            False,
        ),
        (400, b'{"errors":["bad"]}', AutotaskRequestError, "request", False),
        (404, b"", AutotaskRequestError, "not_found", False),
        (
            405,
            b'{"Message":"The requested resource does not support http method \'GET\'."}',
            AutotaskRequestError,
            "request",
            False,
        ),
        (200, HTML, AutotaskResponseError, "response", False),
        (200, b'{"items": [', AutotaskResponseError, "response", False),
        (200, b'{"errors":["oops"]}', AutotaskRequestError, "request", False),
        (302, b"", AutotaskResponseError, "response", False),
    ],
)
def test_mapping(status, body, cls, kind, retryable):
    error = classify(status, body)
    assert type(error) is cls
    assert error.kind == kind
    assert error.retryable is retryable
    assert error.status == status


def test_success_returns_parsed_body_with_decimals():
    error, body = error_for_response(
        status=200, headers={}, content=b'{"x": 52.7775}', method="GET", path="/p"
    )
    assert error is None
    assert str(body["x"]) == "52.7775"


def test_429_with_retry_after_seconds_and_date_and_garbage():
    assert classify(429, headers={"Retry-After": "30"}).retry_after == 30.0
    dated = classify(429, headers={"Retry-After": "Wed, 01 Oct 2025 12:02:00 GMT"})
    assert dated.retry_after == 120.0
    assert classify(429, headers={"Retry-After": "soon-ish"}).retry_after is None
    assert classify(429).retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("  7 ", 7.0),
        ("1.5", 1.5),
        ("-3", None),
        ("nan", None),
        ("", None),
        (None, None),
        ("Wed, 01 Oct 2025 11:00:00 GMT", 0.0),  # in the past
        ("Wed, 01 Oct 2025 13:00:00 GMT", 3600.0),
        ("tomorrow", None),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


def test_messages_never_contain_the_secret():
    error = classify(500, b'{"errors":["Secret s3cr3t is wrong for user"]}')
    assert "s3cr3t" not in str(error)
    assert "***" in str(error)
