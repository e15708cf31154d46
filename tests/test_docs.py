"""bastion.docs: the Swagger UI page at one exact path, under a nonce CSP, its files local."""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest

from bastion import ConfigError, SwaggerUI
from bastion.docs import SwaggerUIMiddleware
from tests.middleware.rawasgi import call, recorder

NONCE = re.compile(r"'nonce-([A-Za-z0-9_-]{22})'")


def docs(**options: Any) -> tuple[SwaggerUIMiddleware, list[Any]]:
    inner, seen = recorder()
    return SwaggerUIMiddleware(inner, docs=SwaggerUI(**options)), seen


async def test_page_policy_allows_exactly_the_pages_own_scripts() -> None:
    layer, seen = docs()
    first = await call(layer, "GET", "/docs")
    second = await call(layer, "GET", "/docs")
    assert first.status == 200 and seen == []
    assert first.header("content-type") == "text/html; charset=utf-8"
    csp = first.header("content-security-policy") or ""
    nonce = NONCE.search(csp)
    assert nonce is not None
    assert csp == (
        f"default-src 'none'; script-src 'nonce-{nonce.group(1)}'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    page = first.body.decode()
    assert page.count(f'nonce="{nonce.group(1)}"') == 2  # the bundle and its start call
    assert page.count("<script") == 2
    assert '"url": "/openapi.json"' in page
    assert NONCE.search(second.header("content-security-policy") or "") != nonce  # fresh


async def test_assets_are_served_from_the_package_and_other_paths_pass() -> None:
    layer, seen = docs()
    bundle = await call(layer, "GET", "/docs/swagger-ui-bundle.js")
    css = await call(layer, "GET", "/docs/swagger-ui.css")
    head = await call(layer, "HEAD", "/docs/swagger-ui.css")
    assert bundle.status == 200 and b"SwaggerUIBundle" in bundle.body
    assert css.header("content-type") == "text/css; charset=utf-8"
    assert head.status == 200 and head.body == b""
    assert head.header("content-length") == css.header("content-length")
    for path in ("/docs/index.html", "/docs/../etc/passwd", "/docs/swagger-ui.js", "/docsx"):
        await call(layer, "GET", path)
    assert len(seen) == 4  # anything but the page and its three files reaches the app


async def test_only_get_and_head() -> None:
    layer, _ = docs()
    result = await call(layer, "POST", "/docs")
    assert result.status == 405
    assert result.header("allow") == "GET, HEAD"
    assert result.json()["error"] == "Method not allowed"


async def test_root_path_and_custom_urls_are_escaped() -> None:
    layer, _ = docs(path="/api/docs", openapi_url="/api/openapi.json", title="<Orders & co>")
    result = await call(layer, "GET", "/api/docs", root_path="/v1")
    page = result.body.decode()
    assert "<title>&lt;Orders &amp; co&gt;</title>" in page
    assert 'src="/v1/api/docs/swagger-ui-bundle.js"' in page
    assert '"url": "/v1/api/openapi.json"' in page


async def test_cdn_assets_name_their_origin_in_the_policy() -> None:
    layer, _ = docs(assets_url="https://cdn.example/swagger-ui/5/")
    result = await call(layer, "GET", "/docs")
    csp = result.header("content-security-policy") or ""
    assert "style-src https://cdn.example;" in csp and "img-src https://cdn.example data:" in csp
    assert 'src="https://cdn.example/swagger-ui/5/swagger-ui-bundle.js"' in result.body.decode()
    assert (await call(layer, "GET", "/docs/swagger-ui.css")).status == 200  # not ours: the app's


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"path": "docs"}, "SwaggerUI(path=...)"),
        ({"path": "/docs/"}, "SwaggerUI(path=...)"),
        ({"path": "//evil.example"}, "SwaggerUI(path=...)"),
        ({"openapi_url": "/o.json?x=<script>"}, "SwaggerUI(openapi_url=...)"),
        ({"openapi_url": "/docs"}, "SwaggerUI(path=...)"),
        ({"title": "a\nb"}, "SwaggerUI(title=...)"),
        ({"assets_url": "http://cdn.example/"}, "SwaggerUI(assets_url=...)"),
        ({"assets_url": "https://cdn.example/x'; script-src *"}, "SwaggerUI(assets_url=...)"),
    ],
)
def test_bad_options(options: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigError) as info:
        SwaggerUI(**options)
    assert info.value.name == name


def test_missing_assets_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "swagger_ui_bundle", None)
    with pytest.raises(ConfigError) as info:
        SwaggerUI()
    assert str(info.value) == (
        "docs: local Swagger UI assets need the docs extra: pip install 'bastion[docs]'"
    )
    SwaggerUI(assets_url="https://cdn.example/swagger-ui")  # a CDN needs no package
