"""The conversation reports in real Chromium: a number on the overview opens exactly the conversations
behind it, one of them opens read-only with its transcript, and the drill-down's CSV is those conversations.

``conversation_fact`` rows are seeded directly (known values, one insert); one of them belongs to a real
conversation held over the widget's WebSocket, so its transcript comes from the store.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import websockets

from support.db.models import ConversationFact
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests.browser.test_reports import session, until
from tests.browser.test_widget import Site, create_account
from tests.integration.test_widget_ws import is_answer, is_triage, triage_reply
from tests.redis_cluster import sync_redis_client_for

pytestmark = pytest.mark.timeout(120)  # a server's start-up, a real conversation, then every view twice

WAIT_MS = 20_000
PASSWORD = "correct horse battery staple"
TODAY = datetime.now(UTC).date()
D1 = datetime.combine(TODAY - timedelta(days=3), time(10), tzinfo=UTC)
D2 = datetime.combine(TODAY - timedelta(days=2), time(9), tzinfo=UTC)


@pytest.fixture
def site(tmp_path: Path, fake: FakeAnthropic, redis_url: str) -> Iterator[Site]:
    fake.reset()
    client = sync_redis_client_for(redis_url)
    client.flushdb()
    s = Site(tmp_path / "site", fake, redis_url)
    # The seeded rows are the whole truth here: the periodic refresh of report facts (which would recompute
    # the real conversation's row from its events) does not come round during the test, nor the archiver
    # (which refreshes an idle conversation's row before archiving it): periodic jobs run at whole multiples
    # of their interval, and with 10^9 s the next one is years away.
    s.env["SWITCHBOARD_REPORTS_REFRESH_S"] = "1000000000"
    s.env["SWITCHBOARD_ARCHIVE_INTERVAL_S"] = "1000000000"
    s.start()
    try:
        yield s
    finally:
        s.kill()
        client.flushdb()
        client.close()


def fact(cid: str, started: datetime, **values: Any) -> dict[str, Any]:
    """One fact row: a bot conversation whose last message was the bot's, a day before `started` ended."""
    row: dict[str, Any] = {
        "conversation_id": cid, "channel": "chat", "started_at": started, "intent": "returns_refunds",
        "policy_version": "v1", "agent_id": None, "resolution_type": "bot", "customer_messages": 1,
        "bot_messages": 1, "agent_messages": 0, "last_customer_at": started,
        "first_bot_reply_at": started + timedelta(seconds=2),
        "last_bot_reply_at": started + timedelta(seconds=2),
        "bot_first_response_s": 2.0, "handoff_count": 0, "handed_off_at": None, "handoff_reason": None,
        "queue_wait_s": None, "human_first_response_s": None, "resolved_at": None, "resolved_by": None,
        "resolution_s": 2.0, "confirmed": False, "reopened": False, "rating": None, "rated_at": None,
        "predicted_score": None, "predicted_reason": None, "predicted_at": None, "cost_usd": Decimal("0.01"),
        "model_calls": 2, "updated_at": started,
    }  # fmt: skip
    row.update(values)
    return row


def seed(site: Site, real_id: str, ada_id: str) -> None:
    """Returns and refunds: two assumed bot resolutions (one the real conversation), one confirmed, one
    handed off to Ada; a warranty conversation nobody answered; one not triaged; one outside the range."""
    rows = [
        fact("c-assumed", D1, predicted_score=4, predicted_reason="The answer covered the question."),
        fact(real_id, D2, cost_usd=Decimal("0.0042")),
        fact("c-confirmed", D1 + timedelta(hours=1), confirmed=True, rating=5, rated_at=D1, resolved_at=D1),
        fact("c-handoff", D2 + timedelta(hours=1), resolution_type="handed_off", agent_id=ada_id,
             handoff_count=1, handoff_reason="low_confidence", handed_off_at=D2, queue_wait_s=30.0,
             human_first_response_s=60.0, agent_messages=1, resolved_at=D2 + timedelta(hours=2),
             resolved_by="agent", resolution_s=3600.0, rating=2, rated_at=D2 + timedelta(hours=2)),
        fact("c-unanswered", D2 + timedelta(hours=2), intent="warranty_repairs", resolution_type="unanswered",
             handoff_count=1, handoff_reason="wants_human", handed_off_at=D2 + timedelta(hours=2),
             predicted_score=1, predicted_reason="Asked for a person; nobody replied."),
        fact("c-untriaged", D2 + timedelta(hours=3), intent=None, rating=1, rated_at=D2, resolved_at=D2,
             resolved_by="customer"),
        fact("c-old", D1 - timedelta(days=20)),
    ]  # fmt: skip
    engine = sa.create_engine(site.database_url.replace("+aiosqlite", ""))
    try:
        with engine.begin() as conn:
            table = ConversationFact.__table__  # type: ignore[attr-defined]
            conn.execute(table.delete())  # none the server wrote itself: the seeded rows are all there is
            conn.execute(table.insert(), rows)
    finally:
        engine.dispose()


async def real_conversation(site: Site) -> str:
    """A conversation the bot answers over the widget's WebSocket; its id."""
    opened = session(site)
    ws_url = f"ws://127.0.0.1:{site.port}/api/v1/widget/ws?token={opened['token']}"
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"type": "message", "client_id": "a", "text": "How long do returns take?"}))
        await until(ws, lambda f: f["type"] == "message" and f["role"] == "assistant")
    return str(opened["conversation_id"])


