"""Helpers for talking to the sandbox over real HTTP, as a client would."""

from __future__ import annotations

import pytest
import requests


class AutotaskHttp:
    """A minimal authenticated client bound to one database's zone URL."""

    def __init__(self, server, db, **header_overrides) -> None:
        self.server, self.db = server, db
        self.zone = db.zone_url
        self.session = requests.Session()
        self.session.headers.update(
            {
                "ApiIntegrationCode": db.integration_code,
                "UserName": db.username,
                "Secret": db.secret,
                "Content-Type": "application/json",
                **header_overrides,
            }
        )

    def url(self, path: str) -> str:
        return f"{self.zone}V1.0/{path}"

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.url(path), timeout=10, **kwargs)

    def post(self, path: str, body=None, **kwargs) -> requests.Response:
        return self.session.post(self.url(path), json=body, timeout=10, **kwargs)

    def patch(self, path: str, body, **kwargs) -> requests.Response:
        return self.session.patch(self.url(path), json=body, timeout=10, **kwargs)

    def query(self, entity: str, *filters, **extra) -> requests.Response:
        return self.post(f"{entity}/query", {"filter": list(filters), **extra})

    def ids(self, entity: str, *filters) -> list[int]:
        response = self.query(entity, *filters)
        assert response.status_code == 200, response.text
        assert response.json()["pageDetails"]["nextPageUrl"] is None
        return [item["id"] for item in response.json()["items"]]


def control(server, method: str, path: str, body=None) -> tuple[int, dict]:
    """A /_sandbox/ control call over HTTP: (status, JSON body)."""
    response = requests.request(method, f"{server.control_url}{path}", json=body, timeout=10)
    return response.status_code, response.json()


@pytest.fixture
def at(autotask_sandbox) -> AutotaskHttp:
    return AutotaskHttp(autotask_sandbox, autotask_sandbox.db)
