"""Presence and "nobody can answer" in real Chromium: the widget on a company's page served from another
origin than Switchboard tells a waiting customer that nobody can answer and takes an e-mail address; agents
set their presence in the console header and see each other's in the Team list, live."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, Page, expect

from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests.browser.test_console import PASSWORD, UI_TIMEOUT_MS, create_agent
from tests.browser.test_widget import WAIT_MS, W, open_panel, send
from tests.browser.test_widget_cross_origin import StaticSite, page_on
from tests.integration.test_presence_email import Inbox
from tests.integration.test_widget_ws import is_answer, is_triage, triage_reply
from tests.redis_cluster import sync_redis_client_for
from tests.servers import ServerProcess, free_port

pytestmark = pytest.mark.timeout(150)
AWAY_AFTER_S = 1.5


@pytest.fixture
def setup(tmp_path: Path, fake: FakeAnthropic, redis_url: str) -> Iterator[tuple[ServerProcess, StaticSite]]:
    """Switchboard with SMTP configured (a real local server), and the company's site on another port."""
    fake.reset()
    fake.add_rule(lambda body: triage_reply(wants_human=True) if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text="A draft for the agent.") if is_answer(body) else None)
    client = sync_redis_client_for(redis_url)
    client.flushdb()
    smtp_port = free_port()
    smtp = Controller(Inbox(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    service = ServerProcess(tmp_path / "svc")
    site = StaticSite(service.url)
    service.env.update(
        {
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": fake.url,
            "SWITCHBOARD_REDIS_URL": redis_url,
            "SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}",
            "SWITCHBOARD_WIDGET_KEYS": json.dumps({"pk_shop": [site.url]}),
            "SWITCHBOARD_LLM_REQUESTS_PER_MINUTE": "10000",
            "SWITCHBOARD_HANDOFF_LEASE_S": "1.5",
            "SWITCHBOARD_HANDOFF_AWAY_AFTER_S": str(AWAY_AFTER_S),
            "SWITCHBOARD_SMTP_HOST": "127.0.0.1",
            "SWITCHBOARD_SMTP_PORT": str(smtp_port),
            "SWITCHBOARD_SMTP_SECURITY": "none",
        }
    )
    service.start()
    try:
        yield service, site
    finally:
        service.kill()
        site.close()
        smtp.stop()
        client.flushdb()
        client.close()


@pytest.mark.parametrize("width", [1280, 375])
def test_with_nobody_to_answer_the_widget_says_so_and_takes_an_email_address(
    browser: Any, setup: tuple[ServerProcess, StaticSite], screenshot_dir: Path, width: int
) -> None:
    service, site = setup
    context, page, errors = page_on(browser, site.url, width)
    try:
        assert site.url != service.url  # the widget runs on the company's origin, not Switchboard's
        open_panel(page)
        send(page, "My tent pole snapped on day one. Can someone help?")
        page.wait_for_selector(f"{W} .state[data-state=queued]", timeout=WAIT_MS)
        state = page.locator(f"{W} .state").text_content() or ""
        form = page.locator(f"{W} form.contact")
        expect(form).to_be_visible(timeout=WAIT_MS)
        offer = form.locator(".offer").text_content()
        page.locator(f"{W} #sb-email").fill("ana@example")  # HTML accepts it; the server wants a TLD
        form.locator("button").click()
        error = form.locator(".err")
        expect(error).to_be_visible(timeout=WAIT_MS)
        refused = error.text_content()
        page.locator(f"{W} #sb-email").fill("ana.lopez@example.com")
        expect(error).to_be_hidden()  # typing again clears the complaint
        page.screenshot(path=str(screenshot_dir / f"widget-no-agents-{width}.png"))
        form.locator("button").click()
        expect(form.locator(".offer")).to_contain_text("ana.lopez@example.com", timeout=WAIT_MS)
        saved = form.locator(".offer").text_content()
        input_hidden = not page.locator(f"{W} #sb-email").is_visible()
        page.screenshot(path=str(screenshot_dir / f"widget-email-saved-{width}.png"))
    finally:
        context.close()
    assert errors == []
    assert state.startswith("Waiting for a person")
    assert "No one can answer right now" in state
    assert offer == "Leave your e-mail address and we'll send the answer there too."
    assert refused == "Please enter a valid e-mail address, such as name@example.com."
    assert (
        saved
        == "Thanks! We'll e-mail the answer to ana.lopez@example.com and show it here when you come back."
    )
    assert input_hidden


def sign_in(browser: Browser, server: ServerProcess, email: str, width: int) -> Page:
    page = browser.new_page(viewport={"width": width, "height": 800 if width > 700 else 760})
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(f"{server.url}/console/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    return page


def member(page: Page, name: str) -> Any:
    return page.locator("#team-list .team-member").filter(has_text=name)


@pytest.mark.parametrize("width", [1280, 375])
def test_agents_set_their_presence_and_see_each_others_live(
    browser: Browser, setup: tuple[ServerProcess, StaticSite], screenshot_dir: Path, width: int
) -> None:
    service, _site = setup
    create_agent(service, "ada@example.com", "Ada Lovelace")
    create_agent(service, "bo@example.com", "Bo Chen")
    ada = sign_in(browser, service, "ada@example.com", width)
    try:
        expect(ada.locator("#presence-select")).to_have_value("online")  # opening the console: online
        expect(member(ada, "Ada Lovelace")).to_have_attribute("data-presence", "online")
        expect(member(ada, "Bo Chen")).to_have_attribute("data-presence", "offline")
        bo = sign_in(browser, service, "bo@example.com", width)
        try:
            expect(member(ada, "Bo Chen")).to_have_attribute("data-presence", "online")  # live, no reload
            expect(member(bo, "Ada Lovelace")).to_have_attribute("data-presence", "online")
            ada.get_by_label("My presence").select_option("away")
            expect(ada.locator("#presence-control")).to_have_attribute("data-presence", "away")
            expect(member(bo, "Ada Lovelace")).to_have_attribute("data-presence", "away")
            expect(member(bo, "Ada Lovelace")).to_contain_text("Away")
            expect(bo.locator("#team-count")).to_have_text("1 online")
            bo.screenshot(path=str(screenshot_dir / f"console-presence-{width}.png"), full_page=width < 700)
        finally:
            bo.close()
        # Bo's console is gone: after the grace period Ada sees him away, set automatically. The live frame
        # shows it within about 2 s; once in a loaded parallel run it did not come within 15 s (not explained
        # yet), so the wait covers the list's 30 s refresh too, which reads the same presence from the server.
        expect(member(ada, "Bo Chen")).to_have_attribute("data-presence", "away", timeout=35_000)
        expect(member(ada, "Bo Chen")).to_contain_text("console closed")
        ada.get_by_label("My presence").select_option("online")
        expect(member(ada, "Ada Lovelace")).to_have_attribute("data-presence", "online")
        width_px = ada.evaluate("document.documentElement.scrollWidth")
    finally:
        ada.close()
    assert width_px <= width, f"the console scrolls sideways ({width_px} px)"
