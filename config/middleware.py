"""Request hygiene before any view runs (issue 18, item 5).

- A query parameter (name or value) with a control character (NUL and the other Unicode "Cc"
  characters) is refused with 400: PostgreSQL cannot store or compare text with NUL (a search
  for it was a 500), and no filter of ours takes one. The API answers JSON with `code`
  `invalid_parameter` and the parameter's name, the dashboard a short 400 page.
- A 404 under /api/ is JSON (`{"detail", "code": "not_found"}`), also when no route matched
  (e.g. a non-integer id in a route that takes `<int:pk>`), never Django's HTML page.
"""

from __future__ import annotations

import unicodedata

from django.http import HttpResponseBadRequest, JsonResponse
from django.template.loader import render_to_string

API_PREFIX = "/api/"


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def bad_query_parameter(request) -> str | None:
    """The name of the first query parameter with a control character, or None."""
    for name, values in request.GET.lists():
        if _has_control(name) or any(_has_control(v) for v in values):
            return name.encode("unicode_escape").decode()[:60]
    return None


class RequestHygieneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        is_api = request.path.startswith(API_PREFIX)
        name = bad_query_parameter(request)
        if name is not None:
            detail = f"{name}: control characters are not allowed in query parameters."
            if is_api:
                return JsonResponse(
                    {"detail": detail, "code": "invalid_parameter", "parameter": name},
                    status=400,
                )
            html = render_to_string(
                "errors/bad_query.html", {"parameter": name, "path": request.path}
            )
            return HttpResponseBadRequest(html)
        response = self.get_response(request)
        if (
            is_api
            and response.status_code == 404
            and not response.get("Content-Type", "").startswith("application/json")
            and not response.streaming
        ):
            return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
        return response
