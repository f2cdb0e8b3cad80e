"""What a newcomer sees, in real Chromium: the widget on a company's page (another origin than the service)
says why a person takes over, shows an agent's message as a person's, and keeps the rating form inside its
panel with the × in reach at 1280 and 375 px; the console and the reports share one sign-in and link to
each other; the reports show rates within 0..100 %, money by one rule and reasons in words.

Screenshots of the states (widget after rating, agent message, reports page at 1280 and 375 px) go to
``screenshot_dir`` (``SWITCHBOARD_SCREENSHOT_DIR=docs/screenshots`` refreshes the committed ones).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.sync.client import connect as ws_connect

from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests import servers
from tests.browser.test_widget import WAIT_MS, W, bubbles, open_panel, send
from tests.browser.test_widget_cross_origin import StaticSite
from tests.integration.test_widget_ws import is_answer, is_triage, triage_reply
from tests.servers import ServerProcess

PASSWORD = "correct horse battery staple"
MONEY = re.compile(r"^(\$\d{1,3}(,\d{3})*\.\d{2}|\$0\.00\d{2}|< \$0\.0001)$")


class Shop:
    """Switchboard on one port, the company's page (allowed for ``pk_shop``) on another."""

    def __init__(self, service: ServerProcess, host: StaticSite) -> None:
        self.service, self.host = service, host

    def account(self, email: str, name: str, role: str = "agent") -> dict[str, str]:
        servers.create_agent(self.service.env, self.service.data_dir, email, PASSWORD, name, role)
        return servers.agent_auth(self.service, email, PASSWORD)

    def api(self, method: str, path: str, auth: dict[str, str]) -> Any:
        resp = httpx.request(method, f"{self.service.url}{path}", headers=auth, timeout=10)
        assert resp.status_code < 300, resp.text
        return resp.json()


@pytest.fixture
def shop(tmp_path: Path, fake: FakeAnthropic, redis_url: str) -> Iterator[Shop]:
    fake.reset()
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    service = ServerProcess(tmp_path / "svc")
    host = StaticSite(service.url)
    service.env.update(
        {
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": fake.url,
            "SWITCHBOARD_REDIS_URL": redis_url,
            "SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}",
            "SWITCHBOARD_WIDGET_KEYS": json.dumps({"pk_shop": [host.url]}),
            "SWITCHBOARD_LLM_REQUESTS_PER_MINUTE": "10000",
        }
    )
    service.start()
    try:
        yield Shop(service, host)
    finally:
        service.kill()
        host.close()
        client.flushdb()
        client.close()


class Tab:
    """A browser context at one width, with the page's JavaScript errors collected."""

    def __init__(self, browser: Any, width: int) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 800 if width > 500 else 740})
        self.errors: list[str] = []
        self.page = self.new_page()

    def new_page(self) -> Any:
        page = self.context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        return page

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], f"JavaScript errors on the page: {self.errors}"


@pytest.fixture
def tabs(browser: Any) -> Iterator[Any]:
    opened: list[Tab] = []

    def make(width: int) -> Tab:
        opened.append(Tab(browser, width))
        return opened[-1]

    yield make
    for tab in opened:
        tab.close()


def widget_on(tab: Tab, shop: Shop) -> Any:
    page = tab.page
    page.goto(shop.host.url)
    page.wait_for_selector(f"{W} .launcher", state="visible")
    assert shop.host.url != shop.service.url  # the widget runs on another origin than the service
    return page


def sys_lines(page: Any) -> list[str]:
    lines: list[str] = page.locator(f"{W} .sys[data-seq]").all_text_contents()
    return lines


def box(page: Any, selector: str) -> dict[str, float]:
    found: dict[str, float] | None = page.locator(f"{W} {selector}").bounding_box()
    assert found is not None, f"{selector} is not rendered"
    return found


def topmost_at_centre_of_close_button(page: Any) -> str:
    """What a click at the middle of the × would hit (the widget's shadow root answers for its content)."""
    found: str = page.evaluate(
        """() => {
          const root = document.querySelector('switchboard-widget').shadowRoot;
          const r = root.querySelector('.x').getBoundingClientRect();
          const hit = root.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
          return hit ? hit.className : '';
        }"""
    )
    return found


# ---------------------------------------------------------------------------------------------------------
# Widget


