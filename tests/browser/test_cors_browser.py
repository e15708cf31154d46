"""CORS as a real browser enforces it: headless Chromium against a real ``bastion serve``.

The unit tests prove which headers the layer sends; these prove that those headers make
Chromium do the right thing. Three page origins, all served from loopback:

* ``https://127.0.0.1:<p1>`` — listed in ``BASTION_CORS_ORIGINS``: its credentialed ``fetch``
  must succeed and read the exposed headers;
* ``https://127.0.0.1:<p2>`` — same host, another port: a different origin (RFC 6454), refused;
* ``https://localhost:<p3>`` — another host: refused.

Each refusal is checked from both sides: the page's ``fetch`` rejects, while for a simple
request the network layer did receive the server's answer — so it was the browser's CORS
check, driven by the missing ``Access-Control-Allow-Origin``, that blocked it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.pages import FETCH_JS, Exchange, NetworkLog, PageServer
from tests.conftest import Server, start_server

pytestmark = [pytest.mark.browser, pytest.mark.integration]

BLOCKED = "TypeError: Failed to fetch"
EXPOSED = (
    "X-RateLimit-Limit, X-RateLimit-Remaining, Retry-After, RateLimit, RateLimit-Policy, "
    "X-Request-ID"
)


class Pages:
    def __init__(self, cert: Path, key: Path) -> None:
        self.allowed = PageServer("127.0.0.1", cert, key)
        self.other_port = PageServer("127.0.0.1", cert, key)
        self.other_host = PageServer("localhost", cert, key)

    def close(self) -> None:
        for server in (self.allowed, self.other_port, self.other_host):
            server.close()


# One set of pages, one server and one browser for the module (each test opens its own
# browser context, so no cookie or cache carries over): starting them is most of the cost.
@pytest.fixture(scope="module")
def pages(page_cert: tuple[Path, Path]) -> Iterator[Pages]:
    pages = Pages(*page_cert)
    yield pages
    pages.close()


@pytest.fixture(scope="module")
def api(pages: Pages, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("cors-api")
    server = start_server(tmp_path, env={"BASTION_CORS_ORIGINS": pages.allowed.origin})
    yield server
    server.stop()


def open_page(browser: Any, page: PageServer, path: str = "/") -> tuple[Any, NetworkLog]:
    """A fresh browser context (no cookies) with a tab showing *page*, and its network log."""
    context = browser.new_context()
    tab = context.new_page()
    log = NetworkLog(context, tab)
    tab.goto(page.origin + path)
    assert tab.evaluate("location.origin") == page.origin
    return tab, log


def fetch(tab: Any, url: str, **init: Any) -> dict[str, Any]:
    """``fetch(url, {credentials: "include", ...init})`` in the page: status, readable headers
    and body, or the error the page got."""
    result: dict[str, Any] = tab.evaluate(FETCH_JS, [url, {"credentials": "include", **init}])
    return result


def cors_headers(exchange: Exchange) -> dict[str, str]:
    return {k: v for k, v in exchange.headers.items() if k.startswith("access-control-")}


def test_allowed_origin_reads_the_response_and_exposed_headers(
    api: Server, pages: Pages, browser: Any
) -> None:
    tab, log = open_page(browser, pages.allowed)
    url = f"{api.url}/healthz"

    result = fetch(tab, url)

    assert "error" not in result, result
    assert result["status"] == 200
    assert json.loads(result["body"])["status"] == "ok"
    network = log.find("GET", url)
    assert network.cors_error is None
    assert cors_headers(network) == {
        "access-control-allow-origin": pages.allowed.origin,
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": EXPOSED,
    }
    # Exposed via Access-Control-Expose-Headers, so script can read it ...
    assert result["headers"]["x-request-id"] == network.headers["x-request-id"]
    # ... while a header that is sent but not exposed stays hidden from script.
    assert network.headers["x-content-type-options"] == "nosniff"
    assert "x-content-type-options" not in result["headers"]


def test_allowed_origin_reads_the_rate_limit_headers(
    api: Server, pages: Pages, browser: Any
) -> None:
    """A page can only pace itself if it can read the budget: the rate-limit headers are in
    Access-Control-Expose-Headers, so script sees the values the server sent. (Every answer
    under /api/ counts, the 401 for a missing token included.)"""
    tab, log = open_page(browser, pages.allowed)
    url = f"{api.url}/api/v1/me"

    first = fetch(tab, url)
    second = fetch(tab, url)

    assert "error" not in first and "error" not in second, (first, second)
    network = log.find("GET", url, index=1)
    for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "ratelimit", "ratelimit-policy"):
        assert second["headers"][name] == network.headers[name], name
    remaining = [int(r["headers"]["x-ratelimit-remaining"]) for r in (first, second)]
    assert remaining[1] == remaining[0] - 1


def test_allowed_origin_passes_the_preflight(api: Server, pages: Pages, browser: Any) -> None:
    """``Authorization`` and a JSON body force a preflight (Fetch §4.8); it must pass, and the
    page sees the same status a non-browser client gets."""
    tab, log = open_page(browser, pages.allowed)
    url = f"{api.url}/api/v1/orders"
    headers = {"Authorization": "Bearer not-a-token", "Content-Type": "application/json"}

    result = fetch(tab, url, method="POST", headers=headers, body="{}")

    assert "error" not in result, result
    with api.client() as client:
        expected = client.post("/api/v1/orders", headers=headers, content=b"{}").status_code
    assert result["status"] == expected
    preflight = log.find("OPTIONS", url)
    assert preflight.status == 204
    assert preflight.headers["access-control-allow-origin"] == pages.allowed.origin
    assert log.find("POST", url).status == expected


def assert_simple_get_withheld(tab: Any, log: NetworkLog, url: str) -> None:
    """A simple GET from ``tab`` reaches the server (200) but, with no Access-Control-* header
    on the answer, the browser withholds it from script."""
    assert fetch(tab, url) == {"error": BLOCKED}
    network = log.find("GET", url)
    assert network.status == 200
    assert cors_headers(network) == {}
    assert network.cors_error == "MissingAllowOriginHeader"


@pytest.mark.parametrize("which", ["other_port", "other_host"])
def test_disallowed_origin_is_blocked(which: str, api: Server, pages: Pages, browser: Any) -> None:
    page = getattr(pages, which)
    tab, log = open_page(browser, page)

    # A simple GET reaches the server, but the browser withholds the answer from script.
    assert_simple_get_withheld(tab, log, f"{api.url}/healthz")

    # A preflighted request never gets past its preflight (403, no Access-Control-*).
    url = f"{api.url}/api/v1/orders"
    init = {"method": "DELETE", "headers": {"Authorization": "Bearer not-a-token"}}
    assert fetch(tab, url, **init) == {"error": BLOCKED}
    preflight = log.find("OPTIONS", url)
    assert preflight.status == 403
    assert cors_headers(preflight) == {}
    actual = log.find("DELETE", url)
    assert actual.status is None  # never sent
    assert actual.cors_error == "PreflightMissingAllowOriginHeader"

    # Control: the same browser, same API, from the allowed page works.
    control_tab, _ = open_page(browser, pages.allowed)
    control = fetch(control_tab, f"{api.url}/healthz")
    assert control.get("status") == 200, control


def test_no_origins_configured_blocks_every_page(
    pages: Pages, launch: Callable[..., Any], tmp_path: Path
) -> None:
    """An internal API (no BASTION_CORS_ORIGINS) answers no cross-origin page at all."""
    server = start_server(tmp_path)
    browser = launch(server.cert_path)
    try:
        tab, log = open_page(browser, pages.allowed)
        assert_simple_get_withheld(tab, log, f"{server.url}/healthz")
    finally:
        browser.close()  # first: the server's graceful stop waits for its open connections
        server.stop()
