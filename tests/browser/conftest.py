"""Fixtures for the headless-Chromium tests: the browser driver, page certificates, launcher."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.pages import PageServer, chromium_args, write_self_signed
from tests.conftest import Server
from tests.support import require_program


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium (never `playwright install`, which downloads a browser)."""
    return require_program("chromium", "Debian package chromium drives the browser tests")


@pytest.fixture(scope="module")
def playwright_driver(chromium: str) -> Iterator[Any]:
    # Module scope, not session: while the sync driver lives, Playwright keeps an asyncio loop
    # running in this thread, and every pytest-asyncio test on the same xdist worker would fail
    # with "Cannot run the event loop while another loop is running".
    from playwright.sync_api import sync_playwright

    driver = sync_playwright().start()
    yield driver
    driver.stop()


@pytest.fixture(scope="session")
def page_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_self_signed(tmp_path_factory.mktemp("pages"))


@pytest.fixture
def page_server(page_cert: tuple[Path, Path]) -> Iterator[Callable[[str], PageServer]]:
    """Factory: ``page_server("localhost")`` serves an empty page on its own free port."""
    servers: list[PageServer] = []

    def factory(host: str) -> PageServer:
        server = PageServer(host, *page_cert)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.close()


def _launch_chromium(
    playwright_driver: Any, chromium: str, page_cert: tuple[Path, Path], *trusted: Path
) -> Any:
    """Headless Chromium trusting exactly the pages' certificate and ``trusted`` (SPKI pins)."""
    return playwright_driver.chromium.launch(
        executable_path=chromium, args=chromium_args([page_cert[0], *trusted])
    )


@pytest.fixture
def launch(
    chromium: str, playwright_driver: Any, page_cert: tuple[Path, Path]
) -> Iterator[Callable[..., Any]]:
    """Factory: ``launch(server_cert)`` starts headless Chromium trusting exactly the pages'
    certificate and the given ones (by SPKI pin); every browser is closed at teardown."""
    browsers: list[Any] = []

    def factory(*trusted: Path) -> Any:
        browser = _launch_chromium(playwright_driver, chromium, page_cert, *trusted)
        browsers.append(browser)
        return browser

    yield factory
    for browser in browsers:
        browser.close()


@pytest.fixture(scope="module")
def browser(
    chromium: str, playwright_driver: Any, page_cert: tuple[Path, Path], api: Server
) -> Iterator[Any]:
    """One Chromium for the module, trusting the pages and the module's ``api`` server (each
    module that uses it defines its own ``api`` fixture); tests open their own contexts."""
    browser = _launch_chromium(playwright_driver, chromium, page_cert, api.cert_path)
    yield browser
    browser.close()
