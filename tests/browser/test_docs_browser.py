"""Swagger UI at /docs in headless Chromium, under the stack's CSP: it renders, "Try it out"
reaches the API, and the browser reports no CSP violation — for a FastAPI app served by
plain uvicorn and for ``bastion serve`` with ``BASTION_EXPOSE_DOCS=true``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, start_server
from tests.uvicorn_process import Process, running

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# Where the integrator looks for the picture (outside the repository).
SCREENSHOT = Path(os.environ.get("BASTION_DOCS_SCREENSHOT", "/work/wt/docs-screenshot.png"))

COLLECT_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """bastion serve with its docs exposed (the module's ``api`` for the shared browser)."""
    server = start_server(tmp_path_factory.mktemp("docs-api"), env={"BASTION_EXPOSE_DOCS": "true"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fastapi_example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    tmp = tmp_path_factory.mktemp("docs-example")
    with running("examples.fastapi_app:app", tmp, ready_path="/openapi.json") as server:
        yield server


def open_docs(browser: Any, url: str) -> tuple[Any, list[str], list[str]]:
    """The rendered page, the console lines and the page errors."""
    context = browser.new_context()
    page = context.new_page()
    console: list[str] = []
    errors: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.add_init_script(COLLECT_VIOLATIONS)
    response = page.goto(url, wait_until="load")
    assert response is not None and response.status == 200
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    return page, console, errors


def assert_no_csp_violation(page: Any, console: list[str], errors: list[str]) -> None:
    violations = page.evaluate("window.__csp")
    assert violations == []
    assert not [line for line in console if "Content Security Policy" in line], console
    assert errors == []


def test_fastapi_example_docs_render_and_try_it_out(browser: Any, fastapi_example: Process) -> None:
    page, console, errors = open_docs(browser, fastapi_example.url + "/docs")
    assert page.inner_text(".swagger-ui .info .title").startswith("Reports API")
    operations = page.locator(".swagger-ui .opblock-summary-path").all_inner_texts()
    assert any("/api/reports/{report_id}" in text for text in operations)
    # "Try it out" fetches the API from the page: connect-src 'self' must allow it.
    page.locator(".opblock-get").first.locator(".opblock-summary").click()
    page.get_by_role("button", name="Try it out").click()
    page.locator("input[placeholder='report_id']").fill("7")
    page.get_by_role("button", name="Execute").click()
    cell = ".live-responses-table tbody .response-col_status"
    page.wait_for_selector(cell, timeout=10_000)
    status = page.locator(cell).first.inner_text()
    assert status.strip() == "200"
    assert '"status": "ready"' in page.locator(".live-responses-table").inner_text()
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000
    assert_no_csp_violation(page, console, errors)


def test_bastion_serve_docs_render(browser: Any, api: Server) -> None:
    page, console, errors = open_docs(browser, api.url.replace("127.0.0.1", "localhost") + "/docs")
    assert "bastion reference orders API" in page.inner_text(".swagger-ui .info .title")
    paths = page.locator(".swagger-ui .opblock-summary-path").all_inner_texts()
    assert any("/api/v1/orders" in text for text in paths)
    assert_no_csp_violation(page, console, errors)


def test_an_injected_inline_script_stays_blocked(
    browser: Any, fastapi_example: Process, tmp_path: Path, launch: Callable[..., Any]
) -> None:
    """The docs policy allows the page's own scripts only: a script without the response's
    nonce (what an injection would add) is refused and reported."""
    page, _console, _errors = open_docs(browser, fastapi_example.url + "/docs")
    blocked = page.evaluate(
        """() => new Promise((resolve) => {
            window.__ran = false;
            const s = document.createElement("script");
            s.textContent = "window.__ran = true";
            document.body.appendChild(s);
            setTimeout(() => resolve([window.__ran, window.__csp]), 200);
        })"""
    )
    ran, violations = blocked
    assert ran is False
    assert any(v.startswith("script-src") for v in violations)
