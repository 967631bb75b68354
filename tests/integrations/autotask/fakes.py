"""A tiny in-memory Autotask for unit tests: a ``requests`` transport adapter that routes
requests to handler functions. No sockets, no mocking library."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter

ZONE_LOOKUP_URL = "https://lookup.example.test/atservicesrest/v1.0/zoneInformation"
ZONE_BASE = "https://webservices15.example.test/ATServicesRest/"
USERNAME = "api-user@example.test"
SECRET = "s3cr3t-value-never-logged"
INTEGRATION_CODE = "TEST-INTEGRATION-CODE"


@dataclass
class Sent:
    method: str
    url: str
    headers: dict[str, str]
    body: Any

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.url).query)


Reply = tuple[int, dict[str, str], Any]  # status, headers, body (dict/list → JSON; str/bytes raw)
Handler = Callable[[Sent, re.Match[str]], Reply | Exception]


@dataclass
class FakeAutotask(BaseAdapter):
    routes: list[tuple[str, re.Pattern[str], Handler]] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    zone: dict[str, Any] = field(
        default_factory=lambda: {
            "zoneName": "Test Zone 15",
            "url": ZONE_BASE,
            "webUrl": "https://ww15.example.test/",
            "ci": 4242,
        }
    )

    def __post_init__(self) -> None:
        super().__init__()
        self.on("GET", r"/atservicesrest/v1\.0/zoneInformation", lambda s, m: (200, {}, self.zone))

    def on(self, method: str, path_regex: str, handler: Handler | Reply | list) -> None:
        """Register a handler (newest wins). A tuple is a fixed reply; a list of replies is
        served in order (the last one repeats)."""
        if isinstance(handler, tuple):
            reply = handler
            handler = lambda s, m: reply  # noqa: E731
        elif isinstance(handler, list):
            queue = list(handler)

            def handler(s: Sent, m: re.Match[str]) -> Reply | Exception:
                return queue.pop(0) if len(queue) > 1 else queue[0]

        self.routes.insert(0, (method, re.compile(path_regex + "$", re.IGNORECASE), handler))

    def api(self, method: str, path_regex: str, handler: Handler | Reply | list) -> None:
        self.on(method, r"/ATServicesRest/V1\.0/" + path_regex, handler)

    def calls(self, method: str | None = None, contains: str = "") -> list[Sent]:
        return [
            s
            for s in self.sent
            if (method is None or s.method == method) and contains.lower() in s.url.lower()
        ]

    def send(self, request, **kwargs):  # type: ignore[override]
        body = request.body
        if isinstance(body, bytes):
            body = body.decode()
        sent = Sent(
            method=request.method,
            url=request.url,
            headers=dict(request.headers),
            body=json.loads(body) if body else None,
        )
        self.sent.append(sent)
        path = urlsplit(request.url).path
        for method, pattern, handler in self.routes:
            match = pattern.match(path)
            if method == request.method and match:
                result = handler(sent, match)
                break
        else:
            result = (404, {}, {"Message": "No route"})
        if isinstance(result, Exception):
            raise result
        status, headers, payload = result
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        if isinstance(payload, bytes):
            response._content = payload
        elif isinstance(payload, str):
            response._content = payload.encode()
        elif payload is None:
            response._content = b""
        else:
            response._content = json.dumps(payload).encode()
            response.headers.setdefault("Content-Type", "application/json")
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


def page(items: list[dict], next_url: str | None = None, count: int | None = None) -> dict:
    return {
        "items": items,
        "pageDetails": {
            "count": len(items) if count is None else count,
            "requestCount": 500,
            "prevPageUrl": None,
            "nextPageUrl": next_url,
        },
    }


def invoice(invoice_id: int, **extra: Any) -> dict:
    row = {
        "id": invoice_id,
        "companyID": 369,
        "invoiceNumber": str(1000 + invoice_id),
        "invoiceDateTime": "2025-09-05T00:00:00.000Z",
        "invoiceTotal": 52.7775,
        "isVoided": False,
        "paidDate": None,
        "userDefinedFields": [],
    }
    row.update(extra)
    return row
