"""The widget's "Source" line under a bot answer, embedded on a company's page on another origin: shown
only where the admin enables it for the widget key, a link (new tab, no opener) when the cited document
has a public url, and never HTML, whatever the section title holds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.testing.fake_anthropic import FakeAnthropic
from tests.browser.test_widget import WAIT_MS, W, answer_with, bubbles, open_panel, send
from tests.browser.test_widget_cross_origin import StaticSite, page_on
from tests.redis_cluster import sync_redis_client_for
from tests.servers import ServerProcess

POLICY_URL = "https://shop.example/help/policy"
XSS_TITLE = '<img src=x onerror="window.__xss=1"> Refund payments'
POLICY = f"""---
url: {POLICY_URL}
---
# Northwind support policy

## Return window

Unused gear can be returned within 30 days of delivery.

## {XSS_TITLE}

Refunds are paid to the card used for the order.
"""
RETURNS_REPLY = "Unused gear can be returned within 30 days of delivery."


@pytest.fixture
def start(tmp_path: Path, fake: FakeAnthropic, redis_url: str) -> Iterator[Callable[[bool], tuple[Any, Any]]]:
    """Start Switchboard (showing sources for the widget key or not) and the company's site on another
    origin; returns (service, site)."""
    fake.reset()
    client = sync_redis_client_for(redis_url)
    client.flushdb()
    started: list[tuple[ServerProcess, StaticSite]] = []
    policy = tmp_path / "policy.md"
    policy.write_text(POLICY, encoding="utf-8")

    def run(show_sources: bool) -> tuple[ServerProcess, StaticSite]:
        service = ServerProcess(tmp_path / f"svc-{len(started)}")
        site = StaticSite(service.url)
        service.env.update(
            {
                "ANTHROPIC_API_KEY": "test-key",
                "ANTHROPIC_BASE_URL": fake.url,
                "SWITCHBOARD_REDIS_URL": redis_url,
                "SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / f'db-{len(started)}.sqlite3'}",
                "SWITCHBOARD_POLICY_PATH": str(policy),
                "SWITCHBOARD_WIDGET_KEYS": json.dumps({"pk_shop": [site.url]}),
                "SWITCHBOARD_WIDGET_SHOW_SOURCES": json.dumps(["pk_shop"] if show_sources else []),
                "SWITCHBOARD_LLM_REQUESTS_PER_MINUTE": "10000",
            }
        )
        service.start()
        started.append((service, site))
        return service, site

    try:
        yield run
    finally:
        for service, site in started:
            service.kill()
            site.close()
        client.flushdb()
        client.close()


def ask(page: Any, question: str, answers: int) -> None:
    send(page, question)
    page.wait_for_selector(f"{W} .msg[data-role=assistant][data-seq] >> nth={answers - 1}", timeout=WAIT_MS)


@pytest.mark.parametrize("width", [1280, 375])
def test_where_enabled_an_answer_shows_its_source_as_a_link_and_a_title_is_never_html(
    browser: Any,
    start: Callable[[bool], tuple[Any, Any]],
    fake: FakeAnthropic,
    screenshot_dir: Path,
    width: int,
) -> None:
    _, site = start(True)
    answer_with(fake, RETURNS_REPLY)
    context, page, errors = page_on(browser, site.url, width)
    try:
        open_panel(page)
        ask(page, "Can I return my tent within 30 days?", 1)
        link = page.locator(f"{W} .msg[data-role=assistant] .sources a.source")
        link.wait_for(timeout=WAIT_MS)
        assert link.text_content() == "Return window"
        assert (link.get_attribute("href"), link.get_attribute("target")) == (POLICY_URL, "_blank")
        assert "noopener" in (link.get_attribute("rel") or "").split()
        assert (
            page.locator(f"{W} .msg[data-role=assistant] .sources").first.inner_text()
            == "Source: Return window"
        )
        assert bubbles(page, "assistant") == [RETURNS_REPLY], "the answer's text is unchanged"
        page.screenshot(path=str(screenshot_dir / f"widget-source-{width}.png"))

        # A section title with markup is shown as text: no element, no script run.
        answer_with(fake, "Refunds are paid to the card used for the order.")
        ask(page, "How are refunds paid to my card?", 2)
        second = page.locator(f"{W} .msg[data-role=assistant] >> nth=1").locator(".sources a.source")
        second.wait_for(timeout=WAIT_MS)
        assert second.text_content() == XSS_TITLE
        assert page.locator(f"{W} .sources img").count() == 0
        assert page.evaluate("window.__xss") is None
    finally:
        context.close()
    assert errors == []


def test_where_not_enabled_no_source_is_shown(
    browser: Any, start: Callable[[bool], tuple[Any, Any]], fake: FakeAnthropic
) -> None:
    _, site = start(False)
    answer_with(fake, RETURNS_REPLY)
    context, page, errors = page_on(browser, site.url, 375)
    try:
        open_panel(page)
        ask(page, "Can I return my tent within 30 days?", 1)
        assert bubbles(page, "assistant") == [RETURNS_REPLY]
        assert page.locator(f"{W} .sources").count() == 0
    finally:
        context.close()
    assert errors == []
