"""Content-Security-Policy (issue 18, item 8): every answer carries a policy that allows
scripts from our own origin only, and no template of ours holds an inline script, an inline
event handler or an inline style block (they would be refused by the browser)."""

import re
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR) / "templates"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
STYLE_BLOCK = re.compile(r"<style[\s>]", re.I)


def policy(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/", "/api/v1/docs/", "/"])
def test_every_page_carries_a_policy_without_inline_script(client, path):
    directives = policy(client.get(path))
    assert directives["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in directives["script-src"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]


def test_signed_in_pages_and_the_api_carry_it_too(client_a):
    assert policy(client_a.get("/invoices/"))["script-src"] == ["'self'"]
    assert "Content-Security-Policy" in client_a.get("/api/v1/invoices/").headers


def test_the_api_docs_load_swagger_ui_from_a_file_not_inline(client):
    html = client.get("/api/v1/docs/").content.decode()
    assert not INLINE_SCRIPT.search(html), html
    script = re.findall(r'<script src="([^"]+)"', html)[-1]
    assert "/api/v1/docs/" in script
    js = client.get(script.replace("&amp;", "&"))
    assert js.status_code == 200 and b"SwaggerUIBundle" in js.content


def test_no_template_of_ours_holds_inline_script_handlers_or_style_blocks():
    offenders = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        for pattern in (INLINE_SCRIPT, INLINE_HANDLER, STYLE_BLOCK):
            offenders += [f"{path.relative_to(TEMPLATES)}: {m}" for m in pattern.findall(text)]
    assert offenders == []


def test_the_scan_would_catch_them():
    assert INLINE_SCRIPT.search("<script>alert(1)</script>")
    assert not INLINE_SCRIPT.search('<script src="/static/js/nav.js" defer></script>')
    assert INLINE_HANDLER.search("<form onsubmit=\"return confirm('x')\">")
    assert not INLINE_HANDLER.search('<form data-confirm="Delete?">')
    assert STYLE_BLOCK.search("<style>.x{}</style>")
