"""Open a generated report in a real headless browser (Debian's chromium through Playwright) with the
network cut off, and say what happened: console errors, page errors, every request that tried to
leave the file, and whether given elements are visible. Saves a screenshot beside the report.

Playwright's own browser download is not used (it is not reachable from a lab machine): the system
``chromium`` is launched with background networking, component updates and sync disabled, and every
request that is not ``file:``/``data:``/``blob:``/``about:`` is aborted and recorded.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..protocol.errors import PaylabError

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


class BrowserUnavailable(PaylabError):
    """No chromium (``apt-get install chromium``) or no playwright (``pip install playwright``)."""


@dataclass
class PageCheck:
    """What the browser saw."""

    url: str
    title: str = ""
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    outgoing_requests: list[str] = field(default_factory=list)
    visible: dict[str, bool] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    screenshot: Path | None = None

    @property
    def clean(self) -> bool:
        return not (self.console_errors or self.page_errors or self.outgoing_requests)


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise BrowserUnavailable("chromium is not installed: apt-get install chromium")
    return path


def check_page(html: Path, *, selectors: tuple[str, ...] = (), screenshot: Path | None = None,
               wait_for: str | None = None, settle_ms: int = 500, timeout_ms: int = 30_000) -> PageCheck:
    """Load ``html`` offline; report console/page errors, outgoing requests and which ``selectors``
    are visible (their inner text is kept, first 2,000 characters)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is a declared test dependency
        raise BrowserUnavailable("playwright is not installed: pip install playwright") from None
    result = PageCheck(url=html.resolve().as_uri())
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(service_workers="block")

            def route(r: object) -> None:
                request = r.request  # type: ignore[attr-defined]
                if request.url.startswith(LOCAL_SCHEMES):
                    r.continue_()  # type: ignore[attr-defined]
                else:
                    result.outgoing_requests.append(request.url)
                    r.abort()  # type: ignore[attr-defined]

            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda m: result.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: result.page_errors.append(str(e)))
            page.goto(result.url, wait_until="load", timeout=timeout_ms)
            if wait_for:
                page.wait_for_selector(wait_for, timeout=timeout_ms)
            page.wait_for_timeout(settle_ms)
            result.title = page.title()
            for selector in selectors:
                locator = page.locator(selector).first
                visible = locator.count() > 0 and locator.is_visible()
                result.visible[selector] = visible
                text = ""
                if visible:  # inner_text exists only on HTML elements; SVG nodes have text_content
                    text = locator.evaluate("e => (e instanceof HTMLElement ? e.innerText : e.textContent) || ''")
                result.texts[selector] = text[:2000]
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=False)
                result.screenshot = screenshot
            context.close()
        finally:
            browser.close()
    return result
