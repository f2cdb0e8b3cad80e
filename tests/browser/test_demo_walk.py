"""The demo as the README tells a newcomer to walk it, in real Chromium against ``switchboard demo`` (the
demo model and the service in one process, embedded defaults): open the demo shop, ask a policy question
and watch the answer stream in, ask for a person, an agent created with ``switchboard create-agent`` signs
in to the console, claims, replies, the customer sees the reply and rates the conversation.

Screenshots of each state at 1280 and 375 px wide go to the screenshot directory (docs/screenshots holds
the committed ones). The widget's wording and the console belong to their own tests; this walk asserts
the states the demo must reach.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests import servers
from tests.integration.test_demo import DemoProcess

W = "switchboard-widget"  # Playwright's CSS engine pierces the widget's open shadow root
WAIT_MS = 20_000
AGENT_EMAIL = "you@example.com"
AGENT_PASSWORD = "a-long-password"
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    process = DemoProcess(tmp_path_factory.mktemp("demo-walk"))
    try:
        process.wait_ready()
        # The README's command, run beside the demo (same directory, so the same embedded database).
        made = servers.run_cli(
            ["create-agent", "--email", AGENT_EMAIL, "--password", AGENT_PASSWORD, "--name", "Alex",
             "--role", "admin"],
            env=process.env, cwd=process.cwd,
        )  # fmt: skip
        assert made.returncode == 0, made.stdout
        yield process
    finally:
        process.stop()


def shot(page: Page, screenshot_dir: Path, name: str, width: int) -> None:
    page.screenshot(path=str(screenshot_dir / f"demo-{name}-{width}.png"))


def sign_in(browser: Browser, demo: DemoProcess) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{demo.url}/console/")
    page.get_by_label("Email").fill(AGENT_EMAIL)
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    return page


def send(page: Page, text: str) -> None:
    box = page.locator(f"{W} #sb-input")
    box.fill(text)
    box.press("Enter")


@pytest.mark.parametrize("width", [1280, 375])
def test_the_demo_walk_from_the_readme(
    browser: Browser, demo: DemoProcess, screenshot_dir: Path, width: int
) -> None:
    height = 800 if width > 500 else 740
    context = browser.new_context(viewport={"width": width, "height": height})
    customer = context.new_page()
    customer.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    customer.on("pageerror", lambda exc: errors.append(str(exc)))
    agent: Page | None = None
    try:
        customer.goto(f"{demo.url}/")
        expect(customer.get_by_role("link", name=re.compile("Demo shop"))).to_be_visible()
        expect(customer.locator(".mode")).to_contain_text("demo model")
        shot(customer, screenshot_dir, "landing", width)
        customer.get_by_role("link", name=re.compile("Demo shop")).click()
        customer.wait_for_selector(f"{W} .launcher", state="visible")
        expect(customer.get_by_role("heading", level=1)).to_contain_text("Gear for every trail")
        shot(customer, screenshot_dir, "shop", width)

        # A question the policy answers: the answer streams in, then settles as the bot's message.
        customer.locator(f"{W} .launcher").click()
        customer.wait_for_selector(f"{W} .state[data-state=bot]")
        send(customer, "How long do I have to return an item?")
        streaming = customer.locator(f"{W} .msg.streaming .body")
        expect(streaming).to_be_visible()
        partial = streaming.inner_text()
        answer = customer.locator(f"{W} .msg[data-role=assistant][data-seq] .body")
        expect(answer).to_contain_text("within 30 days of delivery")
        assert len(partial) < len(answer.inner_text()), "seen while streaming, before the whole answer"
        assert customer.locator(f"{W} .state").get_attribute("data-state") == "bot", "no handoff"
        shot(customer, screenshot_dir, "answer", width)

        # Asking for a person queues the conversation.
        send(customer, "Can I talk to a person?")
        customer.wait_for_selector(f"{W} .state[data-state=queued]")
        shot(customer, screenshot_dir, "queued", width)

        # The agent signs in to the console, finds the conversation with its reason, claims and replies.
        agent = sign_in(browser, demo)
        row = agent.locator("#queue-list li", has_text="Can I talk to a person?")
        expect(row).to_contain_text("Customer asked for a person")
        row.get_by_role("button", name=re.compile("^Claim conversation")).click()
        expect(agent.locator("#conv-state")).to_have_text("With Alex")
        expect(agent.locator("#transcript li[data-role=customer]")).to_contain_text(
            ["How long do I have to return an item?", "Can I talk to a person?"]
        )
        reply = "Hi, I'm Alex from Northwind. How can I help with your return?"
        composer = agent.get_by_label("Reply to the customer")
        composer.fill(reply)
        composer.press("Enter")
        expect(composer).to_have_value("")  # sent: the screenshot shows the reply in the transcript
        if width == 1280:
            agent.screenshot(path=str(screenshot_dir / "demo-console-1280.png"))

        # The customer sees the person's reply, under the person's name.
        customer.wait_for_selector(f"{W} .state[data-state=agent]")
        expect(customer.locator(f"{W} .msg[data-role=agent] .body")).to_have_text(reply)
        expect(customer.locator(f"{W} .msg[data-role=agent]")).to_contain_text("Alex")
        shot(customer, screenshot_dir, "agent-reply", width)

        # The agent resolves; the customer rates.
        agent.get_by_role("button", name="Resolve").click()
        customer.wait_for_selector(f"{W} .csat")
        customer.locator(f"{W} .csat input[value='5']").focus()
        customer.keyboard.press("Space")
        customer.locator(f"{W} .csat textarea").fill("Quick answer, and a person when I asked.")
        shot(customer, screenshot_dir, "rating", width)
        customer.locator(f"{W} .csat button[type=submit]").click()
        customer.wait_for_selector(f"{W} .thanks")
        shot(customer, screenshot_dir, "rated", width)
        assert errors == [], f"JavaScript errors on the demo page: {errors}"

        # The rating shows in the reports (the console's link, no second sign-in), grouped in words.
        agent.set_viewport_size({"width": width, "height": height})
        agent.locator("#reports-link").click()
        agent.wait_for_selector("#ops-tiles .tile")
        expect(agent.locator("#login")).to_be_hidden()
        for group_by, expected in (("intent", None), ("resolution", "Resolved by an agent")):
            agent.locator("#range select[name=group_by]").select_option(group_by)
            agent.locator("#range button[type=submit]").click()
            expect(agent.locator("#sat-groups-caption")).to_have_text(f"Average by {group_by}")
            names = agent.locator("#sat-table tr td:first-child").all_inner_texts()
            assert names, f"no rows grouped by {group_by}"
            if expected is not None:
                assert expected in names, names
            for name in names:  # words, not keys
                assert "_" not in name, names
                assert name not in ("(none)", "agent", "bot"), names
            chart = agent.locator("#sat-groups .name")
            assert chart.all_inner_texts() == names, "the chart names each group as the table does"
            for i in range(chart.count()):  # whole, not cut off at the chart's edge
                fits = chart.nth(i).evaluate(
                    "n => n.scrollWidth <= n.clientWidth && n.getBoundingClientRect().left >= 0"
                )
                assert fits, names[i]
        agent.screenshot(path=str(screenshot_dir / f"demo-reports-{width}.png"), full_page=True)
    finally:
        if agent is not None:
            agent.close()
        context.close()


def test_the_landing_page_is_html_not_a_json_404(browser: Browser, demo: DemoProcess) -> None:
    page: Any = browser.new_page()
    try:
        response = page.goto(f"{demo.url}/")
        assert response is not None
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/html")
        for name, path in (("Demo shop", "/demo"), ("Agent console", "/console/"), ("Reports", "/reports/")):
            assert page.get_by_role("link", name=re.compile(name)).get_attribute("href") == path
        expect(page.locator("pre")).to_contain_text("switchboard create-agent")
        expect(page.locator("main")).to_contain_text("printed a demo admin account")
        assert "`" not in page.locator("main").inner_text(), "commands are set as code, not in backquotes"
    finally:
        page.close()
