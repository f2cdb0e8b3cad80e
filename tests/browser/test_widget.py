"""The embeddable widget in real Chromium, against ``switchboard serve`` subprocesses and the fake model API.

Every test loads the demo host page (``/demo``, with its hostile CSS) from a real server, so the widget is
embedded exactly as a customer's site embeds it: one ``<script>`` tag, the API derived from its ``src``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

# REPORT_IMPORT
# ENGINE_IMPORT
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests.integration.test_widget_ws import is_answer, is_triage, triage_reply
from tests.servers import ServerProcess, free_port

ANSWER_MODEL = "claude-sonnet-4-6"
WAIT_MS = 20_000
W = "switchboard-widget"  # Playwright's CSS engine pierces the widget's open shadow root


class Site:
    """A server whose own origin is allowed for the ``pk_test`` widget key, restartable on the same port."""

    def __init__(self, data: Path, fake: FakeAnthropic, redis_url: str) -> None:
        self.port = free_port()
        self.data = data
        origin = f"http://127.0.0.1:{self.port}"
        self.env = {
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": fake.url,
            "SWITCHBOARD_REDIS_URL": redis_url,
            "SWITCHBOARD_DATABASE_URL": self.database_url,
            "SWITCHBOARD_WIDGET_KEYS": json.dumps({"pk_test": [origin]}),
            "SWITCHBOARD_LLM_REQUESTS_PER_MINUTE": "10000",
        }
        self.proc = ServerProcess(data, env=self.env, port=self.port)

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.data / 'db.sqlite3'}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Site:
        self.proc = ServerProcess(self.data, env=self.env, port=self.port).start()
        return self

    def kill(self) -> None:
        self.proc.kill()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def fake_api(fake: FakeAnthropic) -> FakeAnthropic:
    fake.reset()
    return fake


@pytest.fixture
def site(tmp_path: Path, fake_api: FakeAnthropic, redis_url: str) -> Iterator[Site]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    s = Site(tmp_path / "site", fake_api, redis_url).start()
    try:
        yield s
    finally:
        s.kill()
        client.flushdb()
        client.close()


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(f"{site.url}/demo?key=pk_test")
    pg.wait_for_selector(f"{W} .launcher", state="visible")
    try:
        yield pg
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def answer_with(fake: FakeAnthropic, text: str) -> None:
    fake.add_rule(lambda body: triage_reply() if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text=text) if is_answer(body) else None)


def open_panel(page: Any) -> None:
    page.locator(f"{W} .launcher").click()
    page.wait_for_selector(f"{W} .panel", state="visible")
    page.wait_for_selector(f"{W} .state[data-state=bot]")


def send(page: Any, text: str) -> None:
    box = page.locator(f"{W} #sb-input")
    box.fill(text)
    box.press("Enter")


def bubbles(page: Any, role: str) -> list[str]:
    texts: list[str] = page.locator(f"{W} .msg[data-role={role}] .body").all_text_contents()
    return texts


def shot(page: Any, screenshot_dir: Path, name: str) -> None:
    page.screenshot(path=str(screenshot_dir / f"widget-{name}.png"))


def test_a_reply_streams_in_and_the_persisted_message_replaces_it_in_place(
    page: Any, fake_api: FakeAnthropic, screenshot_dir: Path
) -> None:
    reply = (
        "You can return an unused tent within 30 days of delivery. Start the return from your order page, "
        "print the free label, and the refund reaches your card within 5 business days of arrival."
    )
    answer_with(fake_api, reply)
    fake_api.set_latency(tps=25, model=ANSWER_MODEL)  # slow enough that the stream is watchable
    shot(page, screenshot_dir, "closed")
    open_panel(page)
    shot(page, screenshot_dir, "open")
    page.evaluate(
        """() => {
        window.__persisted = [];
        Switchboard.on('message', (m) => window.__persisted.push(m));
        const log = document.querySelector('switchboard-widget').shadowRoot.querySelector('.log');
        window.__trace = [];
        new MutationObserver(() => {
          const node = log.querySelector('.msg[data-role=assistant]');
          if (!node) return;
          if (!window.__first) window.__first = node;
          const text = node.querySelector('.body').textContent;
          const last = window.__trace[window.__trace.length - 1];
          if (!last || last.text !== text || last.seq !== node.dataset.seq)
            window.__trace.push({text, seq: node.dataset.seq || null, same: node === window.__first,
                                 streaming: node.classList.contains('streaming')});
        }).observe(log, {subtree: true, childList: true, characterData: true, attributes: true});
      }"""
    )
    send(page, "Can I return my tent?")
    page.wait_for_selector(f"{W} .msg.streaming", timeout=WAIT_MS)
    shot(page, screenshot_dir, "streaming")
    page.wait_for_selector(f"{W} .msg[data-role=assistant][data-seq]", timeout=WAIT_MS)
    trace: list[dict[str, Any]] = page.evaluate("window.__trace")
    persisted = [m for m in page.evaluate("window.__persisted") if m["role"] == "assistant"]

    streamed = [step["text"] for step in trace if step["streaming"]]
    assert len(set(streamed)) >= 3, f"several distinct intermediate texts, got {streamed}"
    assert all(reply.startswith(text) for text in streamed), "each intermediate text is a prefix"
    assert len(persisted) == 1
    assert persisted[0]["text"] == reply
    assert trace[-1] == {"text": reply, "seq": str(persisted[0]["seq"]), "same": True, "streaming": False}
    assert all(step["same"] for step in trace), "the streamed bubble is finalised in place, never replaced"
    assert bubbles(page, "assistant") == [reply]
    assert bubbles(page, "customer") == ["Can I return my tent?"]


def widget_geometry(page: Any) -> dict[str, Any]:
    """Boxes and computed styles of the widget's parts, as the page renders them."""
    result: dict[str, Any] = page.evaluate(
        """() => {
        const host = document.querySelector('switchboard-widget');
        const root = host.shadowRoot;
        const pick = (el) => {
          const r = el.getBoundingClientRect();
          const s = getComputedStyle(el);
          return {box: [r.x, r.y, r.width, r.height].map(Math.round), display: s.display,
                  font: s.fontFamily + ' ' + s.fontSize + ' ' + s.lineHeight, color: s.color,
                  bg: s.backgroundColor, border: s.borderTopStyle + ' ' + s.borderTopWidth,
                  spacing: s.letterSpacing, transform: s.transform, opacity: s.opacity, filter: s.filter};
        };
        const out = {host: pick(host)};
        for (const sel of ['.launcher', '.launcher svg', '.panel', 'header', 'h2', '.state', '.log',
                           '.msg', '#sb-input', 'form.compose .primary', '[data-act=human]'])
          { const el = root.querySelector(sel); out[sel] = el ? pick(el) : null; }
        return out;
      }"""
    )
    return result


def test_the_host_pages_hostile_css_changes_nothing_in_the_widget(
    page: Any, fake_api: FakeAnthropic, screenshot_dir: Path
) -> None:
    answer_with(fake_api, "Hello from Northwind.")
    open_panel(page)
    send(page, "Hi")
    page.wait_for_selector(f"{W} .msg[data-role=assistant][data-seq]", timeout=WAIT_MS)
    host_button = page.locator("#host-button")
    assert not host_button.is_visible(), "the hostile sheet really applies to the host page"
    hostile = widget_geometry(page)
    shot(page, screenshot_dir, "hostile-css")
    page.evaluate("document.getElementById('hostile').disabled = true")
    assert host_button.is_visible()
    calm = widget_geometry(page)
    assert hostile == calm
    assert calm[".panel"]["display"] == "flex"
    assert calm[".launcher"]["box"][2:] == [56, 56]
    assert calm[".msg"]["font"].endswith("15px 21.75px")
