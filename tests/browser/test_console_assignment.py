"""Teams and automatic assignment in real Chromium: an admin sets the default team's policy and SLA target
on the Teams screen; an agent whose console is open is given a handed-off conversation without claiming it,
and its row in Mine shows the first-reply SLA countdown."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from support.testing.fake_anthropic import FakeAnthropic
from tests.browser.test_console import (
    PASSWORD,
    UI_TIMEOUT_MS,
    CustomerFactory,
    create_agent,
    customers,  # noqa: F401 - a fixture
    hands_off_with_a_draft,
    status,
)
from tests.integration.test_widget_ws import start_server
from tests.redis_cluster import sync_redis_client_for
from tests.servers import ServerProcess, agent_auth

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server(tmp_path: Path, fake: FakeAnthropic, redis_url: str) -> Iterator[ServerProcess]:
    fake.reset()
    hands_off_with_a_draft(fake)
    client = sync_redis_client_for(redis_url)
    client.flushdb()
    proc = start_server(tmp_path / "srv", fake, redis_url)
    try:
        yield proc
    finally:
        proc.kill()
        client.flushdb()
        client.close()


def sign_in(browser: Browser, server: ServerProcess, email: str, width: int) -> Page:
    page = browser.new_page(viewport={"width": width, "height": 800 if width > 700 else 760})
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(f"{server.url}/console/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    return page


def test_an_admin_turns_on_assignment_and_an_online_agent_gets_a_conversation_with_its_sla_chip(
    browser: Any,
    server: ServerProcess,
    customers: CustomerFactory,  # noqa: F811 - the imported fixture
    screenshot_dir: Path,
) -> None:
    create_agent(server, "root@example.com", "Root", "admin")
    create_agent(server, "ada@example.com", "Ada")
    errors: list[str] = []
    root = sign_in(browser, server, "root@example.com", 1280)
    root.on("pageerror", lambda exc: errors.append(str(exc)))
    root.get_by_role("link", name="Teams").click()
    card = root.locator("article[data-team=default]")
    expect(card.locator("select")).to_have_value("manual")
    card.get_by_label("Assignment").select_option("least_busy")
    card.get_by_label("First reply target (s)").fill("120")
    card.get_by_role("button", name="Save").click()
    expect(root.locator("#announcer")).to_have_text("Team Support saved")
    root.screenshot(path=str(screenshot_dir / "console-assignment-teams-1280.png"), full_page=True)
    admin = agent_auth(server, "root@example.com", PASSWORD)
    (team,) = httpx.get(f"{server.url}/api/v1/admin/teams", headers=admin).json()
    assert (team["assignment"], team["sla"]["first_reply_s"]) == ("least_busy", 120)
    root.set_viewport_size({"width": 375, "height": 760})
    root.screenshot(path=str(screenshot_dir / "console-assignment-teams-375.png"), full_page=True)
    root.close()
    # Root goes offline (a closed console alone counts as online for the away grace period).
    httpx.put(f"{server.url}/api/v1/agent/presence", headers=admin, json={"status": "offline"})

    for held, width in enumerate((1280, 375), start=1):
        # Ada is the only agent online: she is given each handoff.
        page = sign_in(browser, server, "ada@example.com", width)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        customer, conversation_id = customers(name=f"Customer{width}")
        customer.say("My tent pole snapped and I want to talk to a person.")
        customer.until(status("agent"))  # assigned with nobody clicking Claim
        row = page.locator(f"#mine-list [data-conversation='{conversation_id}']")
        expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
        chip = row.locator(".sla-chip")
        expect(chip).to_have_text(re.compile(r"^Reply 1:[0-5]\d$"))  # of 2:00, counting down
        # The Team list shows her new load at once, not at its next 30 s refresh.
        expect(page.locator("#team-list li", has_text="Ada")).to_contain_text(f"{held}/3")
        page.screenshot(path=str(screenshot_dir / f"console-assignment-{width}.png"))
        page.close()
    assert errors == []
