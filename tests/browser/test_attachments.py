"""Attachments in real Chromium: a customer on a company's page (another origin) attaches an image in the
widget, the agent sees it in the console, claims the conversation and answers with a PDF, which the
customer sees as a download link. Screenshots at 1280 and 375 px for docs/."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import expect

from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests import servers
from tests.browser.test_widget import WAIT_MS, W, open_panel
from tests.browser.test_widget_cross_origin import StaticSite, page_on
from tests.integration.test_widget_ws import is_answer, is_triage, triage_reply
from tests.redis_cluster import sync_redis_client_for
from tests.servers import ServerProcess

PASSWORD = "correct horse battery staple"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def photo() -> bytes:
    """A recognisable picture: a tent-green square with a light band, 320 x 200."""
    image = Image.new("RGB", (320, 200), (47, 74, 58))
    for x in range(320):
        for y in range(80, 120):
            image.putpixel((x, y), (246, 241, 231))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def setup(tmp_path: Path, fake: FakeAnthropic, redis_url: str) -> Iterator[tuple[ServerProcess, StaticSite]]:
    fake.reset()
    # The worker's Redis may hold another test's handoff: this test's queue must hold only its own.
    redis = sync_redis_client_for(redis_url)
    redis.flushdb()
    redis.close()
    # Triage is unsure: the conversation goes to a person, who sees the picture in the console.
    fake.add_rule(lambda body: triage_reply(confidence=0.2) if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text="Sorry to see that.") if is_answer(body) else None)
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
        }
    )
    service.data_dir.mkdir(parents=True)
    servers.create_agent(service.env, service.data_dir, "grace@example.com", PASSWORD, "Grace")
    service.start()
    try:
        yield service, site
    finally:
        service.kill()
        site.close()


def loaded(locator: Any) -> None:
    """The <img> has decoded pixels (it loaded, across origins, with its token or the agent's)."""
    expect(locator).to_be_visible(timeout=WAIT_MS)
    # Polled, not img.decode(): a transcript refresh may replace the element mid-load (its decode() then
    # rejects), and the new element loads the same picture.
    deadline = time.monotonic() + WAIT_MS / 1000
    width = 0
    while time.monotonic() < deadline:
        width = locator.evaluate("img => (img.complete ? img.naturalWidth : 0)")
        if width:
            break
        time.sleep(0.05)
    assert width == 320


def test_a_customer_attaches_an_image_the_agent_sees_it_and_answers_with_a_pdf(
    browser: Any, setup: tuple[ServerProcess, StaticSite], screenshot_dir: Path
) -> None:
    service, site = setup
    context, page, errors = page_on(browser, site.url, 1280)
    console = context.new_page()
    try:
        open_panel(page)
        # A page renamed .png is refused by the server, and the widget says so in words; nothing is sent.
        page.locator(f"{W} input[type=file]").set_input_files(
            {"name": "pole.png", "mimeType": "image/png", "buffer": b"<html><script>alert(1)</script></html>"}
        )
        expect(page.locator(f"{W} .typing")).to_contain_text("Could not attach pole.png", timeout=WAIT_MS)
        assert page.locator(f"{W} .msg[data-role=customer]").count() == 0
        page.locator(f"{W} #sb-input").fill("The tent pole snapped on the first night")
        page.locator(f"{W} input[type=file]").set_input_files(
            {"name": "pole.png", "mimeType": "image/png", "buffer": photo()}
        )
        mine = page.locator(f"{W} .msg[data-role=customer][data-seq]")
        expect(mine).to_have_count(1, timeout=WAIT_MS)
        expect(mine.locator(".body")).to_have_text("The tent pole snapped on the first night")
        loaded(mine.locator(".atts img"))
        assert mine.locator(".atts img").get_attribute("alt") == "Image pole.png"
        page.wait_for_selector(f"{W} .state[data-state=queued]", timeout=WAIT_MS)

        console.set_viewport_size({"width": 1280, "height": 800})
        console.goto(f"{service.url}/console/")
        console.get_by_label("Email").fill("grace@example.com")
        console.get_by_label("Password").fill(PASSWORD)
        console.get_by_role("button", name="Sign in").click()
        console.locator("#queue-list li", has_text="The tent pole snapped").locator("button.claim-btn").click(
            timeout=WAIT_MS
        )
        expect(console.locator("#conv-state")).to_have_text("With Grace", timeout=WAIT_MS)
        shown = console.locator("#transcript li[data-role=customer] .atts img")
        loaded(shown)
        assert (shown.get_attribute("src") or "").startswith("blob:"), "read with the token, not by URL"

        # The agent answers with a PDF: the customer gets a download link under the agent's message.
        console.locator("#attach-input").set_input_files(
            {"name": "warranty.pdf", "mimeType": "application/pdf", "buffer": PDF}
        )
        expect(console.locator("#composer-attachments")).to_contain_text("warranty.pdf")
        console.get_by_label("Reply to the customer").fill("Here is the warranty form, we send a new pole.")
        console.locator("#send").click()
        expect(console.locator("#transcript li[data-role=agent] .atts .att-file")).to_have_text(
            "PDF · warranty.pdf"
        )
        link = page.locator(f"{W} .msg[data-role=agent] .atts a.file")
        expect(link).to_have_text("PDF warranty.pdf", timeout=WAIT_MS)
        assert "/api/v1/widget/attachments/" in (link.get_attribute("href") or "")
        assert link.get_attribute("rel") == "noopener noreferrer"

        for width, height in ((1280, 800), (375, 740)):
            page.set_viewport_size({"width": width, "height": height})
            console.set_viewport_size({"width": width, "height": height})
            mine.evaluate("node => node.scrollIntoView({block: 'start'})")
            page.screenshot(path=str(screenshot_dir / f"widget-attachment-{width}.png"))
            console.locator("#transcript li[data-role=customer] .atts").scroll_into_view_if_needed()
            console.screenshot(path=str(screenshot_dir / f"console-attachment-{width}.png"))
    finally:
        context.close()
    assert errors == []