@pytest.mark.parametrize("width", [1280, 375])
def test_the_rating_form_stays_inside_the_panel_and_the_close_button_in_reach(
    tabs: Any, shop: Shop, fake: FakeAnthropic, screenshot_dir: Path, width: int
) -> None:
    """A long conversation, then the rating: picking a score and writing a comment must not scroll the
    panel (its header and × went out of view: 841 px of content in a 598 px panel)."""
    fake.add_rule(lambda body: triage_reply() if is_triage(body) else None)
    answer = (
        "Unused gear can be returned within 30 days of delivery. Print the free label from your order page, "
        "pack the item in its original box if you still have it, and drop it at any parcel shop."
    )
    fake.add_rule(lambda body: Reply(text=answer) if is_answer(body) else None)
    tab = tabs(width)
    page = widget_on(tab, shop)
    open_panel(page)
    for n, question in enumerate(["Can I return my tent?", "And my boots?", "Who pays for the label?"]):
        send(page, question)
        page.wait_for_function(
            f"() => document.querySelector('switchboard-widget').shadowRoot"
            f".querySelectorAll('.msg[data-role=assistant][data-seq]').length === {n + 1}",
            timeout=WAIT_MS,
        )
    page.locator(f"{W} [data-act=end]").click()
    page.wait_for_selector(f"{W} .csat", timeout=WAIT_MS)
    page.locator(f"{W} .csat .stars label").nth(3).click()  # a score, clicked as a person clicks it
    page.locator(f"{W} .csat textarea").fill("Clear answers, thank you.\nThe label link worked first time.")

    viewport = page.viewport_size
    panel, header, close, form = box(page, ".panel"), box(page, "header"), box(page, ".x"), box(page, ".csat")
    assert page.locator(f"{W} .panel").evaluate("p => p.scrollTop") == 0, "the panel itself scrolled"
    assert header["y"] >= panel["y"] - 0.5, "the header went up out of the panel"
    assert close["x"] >= 0, "× off screen sideways"
    assert close["x"] + close["width"] <= viewport["width"], "× off screen sideways"
    assert close["y"] >= 0, "× off screen"
    assert close["y"] + close["height"] <= viewport["height"], "× off screen"
    assert topmost_at_centre_of_close_button(page) == "x", "something covers the ×"
    assert form["x"] >= panel["x"] - 0.5, "the rating form sticks out of the panel"
    assert form["x"] + form["width"] <= panel["x"] + panel["width"] + 0.5, "the form sticks out"
    assert panel["y"] + panel["height"] <= viewport["height"] + 0.5, "the panel runs past the window"
    page.locator(f"{W} .csat button[type=submit]").click()
    page.wait_for_selector(f"{W} .thanks")
    assert topmost_at_centre_of_close_button(page) == "x"
    page.screenshot(path=str(screenshot_dir / f"widget-rated-{width}.png"))
    page.locator(f"{W} .x").click()
    page.wait_for_selector(f"{W} .panel", state="hidden")


def test_why_a_person_takes_over_is_worded_by_the_handoff_reason(
    tabs: Any, shop: Shop, fake: FakeAnthropic
) -> None:
    """Asked for a person vs the bot not being sure, and whether anyone is online to answer."""
    fake.add_rule(
        lambda body: (
            triage_reply(wants_human=True)
            if is_triage(body) and "person" in json.dumps(body["messages"])
            else None
        )
    )
    fake.add_rule(lambda body: triage_reply(confidence=0.1) if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text="(draft)") if is_answer(body) else None)

    # Nobody's console is open: the bot is not sure, and no one is online.
    unsure = widget_on(tabs(1280), shop)
    open_panel(unsure)
    send(unsure, "Can you engrave my initials on a tent pole?")
    unsure.wait_for_selector(f"{W} .state[data-state=queued]", timeout=WAIT_MS)
    unsure.wait_for_selector(f"{W} .sys[data-seq]", timeout=WAIT_MS)
    assert sys_lines(unsure) == ["Our assistant isn't sure about this one, so a person will take over"]
    state = unsure.locator(f"{W} .state").inner_text()
    assert state.startswith("Waiting for a person")
    assert "No one can answer right now" in state

    # An agent's console is connected: the customer asked, and nobody is said to be away.
    sam = shop.account("sam@northwind.test", "Sam")
    token = sam["Authorization"].removeprefix("Bearer ")
    with ws_connect(f"ws://127.0.0.1:{shop.service.port}/api/v1/agent/ws?token={token}") as console:
        console.recv(timeout=10)  # the queue: the console is connected and seen
        asked = widget_on(tabs(375), shop)
        open_panel(asked)
        send(asked, "I'd like to talk to a person please")
        asked.wait_for_selector(f"{W} .state[data-state=queued]", timeout=WAIT_MS)
        asked.wait_for_selector(f"{W} .sys[data-seq]", timeout=WAIT_MS)
        assert sys_lines(asked) == ["You asked for a person: we're getting one"]
        state = asked.locator(f"{W} .state").inner_text()
        assert "you are number" in state
        assert "No one can answer" not in state


