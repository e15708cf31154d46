"""A well-configured API behind a real nginx: nginx's own error pages are weighted as what
they are, and its HTTP/2 GOAWAYs are retried (issue 16).

Ground truth of the fixture (nginx terminating TLS with a private CA the scan trusts, the
contract-shaped API behind it setting every security header; nginx refuses TRACE and a
malformed request target itself, with its default pages): no control fails. Before, it lost
20 points: ``disclosure.framework-errors`` fired on ``<center>nginx</center>``,
``headers.on-errors`` and ``methods.405-allow`` on nginx's TRACE page. Over HTTP/2, nginx's
GOAWAY (after ``keepalive_requests``, or ENHANCE_YOUR_CALM for the 16 KiB header probe) made
the streams in flight error: 12 to 15 controls per scan before the retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.scanner.context import ScanOptions
from bastion.scanner.evidence import Exchange
from bastion.scanner.model import Finding, Report
from bastion.scanner.proxy_pages import proxy_page, refused_by_proxy
from bastion.scanner.runner import scan
from tests.scanner.apps import Response, custom_app, secure_app
from tests.scanner.riskapps import nginx_front
from tests.scanner.servers import Certs, make_certs, running

pytestmark = pytest.mark.integration

NGINX_405 = (
    b"<html>\r\n<head><title>405 Not Allowed</title></head>\r\n<body>\r\n"
    b"<center><h1>405 Not Allowed</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("proxy-certs"))


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with running(secure_app()) as server:
        yield server.url


async def _scan(url: str, certs: Certs) -> Report:
    return await scan(url, ScanOptions(ca_file=str(certs.ca)))


def _problems(report: Report) -> list[str]:
    return [
        f"{f.status} {f.id}: {f.reason}"
        for f in report.findings
        if f.status in {"fail", "warn", "error"}
    ]


def _by_id(report: Report) -> dict[str, Finding]:
    return {f.id: f for f in report.findings}


async def test_nginx_default_pages_cost_a_well_configured_proxy_nothing(
    upstream: str, certs: Certs, tmp_path: Path
) -> None:
    with nginx_front(upstream, tmp_path, certs) as url:
        report = await _scan(url, certs)
    found = _by_id(report)
    assert _problems(report) == []
    assert report.grade == "A+"
    # The three controls that fired on nginx's pages, each saying what it set aside.
    framework = found["disclosure.framework-errors"]
    assert framework.status == "pass"
    assert "the proxy's own page without a version" in framework.reason
    assert "-> 400 (nginx)" in framework.reason
    on_errors = found["headers.on-errors"]
    assert on_errors.status == "pass"  # the 404 is the API's, with every header
    assert "TRACE" in on_errors.reason and "(nginx)" in on_errors.reason
    allow = found["methods.405-allow"]
    assert allow.status == "pass"  # PUT / -> 405 with Allow, from the API
    assert "TRACE" in allow.reason
    # What nginx's pages still show is judged: TRACE is refused, no version is disclosed.
    for control in ("methods.trace", "methods.track", "disclosure.server-version"):
        assert found[control].status == "pass", control


async def test_a_versioned_nginx_page_still_fails_framework_errors(
    certs: Certs, tmp_path: Path
) -> None:
    """The version is the disclosure: an API whose error pages say ``nginx/1.22.1`` fails."""
    page = NGINX_405.replace(b"<center>nginx</center>", b"<center>nginx/1.22.1</center>")
    app = custom_app({}, default=Response(405, page, content_type="text/html"))
    with running(app, certs=certs) as server:
        report = await _scan(server.url, certs)
    framework = _by_id(report)["disclosure.framework-errors"]
    assert framework.status == "fail"
    assert "nginx default page" in framework.reason


async def test_an_api_whose_own_trace_405_lacks_headers_still_fails(
    certs: Certs, tmp_path: Path
) -> None:
    """Only a proxy's fixed page is set aside: the API's own bare 405 is judged as before."""
    with running(secure_app(bare_errors=True, allow_on_405=False), certs=certs) as server:
        report = await _scan(server.url, certs)
    found = _by_id(report)
    assert found["headers.on-errors"].status == "fail"
    assert found["methods.405-allow"].status == "fail"


async def test_http2_goaway_from_nginx_is_retried(
    upstream: str, certs: Certs, tmp_path: Path
) -> None:
    """nginx over HTTP/2 with keepalive_requests 10 sends GOAWAY every ten requests; the
    streams already in flight on that connection fail ("ConnectionTerminated", "Server
    disconnected", a local protocol error in state CLOSED). Each is retried on a fresh
    connection, so no control errors and the grade is the same as over HTTP/1.1."""
    with nginx_front(upstream, tmp_path, certs, http2=True, keepalive=10) as url:
        reports = [await _scan(url, certs) for _ in range(2)]
    for report in reports:
        assert "HTTP/2" in _by_id(report)["headers.xcto"].evidence
        problems = _problems(report)
        # Known limitation (README, "The scanner"): httpcore can leave streams that nginx
        # dropped with its GOAWAY waiting, with no error to retry on, until the request's
        # deadline. Every disconnect that surfaces as an error is retried: none may remain.
        hung = [p for p in problems if "RequestDeadline" in p]
        assert [p for p in problems if p not in hung] == []
        if not hung:
            assert report.grade == "A+"


def _exchange(status: int, body: bytes) -> Exchange:
    import httpx

    return Exchange(
        method="TRACE",
        url="https://api.test/",
        request_headers=(),
        status=status,
        reason_phrase="",
        http_version="HTTP/1.1",
        headers=httpx.Headers(),
        body=body,
        elapsed_ms=1.0,
    )


def test_the_nginx_page_is_recognised_only_in_its_exact_form() -> None:
    page = proxy_page(_exchange(405, NGINX_405))
    assert page is not None and page.name == "nginx" and not page.versioned
    assert refused_by_proxy(_exchange(405, NGINX_405)) is not None
    # A 404 page from the proxy is judged like any answer (the proxy answers that path).
    not_found = NGINX_405.replace(b"405 Not Allowed", b"404 Not Found")
    assert proxy_page(_exchange(404, not_found)) is not None
    assert refused_by_proxy(_exchange(404, not_found)) is None
    # The status in the page must be the response's; an app quoting nginx is not nginx.
    assert proxy_page(_exchange(400, NGINX_405)) is None
    assert proxy_page(_exchange(405, b"<p>oops</p>" + NGINX_405)) is None
    assert proxy_page(_exchange(405, NGINX_405 + b"x" * 4096)) is None
