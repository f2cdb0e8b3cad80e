"""The widget embedded the normal way: on a company's page served from another origin than Switchboard.

Switchboard runs on ``127.0.0.1:<p1>``; two tiny static servers serve the same host page on ``<p2>``
(allowed for the widget key) and ``<p3>`` (allowed for no key). Real Chromium enforces CORS: the session
request is a cross-origin POST with a JSON body, so it is preceded by a preflight.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import keys
from support.testing.fake_anthropic import FakeAnthropic
from tests.browser.test_widget import WAIT_MS, W, answer_with, bubbles, open_panel, send
from tests.redis_cluster import sync_redis_client_for
from tests.servers import ServerProcess

HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Northwind Outfitters (shop.example)</title>
<style>body {{ font-family: Georgia, serif; margin: 0; background: #f6f1e7; color: #2b2118; }}
header {{ padding: 40px 24px; background: #2f4a3a; color: #f6f1e7; }} main {{ padding: 24px; }}</style>
</head><body>
<header><h1>Northwind Outfitters</h1><p>This page is served from {origin}.</p></header>
<main><p>The chat below is served by Switchboard at {service}.</p></main>
<script src="{service}/widget.js" data-widget-key="pk_shop" async></script>
</body></html>
"""


class StaticSite:
    """A host page on its own port, in a thread: the company's web site."""

    def __init__(self, service_url: str) -> None:
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = HOST_PAGE.format(origin=site.url, service=service_url).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def setup(
    tmp_path: Path, fake: FakeAnthropic, redis_url: str
) -> Iterator[tuple[ServerProcess, StaticSite, StaticSite]]:
    """Switchboard (its port chosen first, as the host pages name it) with the allowed site's origin in
    its widget keys, the allowed site and the stranger's site."""
    fake.reset()
    client = sync_redis_client_for(redis_url)
    client.flushdb()
    service = ServerProcess(tmp_path / "svc")
    allowed = StaticSite(service.url)
    stranger = StaticSite(service.url)
    service.env.update(
        {
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": fake.url,
            "SWITCHBOARD_REDIS_URL": redis_url,
            "SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}",
            "SWITCHBOARD_WIDGET_KEYS": json.dumps({"pk_shop": [allowed.url]}),
            "SWITCHBOARD_LLM_REQUESTS_PER_MINUTE": "10000",
        }
    )
    service.start()
    try:
        yield service, allowed, stranger
    finally:
        service.kill()
        allowed.close()
        stranger.close()
        client.flushdb()
        client.close()


def conversations(redis_url: str) -> int:
    client = sync_redis_client_for(redis_url)
    try:
        return len(list(client.scan_iter(match=keys.conv_state("*"), count=1000)))
    finally:
        client.close()


def page_on(browser: Any, url: str, width: int) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": width, "height": 800 if width > 500 else 740})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector(f"{W} .launcher", state="visible")
    return context, page, errors


@pytest.mark.parametrize("width", [1280, 375])
def test_on_an_allowed_origin_the_session_opens_and_a_message_is_answered(
    browser: Any,
    setup: tuple[ServerProcess, StaticSite, StaticSite],
    fake: FakeAnthropic,
    redis_url: str,
    screenshot_dir: Path,
    width: int,
) -> None:
    service, allowed, _ = setup
    reply = "Unused gear can be returned within 30 days of delivery, with a free label from your order page."
    answer_with(fake, reply)
    context, page, errors = page_on(browser, allowed.url, width)
    try:
        assert allowed.url != service.url
        open_panel(page)  # waits for the "bot" state: the cross-origin session request succeeded
        send(page, "Can I return my tent?")
        page.wait_for_selector(f"{W} .msg[data-role=assistant][data-seq]", timeout=WAIT_MS)
        assert bubbles(page, "assistant") == [reply]
        page.screenshot(path=str(screenshot_dir / f"widget-cross-origin-{width}.png"))
    finally:
        context.close()
    assert errors == []
    assert conversations(redis_url) == 1


def test_on_an_origin_no_key_allows_the_widget_says_chat_is_unavailable_and_creates_nothing(
    browser: Any,
    setup: tuple[ServerProcess, StaticSite, StaticSite],
    redis_url: str,
    screenshot_dir: Path,
) -> None:
    _, _, stranger = setup
    context, page, errors = page_on(browser, stranger.url, 375)
    try:
        page.locator(f"{W} .launcher").click()
        page.wait_for_selector(f"{W} .state[data-state=error]", timeout=WAIT_MS)
        text = page.locator(f"{W} .state").text_content()
        offered = [page.locator(f"{W} [data-act={act}]").is_visible() for act in ("human", "end")]
        page.screenshot(path=str(screenshot_dir / "widget-origin-refused-375.png"))
    finally:
        context.close()
    assert errors == []
    assert text == "Chat is not available on this site right now."
    assert offered == [False, False], "no 'Talk to a person' or 'End chat' when chat is unavailable"
    assert conversations(redis_url) == 0
