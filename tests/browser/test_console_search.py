"""Search, the customer profile and labels in real Chromium: an agent searches from the top bar, sees the
matched words marked (and a customer's markup shown as text, never run), opens a result, opens the
customer's profile from the packet, and labels the conversation; at 1280 px and 375 px."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from support.db.models import Rating
from support.runtime import Runtime
from support.testing.fake_anthropic import FakeAnthropic
from tests.browser.test_console import UI_TIMEOUT_MS, create_agent, sign_in
from tests.browser.test_console_ux import axe_violations
from tests.integration.test_widget_ws import start_server
from tests.redis_cluster import sync_redis_client_for
from tests.servers import ServerProcess
from tests.ticket_filing import with_tickets_sync

pytestmark = pytest.mark.timeout(120)
HOSTILE = "Refund? <img src=x onerror=\"document.title='pwned'\"> my lantern arrived broken"


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


def seed(tmp_path: Path, fake: FakeAnthropic, redis_url: str, server: ServerProcess) -> None:
    """Two conversations of Ana's (one earlier, rated) and one of Bo's, indexed."""
    now = datetime.now(UTC).replace(microsecond=0)
    ana = {"id": "v-ana", "name": "Ana Lopez", "email": "ana@example.com"}

    async def work(rt: Runtime) -> None:
        lines = [
            ("c-ana-1", ana, "customer", "Is the lantern waterproof?", 120),
            ("c-bo", {"id": "v-bo", "name": "Bo Berg"}, "customer", HOSTILE, 30),
            ("c-ana-2", ana, "customer", "I would like a refund for the tent, it leaks", 10),
            ("c-ana-2", ana, "assistant", "I can start a refund: is the tent unused?", 9),
        ]
        for cid, visitor, role, text, minutes_ago in lines:
            at = now - timedelta(minutes=minutes_ago)
            await rt.store.create_conversation(cid, widget_key="pk_test", visitor=visitor, now=at)
            await rt.store.append_event(cid, type="message", role=role, text=text, now=at)
        # Backdated messages: indexed by id (the server's periodic pass reads recent activity only).
        await rt.search_index.index_conversations(["c-ana-1", "c-bo", "c-ana-2"])
        await rt.handoff.enqueue("c-ana-2", reason="wants_human", preview="a refund for the tent")
        async with rt.sessions() as session, session.begin():
            session.add(Rating(conversation_id="c-ana-1", score=5, comment="Quick answer", resolution="bot"))

    with_tickets_sync(tmp_path / "seed", fake, redis_url, server.env["SWITCHBOARD_DATABASE_URL"], work)


def search(page: Page, q: str) -> None:
    page.locator("#search-q").fill(q)
    page.locator("#search-q").press("Enter")


def test_search_open_a_result_see_the_profile_and_label_the_conversation(
    browser: Browser, server: ServerProcess, fake: FakeAnthropic, redis_url: str, tmp_path: Path,
    screenshot_dir: Path,
) -> None:  # fmt: skip
    create_agent(server, "ada@example.com", "Ada")
    seed(tmp_path, fake, redis_url, server)
    page = sign_in(browser, server, "ada@example.com")
    # Signed in all the way (the console settles its screens then): the Team list has loaded.
    expect(page.locator("#team-count")).to_have_text("1 online")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        for width in (1280, 375):
            page.set_viewport_size({"width": width, "height": 800 if width > 400 else 740})
            search(page, "refund")
            results = page.locator("#search-results > li")
            expect(results).to_have_count(3, timeout=UI_TIMEOUT_MS)
            expect(page.locator("#search-summary")).to_contain_text("3 results for “refund”")
            # Newest first: the bot's reply, Ana's message, then Bo's older one.
            expect(results.nth(0)).to_contain_text("Message · bot")
            expect(results.nth(2).locator(".snippet")).to_have_text(HOSTILE)  # shown as text...
            assert results.nth(2).locator("img").count() == 0  # ...never as markup
            assert page.title() != "pwned"
            expect(results.nth(1).locator("mark")).to_have_text(["refund"])
            page.screenshot(path=str(screenshot_dir / f"console-search-{width}.png"), full_page=True)
            assert axe_violations(page) == [], width  # WCAG 2 A/AA, as the rest of the console

            # A result opens its conversation; the customer in the packet opens the profile.
            results.nth(1).locator(".result-open").click()
            expect(page.locator("#conv-title")).to_have_text("Ana Lopez")
            expect(page.locator("#search-view")).to_be_hidden()
            if width == 1280:
                page.locator("#conv-label-input").fill("Billing")
                page.locator("#conv-label-input").press("Enter")
                expect(page.locator("#conv-label-chips li")).to_have_text(["billing×"])
                # The queue row of the conversation shows its labels too.
                row = page.locator('#queue-list > li[data-row="c-ana-2"]')
                expect(row).to_have_count(1, timeout=UI_TIMEOUT_MS)
                expect(row.locator(".row-labels li")).to_have_text(["billing"], timeout=UI_TIMEOUT_MS)
            page.locator("#conv-customer").click()
            rows = page.locator("#profile-conversations > li")
            expect(rows).to_have_count(2)
            expect(page.locator("#profile-name")).to_have_text("Ana Lopez")
            expect(page.locator("#profile-ids")).to_contain_text("ana@example.com · visitor id v-ana")
            expect(rows.nth(0).locator(".label-chip")).to_have_text(["billing"])
            expect(rows.nth(1).locator(".label-chip")).to_have_count(0)
            expect(rows.nth(1)).to_contain_text("rated 5/5")
            expect(page.locator("#profile-rating")).to_have_text("5.0/5 over 1 rating")
            page.screenshot(path=str(screenshot_dir / f"console-profile-{width}.png"), full_page=True)
            assert axe_violations(page) == [], width
            page.locator("#profile-filter").select_option("billing")
            expect(rows).to_have_count(1)
            page.locator("#search-close").click()
            expect(page.locator("#conv-body")).to_be_visible()

        # A label the API would refuse is refused in the console first, and nothing changes.
        page.locator("#conv-label-input").fill("no spaces")
        page.locator("#conv-label-input").press("Enter")
        expect(page.locator("#alert")).to_contain_text("1 to 32 characters")
        expect(page.locator("#conv-label-chips li")).to_have_count(1)

        # The label filter of the search itself.
        search(page, "refund")
        expect(page.locator("#search-results > li")).to_have_count(3)
        page.locator("#search-label").fill("billing")
        page.locator("#search-label").press("Enter")
        expect(page.locator("#search-results > li")).to_have_count(2)
        expect(page.locator("#search-summary")).to_contain_text("with label “billing”")
        # After a reload the rows ask for their labels (GET /labels).
        page.reload()
        expect(page.locator('#queue-list > li[data-row="c-ana-2"] .row-labels li')).to_have_text(["billing"])
        expect(page.locator('#queue-list > li[data-row="c-ana-2"] .row-labels')).to_have_count(1)
        assert errors == []
    finally:
        page.close()


def test_a_label_saved_while_the_conversations_labels_load_stays_on_its_row_and_packet(
    browser: Browser, server: ServerProcess, fake: FakeAnthropic, redis_url: str, tmp_path: Path
) -> None:
    """Opening a conversation reads its labels; an agent who adds one before that answer arrives keeps it. The
    answer (read before the save) is held back 1.5 s in the page, the way a slow server would deliver it."""
    create_agent(server, "ada@example.com", "Ada")
    seed(tmp_path, fake, redis_url, server)
    page = sign_in(browser, server, "ada@example.com")
    expect(page.locator("#team-count")).to_have_text("1 online")
    page.evaluate(
        """() => {
            const fetch0 = window.fetch;
            window.fetch = async (url, init) => {
                const response = await fetch0(url, init);
                const get = !init || !init.method || init.method === "GET";
                if (get && /\\/conversations\\/[^/?]+\\/labels$/.test(String(url))) {
                    await new Promise((resolve) => setTimeout(resolve, 1500));
                }
                return response;
            };
        }"""
    )
    try:
        search(page, "refund")
        page.locator("#search-results > li").nth(1).locator(".result-open").click()
        expect(page.locator("#conv-title")).to_have_text("Ana Lopez")
        page.locator("#conv-label-input").fill("billing")
        page.locator("#conv-label-input").press("Enter")
        row = page.locator('#queue-list > li[data-row="c-ana-2"] .row-labels li')
        expect(row).to_have_text(["billing"])
        page.wait_for_timeout(2500)  # the held-back answer (no labels) has arrived by now
        expect(page.locator("#conv-label-chips li")).to_have_text(["billing×"])
        expect(row).to_have_text(["billing"])
    finally:
        page.close()
