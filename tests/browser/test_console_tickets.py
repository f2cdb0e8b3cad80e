"""Tickets in the agent console, in real Chromium against `switchboard serve` and the fake model API: a
ticket the bot is unsure about sits in the queue beside a chat, marked as a ticket with its subject; the
agent opens it, sees the subject, the customer's words and how the reply travels, edits the bot's draft,
sends it and resolves the ticket. Screenshots at 1280 and 375 px."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from websockets.sync.client import connect

from support.runtime import Runtime
from support.testing.fake_anthropic import FakeAnthropic, Reply, last_user_text
from support.tickets.service import TicketIn
from tests.browser.test_console import PASSWORD, UI_TIMEOUT_MS, Customer, create_agent, status
from tests.integration.test_widget_ws import ORIGIN, start_server
from tests.redis_cluster import sync_redis_client_for
from tests.servers import ServerProcess
from tests.ticket_filing import file_ticket_sync, is_answer, is_triage, triage_reply, with_tickets_sync

SUBJECT = "URGENT: charged twice for one order"
BODY = "My card was charged twice for the same tent.\nPlease refund the second charge."
DRAFT = "I'm sorry about the double charge. The second one is a hold and drops off within 3 business days."
ADDED = " I have asked our payments team to release it today."
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fake_api(fake: FakeAnthropic) -> FakeAnthropic:
    """Triage is unsure of everything (people take it; the ticket's says urgent); drafts say DRAFT."""
    fake.reset()

    def rule(body: dict[str, Any]) -> Reply | None:
        if is_triage(body):
            urgent = "URGENT" in last_user_text(body)
            return triage_reply("urgent" if urgent else "normal", confidence=0.2)
        if is_answer(body):
            return Reply(text=DRAFT)
        return None

    fake.add_rule(rule)
    return fake


@pytest.fixture
def server(tmp_path: Path, fake_api: FakeAnthropic, redis_url: str) -> Iterator[ServerProcess]:
    client = sync_redis_client_for(redis_url)
    client.flushdb()
    db = f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"
    proc = start_server(tmp_path / "srv", fake_api, redis_url, SWITCHBOARD_DATABASE_URL=db)
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


def no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways ({width} px)"


def test_a_ticket_beside_a_chat_is_marked_answered_from_the_draft_and_resolved(
    browser: Browser, server: ServerProcess, fake_api: FakeAnthropic, redis_url: str, tmp_path: Path,
    screenshot_dir: Path,
) -> None:  # fmt: skip
    create_agent(server, "grace@example.com", "Grace")
    db = server.env["SWITCHBOARD_DATABASE_URL"]
    page = sign_in(browser, server, "grace@example.com", 1280)
    with contextlib.ExitStack() as stack:
        stack.callback(page.close)
        # A chat waits in the queue...
        resp = httpx.post(
            f"{server.url}/api/v1/widget/sessions",
            json={"widget_key": "pk_test", "visitor": {"name": "Bo", "email": "bo@example.com"}},
            headers={"Origin": ORIGIN},
        )
        url = f"ws://127.0.0.1:{server.port}/api/v1/widget/ws?token={resp.json()['token']}"
        customer = Customer(stack.enter_context(connect(url)))
        customer.say("Can you engrave our names on a wedding tent?")
        customer.until(status("queued"))
        expect(page.locator("#queue-list li", has_text="Bo")).to_have_count(1)

        # ...and a ticket joins it, marked as a ticket, titled by its subject.
        ticket = TicketIn(
            subject=SUBJECT, body=BODY, customer_email="ana@example.com", customer_name="Ana", channel="email"
        )
        ticket_id = file_ticket_sync(tmp_path / "filer", fake_api, redis_url, db, ticket)
        row = page.locator("#queue-list li", has_text=SUBJECT)
        expect(row.locator(".kind-badge")).to_have_text("Ticket · Email")
        expect(row.locator(".who")).to_have_text(SUBJECT)
        expect(row).to_contain_text("Ana")
        expect(page.locator("#queue-list li", has_text="Bo").locator(".kind-badge")).to_have_count(0)

        # Its view: the subject, the customer's words, the draft, and how a reply reaches the customer.
        row.get_by_role("button", name=f"Preview ticket from Ana: {SUBJECT}").click()
        expect(page.locator("#conv-title")).to_have_text(SUBJECT)
        expect(page.locator("#conv-kind")).to_have_text("Ticket · Email")
        expect(page.locator("#conv-via")).to_contain_text("e-mailed to ana@example.com, not shown live")
        first = page.locator("#transcript li[data-role=customer]").first
        expect(first).to_contain_text("refund the second charge")
        expect(first).not_to_contain_text(SUBJECT)
        expect(page.locator("#draft-text")).to_have_text(DRAFT)
        expect(page.get_by_role("button", name="Return to bot")).to_be_hidden()
        page.screenshot(path=str(screenshot_dir / "console-ticket-1280.png"))

        row.get_by_role("button", name=f"Claim ticket from Ana: {SUBJECT}").click()
        expect(page.locator("#conv-state")).to_have_text("With Grace")
        expect(page.locator("#mine-list li", has_text=SUBJECT)).to_have_count(1)
        expect(page.locator("#composer-via")).to_contain_text("ana@example.com")
        page.get_by_role("button", name="Edit", exact=True).click()
        composer = page.get_by_label("Reply to the customer")
        expect(composer).to_have_value(DRAFT)
        composer.press("End")
        composer.press("Enter")  # a new line in a ticket's answer, not a send
        composer.type(ADDED.strip())
        composer.press("Control+Enter")
        expect(page.locator("#transcript li[data-role=agent]")).to_contain_text(ADDED.strip())
        expect(composer).to_have_value("")
        page.screenshot(path=str(screenshot_dir / "console-ticket-answered.png"))

        # The same ticket on a phone.
        phone = sign_in(browser, server, "grace@example.com", 375)
        stack.callback(phone.close)
        phone.locator("#mine-list li", has_text=SUBJECT).get_by_role("button").click()
        expect(phone.locator("#conv-title")).to_have_text(SUBJECT)
        expect(phone.locator("#conv-via")).to_be_visible()
        no_sideways_scroll(phone)
        phone.screenshot(path=str(screenshot_dir / "console-ticket-375.png"), full_page=True)

        page.get_by_role("button", name="Resolve").click()
        expect(page.locator("#conv-banner")).to_contain_text("the ticket is closed")
        expect(page.locator("#mine-list li")).to_have_count(0)

        async def view(runtime: Runtime) -> dict[str, Any]:
            return await runtime.tickets.view(ticket_id, any_key=True)

        done = with_tickets_sync(tmp_path / "filer", fake_api, redis_url, db, view)
        assert done["status"] == "resolved"
        assert [(r["author"], r["text"]) for r in done["replies"]] == [("agent", f"{DRAFT}\n{ADDED.strip()}")]
        expect(page.locator("#queue-list li", has_text="Bo")).to_have_count(1)  # the chat still waits
