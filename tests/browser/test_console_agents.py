"""The console's "Agents" screen (admins only) in real Chromium against ``switchboard serve``: list the
accounts, change name, capacity and role, deactivate (the agent's open console is signed out at once) and
reactivate; the last admin cannot demote themself; agents never see the screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from support.testing.fake_anthropic import FakeAnthropic
from tests.browser.test_console import PASSWORD, UI_TIMEOUT_MS, create_agent, sign_in
from tests.integration.test_widget_ws import start_server
from tests.redis_cluster import sync_redis_client_for
from tests.servers import ServerProcess

pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def server(tmp_path: Path, fake: FakeAnthropic, redis_url: str) -> Iterator[ServerProcess]:

    client = sync_redis_client_for(redis_url)
    client.flushdb()
    proc = start_server(tmp_path / "srv", fake, redis_url)
    try:
        yield proc
    finally:
        proc.kill()
        client.flushdb()
        client.close()


def row(page: Page, email: str) -> object:
    return page.locator("#agents-rows tr").filter(has_text=email)


def accounts(server: ServerProcess) -> dict[str, dict[str, object]]:
    token = httpx.post(
        f"{server.url}/api/v1/agent/login", json={"email": "root@example.com", "password": PASSWORD}
    ).json()["token"]
    listed = httpx.get(f"{server.url}/api/v1/admin/agents", headers={"Authorization": f"Bearer {token}"})
    return {a["email"]: a for a in listed.json()}


def test_an_admin_manages_agents_and_a_deactivated_agent_is_signed_out_at_once(
    browser: Browser, server: ServerProcess, screenshot_dir: Path
) -> None:
    create_agent(server, "root@example.com", "Root Admin", "admin")
    create_agent(server, "ada@example.com", "Ada Lovelace")
    create_agent(server, "bo@example.com", "Bo")
    ada = sign_in(browser, server, "ada@example.com")
    root = sign_in(browser, server, "root@example.com")
    try:
        expect(ada.locator("#view-agents")).to_be_hidden()  # agents never see the screen
        root.get_by_role("button", name="Agents").click()
        expect(root.locator("#agents-rows tr")).to_have_count(3)
        expect(root.locator("#agents-summary")).to_have_text("3 active · 0 inactive")
        expect(root.locator("#queue-list")).to_be_hidden()

        # Bo: a new name and capacity
        bo = row(root, "bo@example.com")
        bo.get_by_label("Name of bo@example.com").fill("Bo Li")
        bo.get_by_label("Capacity of Bo").fill("5")
        bo.get_by_role("button", name="Save changes to Bo").click()
        expect(row(root, "bo@example.com").get_by_label("Name of bo@example.com")).to_have_value("Bo Li")
        expect(
            row(root, "bo@example.com").get_by_role("button", name="Save changes to Bo Li")
        ).to_be_disabled()
        assert {k: accounts(server)["bo@example.com"][k] for k in ("name", "capacity")} == {
            "name": "Bo Li", "capacity": 5,
        }  # fmt: skip

        # Ada, signed in elsewhere, is deactivated: her console is signed out at once
        root.once("dialog", lambda dialog: dialog.accept())
        row(root, "ada@example.com").get_by_role("button", name="Deactivate Ada Lovelace").click()
        expect(row(root, "ada@example.com").locator(".agent-status")).to_have_text("Inactive")
        expect(root.locator("#agents-summary")).to_have_text("2 active · 1 inactive")
        expect(ada.locator("#login-error")).to_have_text(
            "An admin changed or deactivated your account. Sign in again."
        )
        expect(ada.locator("#console-view")).to_be_hidden()
        root.screenshot(path=str(screenshot_dir / "console-agents.png"))

        # The only admin cannot make themself an agent: the server's reason is shown, nothing changes
        me = row(root, "root@example.com")
        me.get_by_label("Role of Root Admin").select_option("agent")
        me.get_by_role("button", name="Save changes to Root Admin").click()
        expect(root.locator("#alert")).to_contain_text("no active admin")
        expect(row(root, "root@example.com").get_by_label("Role of Root Admin")).to_have_value("admin")

        # Reactivated, Ada can sign in again
        row(root, "ada@example.com").get_by_role("button", name="Reactivate Ada Lovelace").click()
        expect(row(root, "ada@example.com").locator(".agent-status")).to_have_text("Active")
        ada.get_by_label("Email").fill("ada@example.com")
        ada.get_by_label("Password").fill(PASSWORD)
        ada.get_by_role("button", name="Sign in").click()
        expect(ada.locator("#connection")).to_have_attribute("data-state", "open")

        # back to conversations
        root.get_by_role("button", name="Conversations").click()
        expect(root.locator("#queue-list")).to_be_attached()
        expect(root.locator("#agents-view")).to_be_hidden()
    finally:
        ada.close()
        root.close()


def test_the_agents_screen_fits_a_phone(
    browser: Browser, server: ServerProcess, screenshot_dir: Path
) -> None:
    create_agent(server, "root@example.com", "Root Admin", "admin")
    create_agent(server, "ada@example.com", "Ada Lovelace")
    page = browser.new_page(viewport={"width": 375, "height": 760})
    page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        page.goto(f"{server.url}/console/")
        page.get_by_label("Email").fill("root@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Agents").click()
        expect(page.locator("#agents-rows tr")).to_have_count(2)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page scrolls sideways ({width} px)"
        box = (
            row(page, "ada@example.com").get_by_role("button", name="Deactivate Ada Lovelace").bounding_box()
        )
        assert box is not None
        assert box["x"] + box["width"] <= 375
        page.screenshot(path=str(screenshot_dir / "console-agents-375.png"), full_page=True)
    finally:
        page.close()
