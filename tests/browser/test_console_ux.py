"""The console for a working day, in real Chromium against one ``switchboard serve`` per module: desktop
notifications while the tab is hidden, the phone layout (lists, conversation, actions panel), keyboard
shortcuts, and the admins' business hours screen. Screenshots at 1280 and 375 px.

Each test uses its own agents and resolves its conversations, so the tests share the server but no state.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect
from websockets.sync.client import connect

from support.testing.fake_anthropic import FakeAnthropic
from tests.browser.test_console import (
    PASSWORD,
    UI_TIMEOUT_MS,
    Customer,
    create_agent,
    hands_off_with_a_draft,
    status,
)
from tests.integration.test_widget_ws import ORIGIN, start_server
from tests.redis_cluster import sync_redis_client_for
from tests.servers import ServerProcess

pytestmark = pytest.mark.timeout(120)
TITLE = "Switchboard · Agent console"
WIDE: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 375, "height": 740}

# Records what the page does with notifications and sound, and lets the test hide the tab: Chromium keeps
# a page "visible" while it is the only one, so document.visibilityState is overridden (as a browser
# reports it when the agent switches tabs), and the visibilitychange event fired as a browser would.
RECORDER = """
(() => {
  let visibility = "visible";
  const define = (name, get) => Object.defineProperty(Document.prototype, name, { get, configurable: true });
  define("visibilityState", () => visibility);
  define("hidden", () => visibility === "hidden");
  window.__setVisibility = (value) => {
    visibility = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };
  window.__notes = [];
  const Real = window.Notification;
  if (Real) {
    class Recorded extends Real {
      constructor(title, options) {
        super(title, options);
        const { body, tag } = options || {};
        window.__notes.push({ title, body, tag, note: this });
      }
    }
    Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
    Recorded.requestPermission = (...args) => Real.requestPermission(...args);
    window.Notification = Recorded;
  }
  window.__tones = 0;
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) {
    window.__tones += 1;
    return start.apply(this, args);
  };
})();
"""


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeAnthropic, redis_url: str
) -> Iterator[ServerProcess]:
    fake.reset()
    hands_off_with_a_draft(fake)
    client = sync_redis_client_for(redis_url)
    client.flushdb()
    proc = start_server(tmp_path_factory.mktemp("ux"), fake, redis_url)
    try:
        # One admin made by the command line; the tests' accounts through the admin API (no process each).
        create_agent(proc, "boss@example.com", "Boss", role="admin")
        yield proc
    finally:
        proc.kill()
        client.flushdb()
        client.close()


@pytest.fixture
def sockets() -> Iterator[contextlib.ExitStack]:
    """Customer sockets of one test, closed after it."""
    with contextlib.ExitStack() as stack:
        yield stack


def open_customer(server: ServerProcess, sockets: contextlib.ExitStack, name: str) -> tuple[Customer, str]:
    visitor = {"name": name, "email": f"{name.lower()}@example.com"}
    resp = httpx.post(
        f"{server.url}/api/v1/widget/sessions",
        json={"widget_key": "pk_test", "visitor": visitor},
        headers={"Origin": ORIGIN},
    )
    assert resp.status_code == 201, resp.text
    session = resp.json()
    url = f"ws://127.0.0.1:{server.port}/api/v1/widget/ws?token={session['token']}"
    return Customer(sockets.enter_context(connect(url))), session["conversation_id"]


def handed_off(server: ServerProcess, sockets: contextlib.ExitStack, name: str) -> tuple[Customer, str]:
    """A customer whose conversation waits in the queue."""
    customer, conversation_id = open_customer(server, sockets, name)
    customer.say("My stove broke after a week and I want my money back")
    customer.until(status("queued"))
    return customer, conversation_id


def account(server: ServerProcess, email: str, name: str, role: str = "agent") -> None:
    body = {"email": email, "password": PASSWORD, "name": name, "role": role}
    boss = login(server, "boss@example.com")
    made = httpx.post(f"{server.url}/api/v1/admin/agents", json=body, headers=boss)
    assert made.status_code == 201, made.text


def login(server: ServerProcess, email: str) -> dict[str, str]:
    resp = httpx.post(f"{server.url}/api/v1/agent/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def console(context: BrowserContext, server: ServerProcess, email: str) -> Page:
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(f"{server.url}/console/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    return page


def no_sideways_scroll(page: Page) -> None:
    scroll, inner = page.evaluate("[document.scrollingElement.scrollWidth, innerWidth]")
    assert scroll <= inner, f"the page scrolls sideways ({scroll} px in {inner} px)"


def small_targets(page: Page) -> list[str]:
    """Visible buttons, selects and top-bar links smaller than 40 px tall (a fingertip)."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('button, select, a.top-link, .ap-nav a')]
            .filter((n) => n.getClientRects().length && getComputedStyle(n).visibility !== 'hidden')
            .filter((n) => n.getBoundingClientRect().height < 40)
            .map((n) => `${n.id || n.className || n.tagName}: ${n.getBoundingClientRect().height}px`)"""
    )
    return found


def test_hidden_tab_notifies_assignments_and_customer_messages_and_the_click_opens_the_conversation(
    browser: Browser, server: ServerProcess, sockets: contextlib.ExitStack, screenshot_dir: Path
) -> None:
    account(server, "nora@example.com", "Nora")
    account(server, "otto@example.com", "Otto")
    otto = login(server, "otto@example.com")
    context = browser.new_context(viewport={"width": 1280, "height": 800}, permissions=["notifications"])
    context.add_init_script(RECORDER)
    customer, conversation_id = handed_off(server, sockets, "Ada")
    base = f"{server.url}/api/v1/agent/conversations/{conversation_id}"
    try:
        page = console(context, server, "nora@example.com")
        bell = page.get_by_role("button", name="Notifications")
        expect(bell).to_have_attribute("aria-pressed", "false")
        bell.click()
        expect(bell).to_have_attribute("aria-pressed", "true")
        assert page.evaluate("localStorage.getItem('switchboard.console.notify')") == "on"

        # Otto claims it and transfers it to Nora while her console tab is hidden.
        page.evaluate("window.__setVisibility('hidden')")
        assert httpx.post(f"{base}/claim", headers=otto).status_code == 200
        nora_id = next(a["id"] for a in httpx.get(f"{server.url}/api/v1/agent/agents", headers=otto).json()
                       if a["name"] == "Nora")  # fmt: skip
        moved = httpx.post(f"{base}/transfer", headers=otto, json={"agent_id": nora_id})
        assert moved.status_code < 300, moved.text
        page.wait_for_function("window.__notes.length === 1")
        assigned = page.evaluate("({title: __notes[0].title, body: __notes[0].body, tag: __notes[0].tag})")
        expect(page).to_have_title(f"(1) {TITLE}")

        # The customer writes in the conversation Nora now holds.
        expect(page.locator("#mine-list li", has_text="Ada")).to_have_count(1)
        customer.say("Hello? Is anyone there?")
        page.wait_for_function("window.__notes.length === 2")
        message = page.evaluate("({title: __notes[1].title, body: __notes[1].body})")
        expect(page).to_have_title(f"(2) {TITLE}")
        tones = page.evaluate("window.__tones")

        # Clicking the notification opens the conversation; looking at the tab clears the count.
        page.evaluate("__notes[1].note.dispatchEvent(new Event('click'))")
        expect(page.locator("#conv-title")).to_have_text("Ada")
        expect(page.locator("#conv-state")).to_have_text("With Nora")
        page.evaluate("window.__setVisibility('visible')")
        expect(page).to_have_title(TITLE)

        # While the tab is visible the console shows the message and no notification fires.
        customer.say("Sorry, just checking")
        expect(page.locator("#transcript li[data-role=customer]").last).to_contain_text("just checking")
        page.screenshot(path=str(screenshot_dir / "console-notifications-1280.png"))
        page.set_viewport_size({"width": 375, "height": 740})
        page.screenshot(path=str(screenshot_dir / "console-notifications-375.png"))
        visible_count = page.evaluate("window.__notes.length")

        # Turned off, a hidden tab raises no notification and plays no chime.
        page.get_by_role("button", name="Notifications").click()
        expect(bell).to_have_attribute("aria-pressed", "false")
        page.evaluate("window.__setVisibility('hidden')")
        customer.say("Anyone?")
        customer.until(lambda f: f["type"] == "message" and f["text"] == "Anyone?")
        expect(page).to_have_title(f"(1) {TITLE}")  # the title still counts: that needs no permission
        page.evaluate("window.__setVisibility('visible')")
        expect(page).to_have_title(TITLE)
        expect(page.locator("#transcript li[data-role=customer]").last).to_contain_text("Anyone?")
        off_count = page.evaluate("[window.__notes.length, window.__tones]")
    finally:
        context.close()
        httpx.post(f"{base}/resolve", headers=login(server, "nora@example.com"))
    assert assigned == {
        "title": "Assigned to you: Ada",
        "body": "Bot not confident enough to answer",
        "tag": f"switchboard:{conversation_id}",
    }
    assert message == {"title": "New message from Ada", "body": "Hello? Is anyone there?"}
    assert tones == 2
    assert visible_count == 2
    assert off_count == [2, 2]


def test_on_a_phone_an_agent_claims_replies_and_resolves_one_pane_at_a_time(
    browser: Browser, server: ServerProcess, sockets: contextlib.ExitStack, screenshot_dir: Path
) -> None:
    account(server, "pia@example.com", "Pia")
    context = browser.new_context(viewport={"width": 375, "height": 740}, has_touch=True)
    customer, conversation_id = handed_off(server, sockets, "Bea")
    try:
        page = console(context, server, "pia@example.com")
        row = page.locator("#queue-list li", has_text="Bea")
        expect(row).to_contain_text("Bot not confident enough to answer")
        expect(page.locator("#conversation")).to_be_hidden()
        no_sideways_scroll(page)
        small_in_list = small_targets(page)
        page.screenshot(path=str(screenshot_dir / "console-phone-list-375.png"))

        row.get_by_role("button", name="Claim conversation with Bea").tap()
        expect(page.locator("#conv-state")).to_have_text("With Pia")
        expect(page.locator(".sidebar")).to_be_hidden()
        composer = page.get_by_label("Reply to the customer")
        expect(composer).to_be_focused()
        composer.fill("So sorry! I am starting the refund now.")
        page.get_by_role("button", name="Send", exact=True).tap()
        sent = customer.until(lambda f: f["type"] == "message" and f["role"] == "agent")
        expect(page.locator("#transcript li[data-role=agent]")).to_contain_text("starting the refund")
        expect(composer).to_have_value("")  # the send has been answered
        no_sideways_scroll(page)
        small_in_conversation = small_targets(page)
        page.screenshot(path=str(screenshot_dir / "console-phone-conversation-375.png"))

        page.get_by_role("button", name="Actions").tap()
        expect(page.locator("#conversation")).to_be_hidden()
        expect(page.locator("#draft-heading")).to_be_visible()
        no_sideways_scroll(page)
        small_in_panel = small_targets(page)
        page.screenshot(path=str(screenshot_dir / "console-phone-panel-375.png"))
        page.get_by_role("button", name="Resolve").tap()
        customer.until(status("resolved"))
        page.get_by_role("button", name="← Conversation").tap()
        expect(page.locator("#conv-banner")).to_contain_text("Resolved")
        page.get_by_role("button", name="Back to conversations").tap()
        expect(page.locator("#mine-empty")).to_be_visible()
        expect(page.locator("#queue-empty")).to_be_visible()

        # The same console on a wide screen: all three side by side, no back buttons.
        page.set_viewport_size({"width": 1280, "height": 800})
        page.locator("#logout").focus()
        expect(page.locator("#conversation")).to_be_visible()
        expect(page.locator("#conv-back")).to_be_hidden()
        page.screenshot(path=str(screenshot_dir / "console-phone-wide-1280.png"))
    finally:
        context.close()
    assert sent["text"] == "So sorry! I am starting the refund now."
    assert small_in_list == []
    assert small_in_conversation == []
    assert small_in_panel == []
    token_check = httpx.get(
        f"{server.url}/api/v1/agent/conversations/{conversation_id}", headers=login(server, "pia@example.com")
    ).json()
    assert token_check["state"] == "resolved"


def test_keyboard_alone_opens_claims_replies_and_resolves(
    browser: Browser, server: ServerProcess, sockets: contextlib.ExitStack, screenshot_dir: Path
) -> None:
    email = "kim@example.com"
    account(server, email, "Kim")
    context = browser.new_context(viewport=WIDE)
    customer, conversation_id = handed_off(server, sockets, "Cy")
    try:
        page = console(context, server, email)
        keys = page.keyboard
        expect(page.locator("#queue-list li", has_text="Cy")).to_have_count(1)
        keys.press("j")
        focused = page.locator("#queue-list .conv-item").first
        expect(focused).to_be_focused()
        outline = focused.evaluate("n => getComputedStyle(n).outlineStyle")
        keys.press("Enter")
        expect(page.locator("#conv-title")).to_have_text("Cy")
        expect(page.locator("#conv-state")).to_have_text("Queued #1")
        keys.press("c")
        expect(page.locator("#conv-state")).to_have_text("With Kim")
        composer = page.get_by_label("Reply to the customer")
        expect(composer).to_be_focused()
        # Letters typed into the reply are text, not shortcuts ("e" would resolve, "c" claim).
        keys.type("Hello, I can see the stove order here.")
        keys.press("Enter")
        sent = customer.until(lambda f: f["type"] == "message" and f["role"] == "agent")
        expect(page.locator("#conv-state")).to_have_text("With Kim")
        keys.press("Escape")
        expect(composer).not_to_be_focused()
        keys.press("r")
        expect(composer).to_be_focused()
        keys.press("Escape")
        keys.press("?")
        expect(page.locator("#keys-dialog")).to_be_visible()
        page.screenshot(path=str(screenshot_dir / "console-keyboard-1280.png"))
        page.set_viewport_size(PHONE)
        page.screenshot(path=str(screenshot_dir / "console-keyboard-375.png"))
        page.set_viewport_size(WIDE)
        keys.press("Escape")
        expect(page.locator("#keys-dialog")).to_be_hidden()
        keys.press("e")
        customer.until(status("resolved"))
        expect(page.locator("#conv-banner")).to_contain_text("Resolved")
        expect(page.locator("#mine-empty")).to_be_visible()
        no_sideways_scroll(page)
    finally:
        context.close()
    assert outline != "none"
    assert sent["text"] == "Hello, I can see the stove order here."
    assert conversation_id


def hours_of(server: ServerProcess, headers: dict[str, str]) -> dict[str, Any]:
    [team] = httpx.get(f"{server.url}/api/v1/admin/teams", headers=headers).json()
    return team  # type: ignore[no-any-return]


def test_an_admin_edits_business_hours_and_sees_what_is_wrong_next_to_the_field(
    browser: Browser, server: ServerProcess, screenshot_dir: Path
) -> None:
    admin_email, agent_email = "root@example.com", "val@example.com"
    account(server, admin_email, "Root", role="admin")
    account(server, agent_email, "Val")
    admin, agent = login(server, admin_email), login(server, agent_email)
    context = browser.new_context(viewport=PHONE)
    try:
        page = console(context, server, admin_email)
        expect(page.locator("#hours-link")).to_be_visible()  # an admin's top bar, compact on a phone
        no_sideways_scroll(page)
        small_in_top_bar = small_targets(page)
        page.screenshot(path=str(screenshot_dir / "console-admin-top-375.png"))
        page.set_viewport_size(WIDE)
        page.locator("#hours-link").click()
        expect(page.locator("#page")).to_be_visible()
        expect(page.locator("#source")).to_have_text("No hours set: always open. Saving here sets them.")
        expect(page.locator("#open-now")).to_have_text("Open now")

        page.get_by_label("Time zone").fill("Europe/Berlin")
        for day in ("Monday", "Wednesday", "Thursday", "Friday"):
            page.get_by_label(day).fill("09:00-17:00")
        page.get_by_label("Tuesday").fill("9-5")
        page.get_by_role("button", name="Save hours").click()
        shape = page.locator("#day-tue-error")
        expect(shape).to_have_text("Tuesday: “9-5” is not a range like 09:00-17:00.")
        expect(page.get_by_label("Tuesday")).to_be_focused()

        page.get_by_label("Tuesday").fill("17:00-09:00")  # well formed, but the server refuses it
        expect(shape).to_be_hidden()
        page.get_by_role("button", name="Save hours").click()
        expect(shape).to_contain_text("ends before it starts")
        expect(page.get_by_label("Tuesday")).to_have_attribute("aria-invalid", "true")
        page.screenshot(path=str(screenshot_dir / "console-hours-error-1280.png"), full_page=True)
        page.set_viewport_size(PHONE)
        expect(shape).to_be_visible()
        page.screenshot(path=str(screenshot_dir / "console-hours-error-375.png"), full_page=True)
        page.set_viewport_size(WIDE)

        page.get_by_label("Tuesday").fill("09:00-12:00, 13:00-17:00")
        page.get_by_label("Time zone").fill("Mars/Olympus_Mons")
        page.get_by_role("button", name="Save hours").click()
        expect(page.locator("#timezone-error")).to_contain_text("unknown time zone")
        unchanged = hours_of(server, admin)

        page.get_by_label("Time zone").fill("Europe/Berlin")
        page.get_by_label("New holiday").fill("2026-12-25")
        page.get_by_role("button", name="Add holiday").click()
        page.get_by_label("New holiday").fill("2026-12-24")
        page.get_by_role("button", name="Add holiday").click()
        page.get_by_role("button", name="Remove holiday 2026-12-24").click()
        page.get_by_role("button", name="Save hours").click()
        expect(page.locator("#saved")).to_have_text("Hours saved.")
        expect(page.locator("#source")).to_contain_text("Set by an admin")
        page.screenshot(path=str(screenshot_dir / "console-hours-1280.png"), full_page=True)
        page.set_viewport_size(PHONE)
        no_sideways_scroll(page)
        small = small_targets(page)
        page.screenshot(path=str(screenshot_dir / "console-hours-375.png"), full_page=True)
        saved = hours_of(server, admin)

        page.reload()
        expect(page.get_by_label("Tuesday")).to_have_value("09:00-12:00, 13:00-17:00")
        expect(page.locator("#holidays li span")).to_have_text(["2026-12-25"])

        # An agent who is not an admin gets the notice, and the API refuses them.
        other = console(browser.new_context(viewport=PHONE), server, agent_email)
        other.goto(f"{server.url}/console/hours.html")
        expect(other.locator("#forbidden")).to_be_visible()
        expect(other.locator("#page")).to_be_hidden()
        other.context.close()
        refused = httpx.put(
            f"{server.url}/api/v1/admin/teams/default/hours", headers=agent, json={"business_hours": None}
        )

        page.get_by_role("button", name="Use the server's setting").click()
        expect(page.locator("#saved")).to_have_text("Hours reset to the server's setting.")
        reset = hours_of(server, admin)
    finally:
        context.close()
    assert unchanged["source"] == "setting"
    assert unchanged["business_hours"] is None
    assert saved["source"] == "admin"
    assert saved["business_hours"] == {
        "timezone": "Europe/Berlin",
        "weekly": {
            "mon": ["09:00-17:00"],
            "tue": ["09:00-12:00", "13:00-17:00"],
            "wed": ["09:00-17:00"],
            "thu": ["09:00-17:00"],
            "fri": ["09:00-17:00"],
        },
        "holidays": ["2026-12-25"],
    }
    assert small == []
    assert small_in_top_bar == []
    assert refused.status_code == 403
    assert json.loads(refused.text)["error"]["code"]
    assert reset["source"] == "setting"
    assert reset["business_hours"] is None


AXE = Path(__file__).parent / "vendor" / "axe.min.js"


def axe_violations(page: Page) -> list[str]:
    """axe-core's WCAG 2 A/AA rules on the page as it is: each violation's rule and the elements it names."""
    page.add_script_tag(path=str(AXE))
    found: list[str] = page.evaluate(
        """async () => {
            const result = await axe.run(document, { runOnly: ["wcag2a", "wcag2aa"] });
            const where = (v) => v.nodes.map((n) => n.target.join(" ")).join(", ");
            return result.violations.map((v) => `${v.id}: ${where(v)}`);
        }"""
    )
    return found


def test_the_console_phone_panes_and_the_hours_screen_pass_axe(
    browser: Browser, server: ServerProcess, sockets: contextlib.ExitStack
) -> None:
    account(server, "ally@example.com", "Ally", role="admin")
    context = browser.new_context(viewport=PHONE)
    _customer, conversation_id = handed_off(server, sockets, "Dee")
    found: dict[str, list[str]] = {}
    try:
        page = console(context, server, "ally@example.com")
        expect(page.locator("#queue-list li", has_text="Dee")).to_have_count(1)
        found["list"] = axe_violations(page)
        page.get_by_role("button", name="Claim conversation with Dee").click()
        expect(page.locator("#conv-state")).to_have_text("With Ally")
        found["conversation"] = axe_violations(page)
        page.get_by_role("button", name="Actions").click()
        found["panel"] = axe_violations(page)
        page.keyboard.press("Escape")
        page.keyboard.press("?")
        found["shortcuts"] = axe_violations(page)
        page.goto(f"{server.url}/console/hours.html")
        expect(page.locator("#page")).to_be_visible()
        found["hours"] = axe_violations(page)
    finally:
        context.close()
        httpx.post(
            f"{server.url}/api/v1/agent/conversations/{conversation_id}/resolve",
            headers=login(server, "ally@example.com"),
        )
    assert {state: sorted(set(v)) for state, v in found.items()} == {state: [] for state in found}