def test_an_agents_message_is_shown_as_a_persons(
    tabs: Any, shop: Shop, fake: FakeAnthropic, screenshot_dir: Path
) -> None:
    """Name, avatar initial and a bubble unlike the bot's; an agent named "You" reads as "A support
    agent", never "You is helping you"."""
    fake.add_rule(
        lambda body: (
            triage_reply(wants_human=True)
            if is_triage(body) and "person" in json.dumps(body["messages"])
            else None
        )
    )
    fake.add_rule(lambda body: triage_reply() if is_triage(body) else None)
    fake.add_rule(
        lambda body: Reply(text="Our stoves have a two-year warranty.") if is_answer(body) else None
    )
    sam = shop.account("sam@northwind.test", "Sam")
    you = shop.account("you@northwind.test", "You")
    for width, agent in ((1280, sam), (375, you)):
        page = widget_on(tabs(width), shop)
        open_panel(page)
        send(page, "Is there a warranty on stoves?")
        page.wait_for_selector(f"{W} .msg[data-role=assistant][data-seq]", timeout=WAIT_MS)
        send(page, "Mine broke after a week, can I talk to a person?")
        page.wait_for_selector(f"{W} .state[data-state=queued]", timeout=WAIT_MS)
        [item] = shop.api("GET", "/api/v1/agent/queue", agent)
        base = f"/api/v1/agent/conversations/{item['conversation_id']}"
        shop.api("POST", f"{base}/claim", agent)
        page.wait_for_selector(f"{W} .state[data-state=agent]", timeout=WAIT_MS)
        sent = httpx.post(
            f"{shop.service.url}{base}/messages", json={"text": "Sorry about that! Send me a photo?"},
            headers=agent,
        )  # fmt: skip
        assert sent.status_code == 201, sent.text
        page.wait_for_selector(f"{W} .msg[data-role=agent][data-seq]", timeout=WAIT_MS)
        assert bubbles(page, "agent") == ["Sorry about that! Send me a photo?"]
        agent_bubble = page.locator(f"{W} .msg[data-role=agent]")
        bot_bubble = page.locator(f"{W} .msg[data-role=assistant]")
        colours = "n => [getComputedStyle(n).backgroundColor, getComputedStyle(n).borderTopColor]"
        assert agent_bubble.evaluate(colours) != bot_bubble.evaluate(colours), "looks like the bot's"
        assert page.locator(f"{W} .msg[data-role=agent] .avatar").is_visible()
        everything = page.locator(f"{W} .panel").inner_text()
        assert "You is" not in everything
        assert "You joined" not in everything
        if agent is sam:
            assert page.locator(f"{W} .msg[data-role=agent] .who").inner_text() == "Sam"
            assert page.locator(f"{W} .msg[data-role=agent] .avatar").inner_text() == "S"
            assert page.locator(f"{W} .state").inner_text() == "Sam is helping you"
            assert sys_lines(page)[-1] == "Sam joined"
        else:
            assert page.locator(f"{W} .msg[data-role=agent] .who").inner_text() == "Support agent"
            assert page.locator(f"{W} .state").inner_text() == "A support agent is helping you"
            assert sys_lines(page)[-1] == "A support agent joined"
        page.screenshot(path=str(screenshot_dir / f"widget-agent-{width}.png"))


# ---------------------------------------------------------------------------------------------------------
# Console and reports


def seed_conversations(shop: Shop, fake: FakeAnthropic) -> None:
    """One conversation the bot answers, one handed off because the customer asked (over the widget's
    WebSocket, as the widget does)."""
    fake.add_rule(
        lambda body: (
            triage_reply(wants_human=True)
            if is_triage(body) and "person" in json.dumps(body["messages"])
            else None
        )
    )
    fake.add_rule(lambda body: triage_reply() if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text="Returns are free within 30 days.") if is_answer(body) else None)
    for text, until in (("Are returns free?", "message"), ("Can I talk to a person?", "status")):
        resp = httpx.post(
            f"{shop.service.url}/api/v1/widget/sessions", json={"widget_key": "pk_shop"},
            headers={"Origin": shop.host.url},
        )  # fmt: skip
        assert resp.status_code == 201, resp.text
        url = f"ws://127.0.0.1:{shop.service.port}/api/v1/widget/ws?token={resp.json()['token']}"
        with ws_connect(url) as ws:
            ws.send(json.dumps({"type": "message", "client_id": "c1", "text": text}))
            while True:
                frame = json.loads(ws.recv(timeout=15))
                if frame["type"] == until and frame.get("role") != "customer":
                    break


