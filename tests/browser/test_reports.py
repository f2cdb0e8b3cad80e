"""The report pages in real Chromium: an admin signs in and sees satisfaction and operations figures and
charts computed from real conversations (bot answer, handoff with an agent reply, ratings)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests.browser.test_widget import Site, create_account
from tests.integration.test_widget_ws import is_answer, is_triage, triage_reply
from tests.redis_cluster import sync_redis_client_for

WAIT_MS = 20_000


@pytest.fixture
def site(tmp_path: Path, fake: FakeAnthropic, redis_url: str) -> Iterator[Site]:
    fake.reset()
    client = sync_redis_client_for(redis_url)
    client.flushdb()
    s = Site(tmp_path / "site", fake, redis_url).start()
    try:
        yield s
    finally:
        s.kill()
        client.flushdb()
        client.close()


def session(site: Site) -> dict[str, Any]:
    resp = httpx.post(
        f"{site.url}/api/v1/widget/sessions", json={"widget_key": "pk_test"}, headers={"Origin": site.url}
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def until(ws: Any, pred: Any) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 15))
        if pred(frame):
            return frame


async def conversations(site: Site, agent: dict[str, str]) -> None:
    """One bot-answered conversation closed with a 5; one handed off, answered by Ada, resolved, rated 3."""
    ws_url = f"ws://127.0.0.1:{site.port}/api/v1/widget/ws?token="
    bot = session(site)
    async with websockets.connect(ws_url + bot["token"]) as ws:
        await ws.send(json.dumps({"type": "message", "client_id": "a", "text": "How long do returns take?"}))
        await until(ws, lambda f: f["type"] == "message" and f["role"] == "assistant")
        await ws.send(json.dumps({"type": "close"}))
        await until(ws, lambda f: f["type"] == "rating_request")
        await ws.send(json.dumps({"type": "rating", "score": 5}))
        await asyncio.sleep(0.3)
    human = session(site)
    cid = human["conversation_id"]
    async with websockets.connect(ws_url + human["token"]) as ws:
        await ws.send(json.dumps({"type": "message", "client_id": "b", "text": "Can you engrave my tent?"}))
        await until(ws, lambda f: f["type"] == "status" and f["state"] == "queued")
        base = f"{site.url}/api/v1/agent/conversations/{cid}"
        assert httpx.post(f"{base}/claim", headers=agent).status_code == 200
        sent = httpx.post(f"{base}/messages", json={"text": "We don't engrave, sorry."}, headers=agent)
        assert sent.status_code == 201
        assert httpx.post(f"{base}/resolve", headers=agent).status_code == 200
        await until(ws, lambda f: f["type"] == "rating_request")
        await ws.send(json.dumps({"type": "rating", "score": 3, "comment": "ok"}))
        await asyncio.sleep(0.3)


def test_an_admin_sees_satisfaction_and_operations_with_charts(
    browser: Any, site: Site, fake: FakeAnthropic, screenshot_dir: Path
) -> None:
    fake.add_rule(
        lambda body: (
            (triage_reply(confidence=0.1) if "engrave" in json.dumps(body["messages"]) else triage_reply())
            if is_triage(body)
            else None
        )
    )
    fake.add_rule(lambda body: Reply(text="Returns take 5 days.") if is_answer(body) else None)
    create_account(site, "root@example.com", "Root", role="admin")
    ada = create_account(site, "ada@example.com", "Ada")
    with ThreadPoolExecutor(1) as pool:  # sync Playwright owns this thread's event loop
        pool.submit(asyncio.run, conversations(site, ada)).result()

    context = browser.new_context(viewport={"width": 1200, "height": 1400})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{site.url}/reports/")
        # an agent is not let in
        page.fill("#login input[name=email]", "ada@example.com")
        page.fill("#login input[name=password]", "correct horse battery staple")
        page.click("#login button[type=submit]")
        page.wait_for_function("document.getElementById('login-error').textContent.includes('admins')")
        page.fill("#login input[name=email]", "root@example.com")
        page.click("#login button[type=submit]")
        page.wait_for_selector("#sat-tiles .tile", timeout=WAIT_MS)
        assert not page.is_visible("#login")
        deadline = time.monotonic() + 10
        while "2" not in page.inner_text("#sat-tiles .tile:first-child .v") and time.monotonic() < deadline:
            page.click("#range button[type=submit]")  # ratings land a moment after their frame
            time.sleep(0.3)
        sat = page.inner_text("#sat-tiles")
        assert "2\nratings" in sat
        assert "4.00\naverage" in sat
        ops = page.inner_text("#ops-tiles")
        assert "2\nconversations" in ops
        assert "50.0%\nhandoff rate" in ops
        assert page.locator("#sat-dist .hbars li").count() == 5
        assert page.inner_text("#ops-reasons").split("\n") == ["Bot not confident enough to answer", "1"]
        assert page.locator("#ops-volume svg rect").count() >= 2
        assert "claude-sonnet-4-6" in page.inner_text("#ops-models")
        page.select_option("#range select[name=group_by]", "agent")
        page.click("#range button[type=submit]")
        page.wait_for_function("document.getElementById('sat-table').textContent.includes('Ada')")
        page.screenshot(path=str(screenshot_dir / "reports.png"), full_page=True)
    finally:
        context.close()
    assert errors == []
