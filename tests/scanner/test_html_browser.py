"""The HTML report in headless Chromium: it renders, the grade is visible, evidence unfolds,
and the page loads nothing from anywhere (it is one self-contained file)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bastion.scanner.reporters import render
from tests.browser.pages import CHROMIUM_ARGS
from tests.support import require_program


@pytest.mark.browser
def test_html_report_renders_in_chromium(tmp_path: Path) -> None:
    chromium = require_program("/usr/bin/chromium", "headless browser for the HTML report")
    from playwright.sync_api import sync_playwright

    from tests.scanner.test_reporters import sample_reports

    report = sample_reports()["insecure"]
    page_path = tmp_path / "report.html"
    page_path.write_text(render(report, "html"), encoding="utf-8")
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri())
            grade = page.locator("#grade")
            assert grade.is_visible()
            assert grade.inner_text() == report.grade
            assert page.title().startswith(f"bastion scan: {report.grade}")
            # The badge is drawn (non-zero size) and the category cards exist.
            box = page.locator(".badge").bounding_box()
            assert box is not None and box["width"] >= 100 and box["height"] >= 100
            assert page.locator(".cat").count() >= 10
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=False)
            assert shot.stat().st_size > 10_000
            if os.environ.get("BASTION_KEEP_SCREENSHOT"):
                Path(os.environ["BASTION_KEEP_SCREENSHOT"]).write_bytes(shot.read_bytes())
            # Evidence is folded: a low-severity finding's <pre> is hidden until clicked.
            finding = page.locator("details#headers\\.xcto")
            pre = finding.locator("pre")
            assert not pre.is_visible()
            finding.locator("summary").click()
            assert pre.is_visible()
            assert "x-content-type-options" in pre.inner_text()
            # Critical failures start unfolded.
            assert page.locator("details#exposure\\.env pre").is_visible()
        finally:
            browser.close()
    assert requests == [page_path.as_uri()], f"the report loaded other resources: {requests}"
