"""Injected faults (sandbox.faults)."""

import pytest
import requests

from tests.sandbox.conftest import AutotaskHttp


def test_next_requests_fail_deterministically(at):
    at.db.fail_next(2, "429", retry_after=3)
    first, second, third = (at.get("Companies/entityInformation") for _ in range(3))
    assert first.status_code == second.status_code == 429
    assert first.headers["Retry-After"] == "3"
    assert third.status_code == 200


@pytest.mark.parametrize(
    ("kind", "status", "content_type", "body_check"),
    [
        ("503_html", 503, "text/html", lambda b: b.startswith(b"<html")),
        ("503_empty", 503, "text/plain", lambda b: b == b""),
        ("500_plain", 500, "application/json", lambda b: b"errors" not in b),
        ("html_200", 200, "text/html", lambda b: b"Server Error" in b),
        ("html_500", 500, "text/html", lambda b: b"Server Error" in b),
        ("malformed_json", 200, "application/json", lambda b: b.startswith(b'{"items"')),
    ],
)
def test_fault_kinds(at, kind, status, content_type, body_check):
    at.db.fail_next(1, kind)
    response = at.get("Companies/entityInformation")
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith(content_type)
    assert body_check(response.content)
    if kind == "malformed_json":
        with pytest.raises(ValueError):
            response.json()


def test_timeout_holds_then_drops_the_connection(at):
    at.db.fail_next(1, "timeout", seconds=0.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        at.session.get(at.url("Companies/entityInformation"), timeout=0.2)
    at.db.fail_next(1, "timeout", seconds=0.2)
    with pytest.raises(requests.exceptions.ConnectionError):
        at.session.get(at.url("Companies/entityInformation"), timeout=5)
    assert at.get("Companies/entityInformation").status_code == 200


def test_fault_restricted_to_an_entity(at):
    at.db.fail_next(1, "503_empty", entity="Invoices")
    assert at.get("Companies/entityInformation").status_code == 200
    assert at.get("Invoices/entityInformation").status_code == 503


def test_error_share_is_reproducible_with_a_seed(make_sandbox):
    def run():
        server = make_sandbox(invoices=5)
        server.db.set_faults(error_rate=0.3, seed=42, kinds=["503_empty", "500_plain"])
        at = AutotaskHttp(server, server.db)
        return [at.get("Companies/entityInformation").status_code for _ in range(40)]

    first = run()
    assert first == run()
    assert 0 < first.count(200) < 40 and set(first) <= {200, 500, 503}


def test_latency(at):
    at.db.set_faults(latency_ms=150)
    response = at.get("Companies/entityInformation")
    assert response.elapsed.total_seconds() >= 0.15
    at.db.clear_faults()
    assert at.get("Companies/entityInformation").elapsed.total_seconds() < 0.15


def test_zone_lookup_only_fails_when_asked_explicitly(at):
    at.db.set_faults(error_rate=1.0)
    lookup = at.server.zone_lookup_url
    assert requests.get(lookup, params={"user": at.db.username}).status_code == 200
    at.db.fail_next(1, "503_html", entity="zoneInformation")
    assert requests.get(lookup, params={"user": at.db.username}).status_code == 503