def drill_ids(page: Any) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        "#drill-table tr[data-id]", "rows => rows.map(r => r.dataset.id)"
    )
    return ids


def test_a_number_opens_its_conversations_one_reads_read_only_and_the_csv_matches(
    browser: Any, site: Site, fake: FakeAnthropic, screenshot_dir: Path
) -> None:
    fake.add_rule(lambda body: triage_reply() if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text="Returns take 5 days.") if is_answer(body) else None)
    create_account(site, "root@example.com", "Root", role="admin")
    create_account(site, "ada@example.com", "Ada")
    ada = httpx.post(
        f"{site.url}/api/v1/agent/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    with ThreadPoolExecutor(1) as pool:  # sync Playwright owns this thread's event loop
        real_id = pool.submit(asyncio.run, real_conversation(site)).result()
    seed(site, real_id, ada.json()["agent"]["id"])

    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{site.url}/reports/")
        page.fill("#login input[name=email]", "root@example.com")
        page.fill("#login input[name=password]", PASSWORD)
        page.click("#login button[type=submit]")
        page.wait_for_selector("#ov-tiles .tile", timeout=WAIT_MS)
        page.fill("#range input[name=from]", (TODAY - timedelta(days=6)).isoformat())
        page.fill("#range input[name=to]", TODAY.isoformat())
        page.select_option("#range select[name=group_by]", "intent")
        page.click("#range button[type=submit]")
        returns = page.locator("#ov-resolution tr", has_text="Returns and refunds")
        returns.wait_for(timeout=WAIT_MS)
        assert page.locator("#ov-tiles .tile").first.inner_text().startswith("6\n")  # c-old is out of range
        cells = returns.locator("td").all_inner_texts()
        # intent, conversations, bot only, handed off, unanswered, person only, confirmed, assumed, ...
        assert cells[:8] == ["Returns and refunds", "4", "3", "1", "0", "0", "1", "2"], cells
        tiles = page.locator("#ov-tiles").inner_text()
        assert "33.3%\nCSAT" in tiles  # 1 of the 3 rated; the two predictions are not mixed in
        assert "50.0%\npredicted CSAT" in tiles  # 1 of the 2 predicted, beside it
        page.screenshot(path=str(screenshot_dir / "reports-overview-1280.png"), full_page=True)

        # the 2 assumed bot resolutions of Returns and refunds: exactly those two, newest first
        returns.locator("td").nth(7).locator("a").click()
        page.wait_for_selector("#drill-table tr[data-id]", timeout=WAIT_MS)
        assert drill_ids(page) == [real_id, "c-assumed"]
        filters = page.locator("#drill-filters li").all_inner_texts()
        assert "Intent: Returns and refunds" in filters, filters
        assert any(f.startswith("Only conversations resolved by the bot, assumed") for f in filters), filters
        assert page.locator("#drill-more").is_hidden()
        page.screenshot(path=str(screenshot_dir / "reports-drilldown-1280.png"), full_page=True)

        # the CSV is the full export of the same conversations
        with page.expect_download() as download:
            page.click("#drill-csv")
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert [r["conversation_id"] for r in rows] == [real_id, "c-assumed"]
        assert [r["bot_resolution"] for r in rows] == ["assumed", "assumed"]

        # open the real one: its transcript and facts, nothing to reply or claim with
        page.locator(f"#drill-table tr[data-id='{real_id}'] a.open").click()
        page.wait_for_selector("#conv-transcript .msg[data-role=assistant]", timeout=WAIT_MS)
        transcript = page.locator("#conv-transcript .msg .text").all_inner_texts()
        assert transcript == ["How long do returns take?", "Returns take 5 days."]
        facts = page.locator("#conv-facts").inner_text()
        for shown in ("assumed", "Returns and refunds", "$0.0042"):
            assert shown in facts, (shown, facts)
        for hidden in ("textarea", "input", "button:has-text('Claim')", "button:has-text('Send')"):
            assert page.locator(f"#conversation {hidden}").count() == 0, hidden
        page.screenshot(path=str(screenshot_dir / "reports-conversation-1280.png"), full_page=True)

        # back to the list; all four Returns conversations, three to a page: "More" brings the fourth
        page.click("#conv-back")
        page.wait_for_selector("#drill-table tr[data-id]")
        page.go_back()  # the overview
        returns.locator("td").nth(1).locator("a").click()
        page.wait_for_function("location.hash.startsWith('#conversations?')")
        page.evaluate("location.hash += '&limit=3'")
        page.wait_for_function("document.querySelectorAll('#drill-table tr[data-id]').length === 3")
        page.click("#drill-more")
        page.wait_for_function("document.querySelectorAll('#drill-table tr[data-id]').length === 4")
        assert drill_ids(page) == ["c-handoff", real_id, "c-confirmed", "c-assumed"]
        assert page.locator("#drill-more").is_hidden()

        # a phone: the page itself never scrolls sideways (tables scroll inside their cards)
        page.set_viewport_size({"width": 375, "height": 800})
        views = {"overview": "#overview", "drilldown": page.evaluate("location.hash"),
                 "conversation": f"#conversation/{real_id}"}  # fmt: skip
        for name, view in views.items():
            page.evaluate(f"location.hash = {json.dumps(view)}")
            page.wait_for_timeout(600)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, (view, width)
            page.screenshot(path=str(screenshot_dir / f"reports-{name}-375.png"), full_page=True)
    finally:
        context.close()
    assert errors == []
