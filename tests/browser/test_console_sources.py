"""An answer's ground in the agent console: the sections each bot answer cites, with their cited text, and
an answer that cites nothing handed off as `ungrounded` (real Chromium, `switchboard serve`, the fake
model API's citations)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from support.testing.fake_anthropic import FakeAnthropic
from tests.browser.test_console import (
    CustomerFactory,
    clean_redis,
    create_agent,
    customers,
    fake_api,
    server,
    sign_in,
    status,
)
from tests.integration.test_widget_ws import is_triage, triage_reply
from tests.servers import ServerProcess

__all__ = ["clean_redis", "customers", "fake_api", "server"]  # fixtures used by name

pytestmark = pytest.mark.timeout(150)


@pytest.mark.parametrize("width", [1280, 375])
def test_agents_see_the_sections_an_answer_cites_and_why_an_ungrounded_one_came_to_them(
    browser: Browser,
    server: ServerProcess,
    fake_api: FakeAnthropic,
    customers: CustomerFactory,
    screenshot_dir: Path,
    width: int,
) -> None:
    fake_api.add_rule(lambda body: triage_reply() if is_triage(body) else None)
    create_agent(server, "grace@example.com", "Grace")
    customer, _ = customers()
    customer.say("How many days do I have to return my tent?")
    answer = customer.until(lambda f: f["type"] == "message" and f["role"] == "assistant")
    assert "sources" not in answer, "this widget key does not show sources: its customers get none"
    customer.say("What is the airspeed velocity of an unladen swallow?")  # the policy does not cover it
    assert customer.until(status("queued"))["reason"] == "ungrounded"

    page = sign_in(browser, server, "grace@example.com")
    try:
        page.set_viewport_size({"width": width, "height": 800 if width > 500 else 740})
        row = page.locator("#queue-list li", has_text="Ada")
        expect(row).to_contain_text("Bot answer not grounded in the policy")
        row.get_by_role("button", name="Preview conversation with Ada").click()
        expect(page.locator("#conv-reason")).to_have_text("Bot answer not grounded in the policy")
        expect(page.locator("#draft-text")).to_contain_text("swallow")  # the ungrounded draft, for checking

        sources = page.locator("#transcript li[data-role=assistant] details.sources")
        expect(sources).to_have_count(1)
        expect(sources.locator("summary")).to_have_text("Sources: Return window")
        sources.locator("summary").click()
        expect(sources.locator("li .source-title")).to_have_text("sample_policy — Return window")
        expect(sources.locator("li q")).to_contain_text("within 30 days of delivery")
        sources.scroll_into_view_if_needed()
        page.screenshot(path=str(screenshot_dir / f"console-sources-{width}.png"))
    finally:
        page.close()
