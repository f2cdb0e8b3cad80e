"""The agent console in real Chromium against ``switchboard serve`` subprocesses and the fake model API.

A customer is a real WebSocket client (the sync ``websockets`` client, because Playwright's sync API runs
these tests outside an event loop); the agent is a person clicking and typing in the console.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect
from websockets.sync.client import ClientConnection, connect

from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests import servers
from tests.integration.test_widget_ws import ORIGIN, is_answer, is_triage, start_server, triage_reply
from tests.redis_cluster import sync_redis_client_for
from tests.servers import ServerProcess

RECV_TIMEOUT_S = 15.0
UI_TIMEOUT_MS = 15_000
PASSWORD = "correct horse battery staple"
DRAFT = "I'm sorry the tent let you down. We can refund it in full once it is back with us."
pytestmark = pytest.mark.timeout(150)  # two servers' start-up plus a whole agent shift per test


@pytest.fixture
def fake_api(fake: FakeAnthropic) -> FakeAnthropic:
    fake.reset()
    return fake


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    """The session's Redis, flushed before and after (sync client: these tests have no event loop)."""
    client = sync_redis_client_for(redis_url)
    client.flushdb()
    try:
        yield redis_url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def server(tmp_path: Path, fake_api: FakeAnthropic, clean_redis: str) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path / "srv", fake_api, clean_redis)
    try:
        yield proc
    finally:
        proc.kill()


def create_agent(server: ServerProcess, email: str, name: str, role: str = "agent") -> None:
    """``switchboard create-agent`` with the server's own configuration."""
    servers.create_agent(server.env, server.data_dir, email, PASSWORD, name, role)


class Customer:
    """A widget-protocol client: the person on the other side of the console."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._sent = 0

    def send(self, frame: dict[str, Any]) -> None:
        self.ws.send(json.dumps(frame))

    def say(self, text: str) -> None:
        self._sent += 1
        self.send({"type": "message", "client_id": f"c-{self._sent}", "text": text})

    def until(self, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Read frames (keeping them all) until one matches ``pred``; return it."""
        deadline = time.monotonic() + RECV_TIMEOUT_S
        while True:
            frame: dict[str, Any] = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.frames.append(frame)
            if pred(frame):
                return frame


CustomerFactory = Callable[..., tuple[Customer, str]]


@pytest.fixture
def customers(server: ServerProcess) -> Iterator[CustomerFactory]:
    """Open widget sessions with a connected customer socket each; all closed after the test."""
    with contextlib.ExitStack() as stack:

        def open_customer(name: str = "Ada", via: ServerProcess | None = None) -> tuple[Customer, str]:
            """A customer connected to ``via`` (default: the test's server)."""
            on = via or server
            visitor = {"name": name, "email": f"{name.lower()}@example.com"}
            resp = httpx.post(
                f"{on.url}/api/v1/widget/sessions",
                json={"widget_key": "pk_test", "visitor": visitor},
                headers={"Origin": ORIGIN},
            )
            assert resp.status_code == 201, resp.text
            session = resp.json()
            url = f"ws://127.0.0.1:{on.port}/api/v1/widget/ws?token={session['token']}"
            return Customer(stack.enter_context(connect(url))), session["conversation_id"]

        yield open_customer


def status(state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f["type"] == "status" and f["state"] == state


def hands_off_with_a_draft(fake: FakeAnthropic) -> None:
    """Triage is unsure (so a human takes over) while the answer model still writes a draft."""
    fake.add_rule(lambda body: triage_reply(confidence=0.2) if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text=DRAFT) if is_answer(body) else None)


