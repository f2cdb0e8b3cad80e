"""Saved replies and the audit log in real Chromium: an agent types ``/`` and a shortcut in the composer,
picks the team's reply by keyboard, gets it filled in for the customer and sends it; an admin opens the
Audit screen and sees that claim. One server for the module."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from websockets.sync.client import connect

from support.testing.fake_anthropic import FakeAnthropic
from tests.browser.test_console import (
    PASSWORD,
    Customer,
    create_agent,
    hands_off_with_a_draft,
    sign_in,
    status,
)
from tests.integration.test_widget_ws import ORIGIN, start_server
from tests.redis_cluster import sync_redis_client_for
from tests.servers import ServerProcess, agent_auth

pytestmark = pytest.mark.timeout(120)
GREETING = "Hi {{customer.first_name}}, this is {{agent.first_name}}. Your refund is on its way."


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeAnthropic, redis_url: str
) -> Iterator[ServerProcess]:
    client = sync_redis_client_for(redis_url)
    client.flushdb()
    fake.reset()
    proc = start_server(tmp_path_factory.mktemp("replies"), fake, redis_url)
    try:
        create_agent(proc, "root@example.com", "Root", role="admin")
        root = agent_auth(proc, "root@example.com", PASSWORD)
        ada = {"email": "ada@example.com", "password": PASSWORD, "name": "Ada Lovelace"}
        assert httpx.post(f"{proc.url}/api/v1/admin/agents", json=ada, headers=root).status_code == 201
        for shortcut, title, text in (
            ("/greet", "Greeting with refund", GREETING),
            ("/hours", "Opening hours", "We answer from 9 to 17, Monday to Friday."),
        ):
            made = httpx.post(
                f"{proc.url}/api/v1/agent/saved-replies",
                json={"title": title, "shortcut": shortcut, "text": text, "scope": "team"}, headers=root,
            )  # fmt: skip
            assert made.status_code == 201, made.text
        yield proc
    finally:
        proc.kill()
        client.flushdb()
        client.close()


@contextlib.contextmanager
def waiting_customer(server: ServerProcess, name: str, says: str = "") -> Iterator[tuple[Customer, str]]:
    """A customer who asked for a person (or said ``says``, which the bot hands off) and waits in the
    queue (their socket closed afterwards)."""
    session = httpx.post(
        f"{server.url}/api/v1/widget/sessions",
        json={"widget_key": "pk_test", "visitor": {"name": name}}, headers={"Origin": ORIGIN},
    ).json()  # fmt: skip
    with connect(f"ws://127.0.0.1:{server.port}/api/v1/widget/ws?token={session['token']}") as ws:
        customer = Customer(ws)
        if says:
            customer.say(says)
        else:
            customer.send({"type": "request_human"})
        customer.until(status("queued"))
        yield customer, session["conversation_id"]


def fits_a_phone(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways on a phone ({width} px wide)"


def claim_in_console(page: Page, name: str) -> None:
    page.locator("#queue-list li", has_text=name).get_by_role(
        "button", name=f"Claim conversation with {name}"
    ).click()
    expect(page.locator("#conv-state")).to_have_text("With Ada Lovelace")


def test_an_agent_inserts_a_saved_reply_by_shortcut_and_keyboard_and_sends_it(
    browser: Browser, server: ServerProcess, screenshot_dir: Path
) -> None:
    with waiting_customer(server, "Grace Hopper") as (customer, _cid):
        _insert_and_send(browser, server, screenshot_dir, customer)


def _insert_and_send(
    browser: Browser, server: ServerProcess, screenshot_dir: Path, customer: Customer
) -> None:
    page = sign_in(browser, server, "ada@example.com")
    try:
        claim_in_console(page, "Grace Hopper")
        composer = page.get_by_label("Reply to the customer")
        composer.focus()
        composer.press_sequentially("/")
        options = page.locator("#replies-options [role=option]")
        expect(options).to_have_count(2)  # every reply, at "/"
        composer.press_sequentially("h")
        expect(options).to_have_count(1)  # "/h": only /hours
        composer.press("Backspace")
        composer.press_sequentially("g")
        expect(options).to_have_count(1)
        expect(options.first).to_contain_text("/greet")
        expect(options.first).to_have_attribute("aria-selected", "true")
        expect(composer).to_have_attribute("aria-activedescendant", "reply-option-0")
        page.screenshot(path=screenshot_dir / "console-replies-picker-1280.png")
        composer.press("Enter")  # inserts (the picker takes Enter while it is open): nothing is sent yet
        filled = "Hi Grace, this is Ada. Your refund is on its way."
        expect(composer).to_have_value(filled)
        expect(page.locator("#replies-picker")).to_be_hidden()
        composer.press("Enter")  # now Enter sends
        got = customer.until(lambda f: f["type"] == "message" and f.get("role") == "agent")
        assert got["text"] == filled
        expect(composer).to_have_value("")
        # The button opens the picker too; Escape closes it and leaves the composer as it was.
        page.get_by_role("button", name="Saved replies").click()
        expect(options).to_have_count(2)
        composer.press("ArrowDown")
        expect(options.nth(1)).to_have_attribute("aria-selected", "true")
        composer.press("Escape")
        expect(page.locator("#replies-picker")).to_be_hidden()
        expect(composer).to_have_value("")
        page.set_viewport_size({"width": 375, "height": 740})
        composer.press_sequentially("/")
        expect(options).to_have_count(2)
        fits_a_phone(page)
        box = page.locator("#replies-picker").bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 375
        page.screenshot(path=screenshot_dir / "console-replies-picker-375.png")
    finally:
        page.close()


def test_an_agent_keeps_a_personal_reply_on_the_manage_screen(
    browser: Browser, server: ServerProcess, screenshot_dir: Path
) -> None:
    page = sign_in(browser, server, "ada@example.com")
    try:
        page.goto(f"{server.url}/console/replies.html")
        expect(page.locator("#rp-list li")).to_have_count(2)
        expect(page.locator("#rp-scope-label")).to_be_hidden()  # an agent adds only their own
        expect(page.get_by_role("button", name="Edit /greet")).to_have_count(0)  # the team's: read only
        page.get_by_label("Title").fill("Sizing")
        page.get_by_label("Shortcut").fill("/size")
        page.get_by_label("Text", exact=True).fill("Hi {{customer.nickname}}")
        page.get_by_role("button", name="Add reply").click()
        expect(page.locator("#rp-error")).to_contain_text("unknown placeholder {{customer.nickname}}")
        page.get_by_label("Text", exact=True).fill("Hi {{customer.name}}, our tents run large: size down.")
        page.get_by_role("button", name="Add reply").click()
        expect(page.locator("#rp-list li")).to_have_count(3)
        expect(page.get_by_role("button", name="Edit /size")).to_be_visible()
        page.screenshot(path=screenshot_dir / "console-replies-1280.png", full_page=True)
        page.set_viewport_size({"width": 375, "height": 740})
        fits_a_phone(page)
        page.screenshot(path=screenshot_dir / "console-replies-375.png", full_page=True)
    finally:
        page.close()


def test_an_admin_sees_the_claim_on_the_audit_screen(
    browser: Browser, server: ServerProcess, screenshot_dir: Path
) -> None:
    with waiting_customer(server, "Linus") as (_customer, cid):
        ada = agent_auth(server, "ada@example.com", PASSWORD)
        claimed = httpx.post(f"{server.url}/api/v1/agent/conversations/{cid}/claim", headers=ada)
        assert claimed.status_code == 200
    page = sign_in(browser, server, "root@example.com")
    try:
        page.get_by_role("link", name="Audit").click()
        nav = page.get_by_role("navigation", name="Admin screens")
        expect(nav.get_by_role("link")).to_have_text(
            ["Console", "Knowledge", "Evaluate", "Examples", "Hours", "Teams", "Audit", "Reports"]
        )
        expect(nav.locator("[aria-current=page]")).to_have_text("Audit")
        claim = page.locator("#au-rows tr[data-action='conversation.claimed']", has_text=cid)
        expect(claim).to_have_count(1)
        expect(claim).to_contain_text("Ada Lovelace")
        page.get_by_label("Action").select_option("saved_reply.")
        page.get_by_role("button", name="Filter").click()
        expect(
            page.locator("#au-rows tr[data-action='saved_reply.created']", has_text="/greet")
        ).to_have_count(1)
        expect(page.locator("#au-rows tr:not([data-action^='saved_reply.'])")).to_have_count(0)
        page.get_by_label("Action").select_option("")
        page.get_by_role("button", name="Filter").click()
        expect(claim).to_have_count(1)
        page.screenshot(path=screenshot_dir / "console-audit-1280.png", full_page=True)
        page.set_viewport_size({"width": 375, "height": 740})
        fits_a_phone(page)
        page.screenshot(path=screenshot_dir / "console-audit-375.png", full_page=True)
    finally:
        page.close()


def test_a_suggested_reply_is_saved_as_the_agents_own_and_offered_by_the_picker(
    browser: Browser, server: ServerProcess, fake: FakeAnthropic
) -> None:
    hands_off_with_a_draft(fake)
    api = f"{server.url}/api/v1/agent"
    ada = agent_auth(server, "ada@example.com", PASSWORD)
    answer = "Yes: we match the price of any local outdoor store, just send us the link."
    with waiting_customer(server, "Cy", says="Do you price match other stores?") as (_first, first_id):
        assert httpx.post(f"{api}/conversations/{first_id}/claim", headers=ada).status_code == 200
        sent = httpx.post(f"{api}/conversations/{first_id}/messages", headers=ada, json={"text": answer})
        assert sent.status_code == 201, sent.text  # an (auto-approved) example from now on
        assert httpx.post(f"{api}/conversations/{first_id}/resolve", headers=ada).status_code == 200
    with waiting_customer(server, "Di", says="Will you price match a store in town?"):
        page = sign_in(browser, server, "ada@example.com")
        try:
            claim_in_console(page, "Di")
            canned = page.locator("#canned-list li", has_text="Do you price match other stores?")
            canned.get_by_role("button", name="Save as reply").click()
            saved = canned.get_by_role("button", name=re.compile(r"^Saved as "))
            expect(saved).to_be_disabled()
            shortcut = (saved.text_content() or "").removeprefix("Saved as ")
            composer = page.get_by_label("Reply to the customer")
            composer.focus()
            composer.press_sequentially(shortcut)
            expect(page.locator("#replies-options [role=option]")).to_have_count(1)
            composer.press("Tab")
            expect(composer).to_have_value(answer)
        finally:
            page.close()