def sign_in_on_console(page: Any, shop: Shop, email: str) -> None:
    page.goto(f"{shop.service.url}/console/")
    page.fill("#login-email", email)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#console-view", state="visible")


def reports_shown(page: Any) -> None:
    page.wait_for_selector("#app", state="visible", timeout=WAIT_MS)
    page.wait_for_selector("#ops-tiles .tile", timeout=WAIT_MS)
    assert page.locator("#login").is_hidden(), "asked to sign in again"


def tile(page: Any, name: str) -> str:
    value: str = page.locator(f"#ops-tiles .tile:has(.k:text-is('{name}')) .v").inner_text()
    return value


# What session.js does to get the token from the signed-in tabs: ask on its channel, collect the answers.
ASK_FOR_THE_TOKEN = """() => new Promise((resolve) => {
  const channel = new BroadcastChannel("switchboard.agent.session");
  const got = [];
  channel.onmessage = (ev) => got.push(ev.data);
  channel.postMessage({ type: "ask" });
  setTimeout(() => { channel.close(); resolve(got); }, 1000);
})"""


@pytest.mark.parametrize("width", [1280, 375])
def test_one_sign_in_serves_the_console_and_the_reports_which_link_to_each_other(
    tabs: Any, shop: Shop, fake: FakeAnthropic, screenshot_dir: Path, width: int
) -> None:
    seed_conversations(shop, fake)
    shop.account("lee@northwind.test", "Lee", role="admin")
    tab = tabs(width)
    console = tab.page
    sign_in_on_console(console, shop, "lee@northwind.test")

    # console -> reports by its link: no second sign-in
    console.locator("#reports-link").click()
    console.wait_for_url(f"{shop.service.url}/reports/")
    reports_shown(console)
    assert tile(console, "handoff rate") == "50.0%"  # one of two conversations
    reasons = console.locator("#ops-reasons").inner_text()
    assert "Customer asked for a person" in reasons
    assert "wants_human" not in reasons
    for name in ("model cost", "cost per conversation"):
        assert MONEY.match(tile(console, name)), tile(console, name)
    model_costs = console.locator("#ops-models td:last-child").all_inner_texts()
    assert model_costs
    assert all(MONEY.match(c) for c in model_costs), model_costs
    assert console.locator("#ops-cost").get_attribute("data-unit") == "day"
    console.screenshot(path=str(screenshot_dir / f"reports-{width}.png"), full_page=True)

    # a year of range reads by month, one day by day
    today = datetime.now(UTC).date()
    set_range(console, today - timedelta(days=364), today)
    console.wait_for_selector("#ops-cost[data-unit=month]", timeout=WAIT_MS)
    start = today - timedelta(days=364)
    months = (today.year - start.year) * 12 + today.month - start.month + 1  # 12, or 13 from mid-month
    assert console.locator("#ops-cost svg rect.col").count() == months
    set_range(console, today, today)
    console.wait_for_selector("#ops-cost[data-unit=day]", timeout=WAIT_MS)
    assert console.locator("#ops-cost svg rect.col").count() == 1

    # reports -> console by its link: still signed in
    console.locator("#nav-console").click()
    console.wait_for_selector("#console-view", state="visible", timeout=WAIT_MS)
    assert console.locator("#login-view").is_hidden()

    # a new tab of the same browser, typed address: signed in too (asked the open tab)
    other = tab.new_page()
    other.goto(f"{shop.service.url}/reports/")
    reports_shown(other)

    # a page of another origin in the same browser asks the way session.js asks: it hears nothing (the
    # token is handed only to tabs of the service's own origin)
    stranger = tab.new_page()
    stranger.goto(shop.host.url)
    assert [m["type"] for m in stranger.evaluate(ASK_FOR_THE_TOKEN)] == []
    stranger.close()
    # the same probe from the service's origin is answered: the probe itself works
    assert "token" in [m["type"] for m in other.evaluate(ASK_FOR_THE_TOKEN)]

    # signing out in the reports signs out the console tab too
    other.click("#signout")
    other.wait_for_selector("#login", state="visible")
    console.wait_for_selector("#login-view", state="visible", timeout=WAIT_MS)


def set_range(page: Any, start: date, end: date) -> None:
    page.fill("#range input[name=from]", start.isoformat())
    page.fill("#range input[name=to]", end.isoformat())
    page.click("#range button[type=submit]")