def sign_in(browser: Browser, server: ServerProcess, email: str) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(f"{server.url}/console/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    return page


def test_an_agent_takes_over_edits_the_draft_chats_live_notes_and_resolves(
    browser: Browser,
    server: ServerProcess,
    fake_api: FakeAnthropic,
    customers: CustomerFactory,
    screenshot_dir: Path,
) -> None:
    hands_off_with_a_draft(fake_api)
    create_agent(server, "grace@example.com", "Grace")
    page = sign_in(browser, server, "grace@example.com")
    try:
        expect(page.locator("#me")).to_contain_text("Grace")
        expect(page.locator("#queue-empty")).to_be_visible()

        customer, conversation_id = customers()
        customer.say("I want compensation for my ruined trip")
        queued = customer.until(status("queued"))
        assert queued["queue_position"] == 1

        # The handoff shows up in the queue live, with why, how long, and what the customer said.
        row = page.locator("#queue-list li", has_text="Ada")
        expect(row).to_contain_text("Bot not confident enough to answer")
        expect(row).to_contain_text("I want compensation for my ruined trip")
        expect(row.locator("[data-since]")).to_have_text(re.compile(r"^\d+s$"))
        # Opening it first is a read-only preview that stays live.
        row.get_by_role("button", name="Preview conversation with Ada").click()
        expect(page.locator("#conv-state")).to_have_text("Queued #1")
        expect(page.get_by_role("button", name="Claim", exact=True)).to_be_visible()
        expect(page.get_by_label("Reply to the customer")).to_be_disabled()
        expect(page.locator("#draft-text")).to_have_text(DRAFT)
        customer.say("The tent leaked on the first night")
        expect(page.locator("#transcript li[data-role=customer]").last).to_contain_text("leaked")
        page.screenshot(path=str(screenshot_dir / "console-queue.png"))

        row.get_by_role("button", name="Claim conversation with Ada").click()
        expect(page.locator("#conv-state")).to_have_text("With Grace")
        assert customer.until(status("agent"))["agent"] == {"name": "Grace"}
        expect(page.locator("#queue-empty")).to_be_visible()
        expect(page.locator("#mine-list li", has_text="Ada")).to_have_count(1)

        # The packet: reason in words, triage chips, identity, transcript, the bot's draft, no scrolling.
        expect(page.locator("#conv-reason")).to_have_text("Bot not confident enough to answer")
        chips = page.locator("#triage-chips")
        expect(chips).to_contain_text("Intent: Returns refunds")
        expect(chips).to_contain_text("Confidence: 20%")
        expect(page.locator("#conv-customer")).to_contain_text("ada@example.com")
        expect(page.locator("#transcript li[data-role=customer]")).to_contain_text(
            ["I want compensation for my ruined trip", "The tent leaked on the first night"]
        )
        expect(page.locator("#draft-text")).to_have_text(DRAFT)
        for region in ("#conv-reason", "#triage-chips", "#draft-text"):
            assert page.locator(region).is_visible()
            box = page.locator(region).bounding_box()
            assert box is not None
            assert box["y"] + box["height"] <= 800, f"{region} is below the fold"
        page.screenshot(path=str(screenshot_dir / "console-claimed.png"))

        # Edit the draft and send it: the customer receives the agent's words under the agent's name.
        page.get_by_role("button", name="Edit", exact=True).click()
        composer = page.get_by_label("Reply to the customer")
        expect(composer).to_have_value(DRAFT)
        expect(page.locator("#composer-mode")).to_have_text("Editing the bot's draft")
        composer.press("End")
        composer.type(" I have started the refund.")
        assert customer.until(lambda f: f["type"] == "typing") == {"type": "typing", "role": "agent"}
        composer.press("Enter")
        sent = customer.until(lambda f: f["type"] == "message" and f["role"] == "agent")
        assert sent["text"] == DRAFT + " I have started the refund."
        assert sent["author"] == {"name": "Grace"}
        expect(composer).to_have_value("")
        expect(page.locator("#transcript li[data-role=agent]")).to_contain_text("I have started the refund.")

        # The customer types and writes: both show up live.
        customer.send({"type": "typing"})
        expect(page.locator("#customer-typing")).to_be_visible()
        customer.say("Thanks! How long does the refund take?")
        expect(page.locator("#transcript li[data-role=customer]").last).to_contain_text(
            "How long does the refund take?"
        )
        expect(page.locator("#customer-typing")).to_be_hidden()
        expect(page.locator("#announcer")).to_contain_text("How long does the refund take?")

        # An internal note stays with the agents.
        note = "Tent was from batch 7, known seam issue"
        page.get_by_label("New internal note").fill(note)
        page.get_by_role("button", name="Add note").click()
        expect(page.locator("#notes-list li")).to_have_count(1)
        expect(page.locator("#notes-list li")).to_contain_text(note)
        page.screenshot(path=str(screenshot_dir / "console-conversation.png"))

        page.get_by_role("button", name="Resolve").click()
        customer.until(status("resolved"))
        assert customer.until(lambda f: f["type"] != "typing") == {"type": "rating_request"}
        expect(page.locator("#conv-banner")).to_contain_text("Resolved")
        expect(page.locator("#mine-list li")).to_have_count(0)
        expect(page.locator("#send")).to_be_disabled()
        assert note not in json.dumps(customer.frames)
        assert "SECRET" not in json.dumps(customer.frames)
        token = page.evaluate("sessionStorage.getItem('switchboard.agent.token')")
        packet = httpx.get(
            f"{server.url}/api/v1/agent/conversations/{conversation_id}",
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert packet["state"] == "resolved"
        assert [n["text"] for n in packet["notes"]] == [note]
    finally:
        page.close()


def test_a_transfer_reaches_the_other_agent_who_returns_it_to_the_bot(
    browser: Browser,
    server: ServerProcess,
    fake_api: FakeAnthropic,
    customers: CustomerFactory,
    screenshot_dir: Path,
) -> None:
    hands_off_with_a_draft(fake_api)
    fake_api.set_latency(ttft_s=4.0, model="claude-sonnet-4-6")  # the draft comes after the handoff
    create_agent(server, "grace@example.com", "Grace")
    create_agent(server, "linus@example.com", "Linus")
    grace = sign_in(browser, server, "grace@example.com")
    linus = sign_in(browser, server, "linus@example.com")
    try:
        customer, _ = customers("Bo")
        customer.say("My stove arrived dented, I want it replaced")
        customer.until(status("queued"))
        grace.locator("#queue-list li", has_text="Bo").get_by_role(
            "button", name="Claim conversation with Bo"
        ).click()
        expect(grace.locator("#conv-state")).to_have_text("With Grace")
        expect(linus.locator("#queue-empty")).to_be_visible()  # Linus saw it leave the queue live
        expect(grace.locator("#draft-none")).to_have_text("No draft for this conversation.")
        expect(grace.locator("#draft-text")).to_have_text(DRAFT, timeout=20_000)  # arrives live, late

        grace.get_by_role("button", name="Transfer…").click()
        target = grace.get_by_label("To agent")
        expect(target.locator("option", has_text="Linus")).to_have_count(1)
        expect(target.locator("option", has_text="Grace")).to_have_count(0)
        target.select_option(label=target.locator("option", has_text="Linus").inner_text())
        grace.screenshot(path=str(screenshot_dir / "console-transfer.png"))
        grace.get_by_role("button", name="Transfer", exact=True).click()
        assert customer.until(status("agent"))["agent"] == {"name": "Grace"}
        assert customer.until(status("agent"))["agent"] == {"name": "Linus"}
        expect(grace.locator("#conv-banner")).to_contain_text("Linus")
        expect(grace.locator("#mine-list li")).to_have_count(0)
        expect(grace.locator("#send")).to_be_disabled()

        # Linus gets it live, opens it, and hands it back to the bot.
        mine = linus.locator("#mine-list li", has_text="Bo")
        expect(mine).to_have_count(1)
        mine.get_by_role("button").click()
        expect(linus.locator("#conv-state")).to_have_text("With Linus")
        expect(linus.locator("#draft-text")).to_have_text(DRAFT)
        linus.get_by_role("button", name="Return to bot").click()
        customer.until(status("bot"))
        expect(linus.locator("#conv-banner")).to_have_text("Returned to the bot.")
        expect(linus.locator("#mine-list li")).to_have_count(0)

        # The bot answers again.
        fake_api.reset()
        fake_api.add_rule(lambda body: triage_reply() if is_triage(body) else None)
        fake_api.add_rule(lambda body: Reply(text="A replacement ships today.") if is_answer(body) else None)
        customer.say("Ok, so what now?")
        answer = customer.until(lambda f: f["type"] == "message" and f["role"] == "assistant")
        assert answer["text"] == "A replacement ships today."
    finally:
        grace.close()
        linus.close()


def test_signing_out_before_the_profile_arrives_leaves_nothing_in_session_storage(
    browser: Browser, server: ServerProcess
) -> None:
    create_agent(server, "grace@example.com", "Grace")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(UI_TIMEOUT_MS)
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    try:
        page.route("**/api/v1/agent/me", hold)  # a slow network: the profile answers after the sign-out
        page.goto(f"{server.url}/console/")
        page.get_by_label("Email").fill("grace@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        page.get_by_role("button", name="Sign out").click()
        expect(page.locator("#login-view")).to_be_visible()
        assert len(held) == 1
        with page.expect_response("**/api/v1/agent/me"):
            held[0].continue_()
        page.evaluate("() => new Promise((done) => setTimeout(done, 300))")  # time for the page to use it
        assert page.evaluate("sessionStorage.length") == 0  # no name or e-mail left on a shared computer
        expect(page.locator("#login-view")).to_be_visible()
    finally:
        page.close()


def test_sign_in_errors_session_memory_and_sign_out(
    browser: Browser, server: ServerProcess, screenshot_dir: Path
) -> None:
    create_agent(server, "grace@example.com", "Grace")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        page.goto(f"{server.url}/console/")
        page.get_by_label("Email").fill("grace@example.com")
        page.get_by_label("Password").fill("wrong password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#login-error")).to_have_text("Wrong email or password.")
        expect(page.locator("#console-view")).to_be_hidden()
        page.screenshot(path=str(screenshot_dir / "console-login-error.png"))

        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        page.reload()  # the token lives in sessionStorage: a reload stays signed in
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        expect(page.locator("#me")).to_contain_text("Grace")

        # A token the server no longer accepts sends the agent back to the sign-in form, with a reason.
        good = page.evaluate("sessionStorage.getItem('switchboard.agent.token')")
        page.evaluate("sessionStorage.setItem('switchboard.agent.token', 'forged')")
        page.reload()
        expect(page.locator("#login-error")).to_have_text("Your session expired. Sign in again.")
        assert page.evaluate("sessionStorage.getItem('switchboard.agent.token')") is None
        page.evaluate(f"sessionStorage.setItem('switchboard.agent.token', {json.dumps(good)})")
        page.reload()
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")

        page.get_by_role("button", name="Sign out").click()
        expect(page.locator("#login-view")).to_be_visible()
        assert page.evaluate("sessionStorage.length") == 0
        page.reload()
        expect(page.locator("#login-view")).to_be_visible()
    finally:
        page.close()


def test_a_canned_reply_from_an_earlier_answer_is_offered_and_sent(
    browser: Browser, server: ServerProcess, fake_api: FakeAnthropic, customers: CustomerFactory
) -> None:
    hands_off_with_a_draft(fake_api)
    create_agent(server, "grace@example.com", "Grace")
    api = f"{server.url}/api/v1/agent"
    login = httpx.post(f"{api}/login", json={"email": "grace@example.com", "password": PASSWORD})
    auth = {"Authorization": f"Bearer {login.json()['token']}"}
    answer = "Yes: we match the price of any local outdoor store, just send us the link."

    # An earlier conversation, answered by Grace over the API, becomes an (auto-approved) example.
    first, first_id = customers("Cy")
    first.say("Do you price match other stores?")
    first.until(status("queued"))
    assert httpx.post(f"{api}/conversations/{first_id}/claim", headers=auth).status_code == 200
    sent = httpx.post(f"{api}/conversations/{first_id}/messages", headers=auth, json={"text": answer})
    assert sent.status_code == 201, sent.text
    assert httpx.post(f"{api}/conversations/{first_id}/resolve", headers=auth).status_code == 200

    page = sign_in(browser, server, "grace@example.com")
    try:
        second, _ = customers("Di")
        second.say("Will you price match a store in town?")
        second.until(status("queued"))
        # By keyboard: open the preview, tab to its Claim button, claim; focus lands in the reply box.
        row = page.locator("#queue-list li", has_text="Di")
        row.get_by_role("button", name="Preview conversation with Di").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#conv-state")).to_have_text("Queued #1")
        page.keyboard.press("Tab")
        expect(row.get_by_role("button", name="Claim conversation with Di")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#conv-state")).to_have_text("With Grace")
        expect(page.get_by_label("Reply to the customer")).to_be_focused()
        canned = page.locator("#canned-list li")
        expect(canned).to_have_count(1)
        expect(canned).to_contain_text("Do you price match other stores?")
        canned.get_by_role("button", name=re.compile("^Use canned reply")).click()
        composer = page.get_by_label("Reply to the customer")
        expect(composer).to_have_value(answer)
        expect(page.locator("#composer-mode")).to_have_text("Using a canned reply")
        page.get_by_role("button", name="Send", exact=True).click()
        got = second.until(lambda f: f["type"] == "message" and f["role"] == "agent")
        assert (got["text"], got["author"]) == (answer, {"name": "Grace"})

        # Released, it goes back to the queue (and the customer is told they wait again).
        page.get_by_role("button", name="Release to queue").click()
        assert second.until(status("queued"))["queue_position"] == 1
        expect(page.locator("#conv-banner")).to_have_text("Released back to the queue.")
        expect(page.locator("#queue-list li", has_text="Di")).to_have_count(1)
        expect(page.locator("#mine-list li")).to_have_count(0)
        expect(page.locator("#conv-state")).to_have_text("Queued #1")
    finally:
        page.close()


def test_the_console_reconnects_after_its_server_restarts_and_shows_what_it_missed(
    browser: Browser, server: ServerProcess, fake_api: FakeAnthropic, customers: CustomerFactory,
    tmp_path: Path, clean_redis: str,
) -> None:  # fmt: skip
    hands_off_with_a_draft(fake_api)
    create_agent(server, "grace@example.com", "Grace")
    # The customer is on another process (same Redis and database), so they can write while ours is down.
    other = start_server(
        tmp_path / "other",
        fake_api,
        clean_redis,
        SWITCHBOARD_DATABASE_URL=server.env["SWITCHBOARD_DATABASE_URL"],
    )
    restarted: ServerProcess | None = None
    page = sign_in(browser, server, "grace@example.com")
    try:
        customer, _ = customers("Eve", via=other)
        customer.say("My order never arrived")
        customer.until(status("queued"))
        row = page.locator("#queue-list li", has_text="Eve")
        row.get_by_role("button", name="Claim conversation with Eve").click()
        expect(page.locator("#conv-state")).to_have_text("With Grace")

        server.kill()
        expect(page.locator("#connection")).to_have_attribute("data-state", "closed")
        expect(page.locator("#connection")).to_contain_text("retrying")
        customer.say("Hello? Are you still there?")  # while the console's server is down
        customer.until(lambda f: f["type"] == "ack")
        restarted = ServerProcess(server.data_dir, env=server.env, port=server.port).start()

        expect(page.locator("#connection")).to_have_attribute("data-state", "open", timeout=20_000)
        transcript = page.locator("#transcript li[data-role=customer]")
        expect(transcript.last).to_contain_text("Are you still there?")  # caught up over HTTP
        customer.say("Order number NW-1234")
        expect(transcript.last).to_contain_text("NW-1234")  # and live again
        expect(transcript).to_have_count(3)
        page.get_by_role("button", name="Send as is").click()  # the bot's draft, unedited
        got = customer.until(lambda f: f["type"] == "message" and f["role"] == "agent")
        assert (got["text"], got["author"]) == (DRAFT, {"name": "Grace"})
        expect(page.locator("#draft-none")).to_have_text("You used the draft.")
    finally:
        page.close()
        other.kill()
        if restarted is not None:
            restarted.kill()
