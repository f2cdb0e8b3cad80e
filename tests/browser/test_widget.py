"""The embeddable widget in real Chromium, against ``switchboard serve`` subprocesses and the fake model API.

Every test loads the demo host page (``/demo``, with its hostile CSS) from a real server, so the widget is
embedded exactly as a customer's site embeds it: one ``<script>`` tag, the API derived from its ``src``.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import keys
from support.testing.fake_anthropic import FakeAnthropic, Reply, grounded_citations
from tests import servers
from tests.integration.test_widget_ws import is_answer, is_triage, triage_reply
from tests.redis_cluster import sync_redis_client_for
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


@pytest.fixture
def fake_api(fake: FakeAnthropic) -> FakeAnthropic:
    fake.reset()
    return fake


@pytest.fixture
def site(tmp_path: Path, fake_api: FakeAnthropic, redis_url: str) -> Iterator[Site]:
    client = sync_redis_client_for(redis_url)
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
    pg.goto(f"{site.url}/demo/hostile?key=pk_test")
    pg.wait_for_selector(f"{W} .launcher", state="visible")
    try:
        yield pg
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


STUB = (
    "window.Switchboard = window.Switchboard || {q: []};"
    "['open','close','identify','setLocale','setTheme','on','reset'].forEach(function (m) {"
    "  Switchboard[m] = Switchboard[m] || function () { Switchboard.q.push([m, [].slice.call(arguments)]); };"
    "});"
)


def answer_with(fake: FakeAnthropic, text: str) -> None:
    """Triage says answer; the answer is ``text``, citing the policy (so it is never handed off as
    ungrounded, whatever its language)."""
    fake.add_rule(lambda body: triage_reply() if is_triage(body) else None)
    fake.add_rule(
        lambda body: Reply(text=text, citations=grounded_citations(body, text)) if is_answer(body) else None
    )


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


def create_account(site: Site, email: str, name: str, role: str = "agent") -> dict[str, str]:
    """An account made with the real CLI, logged in over HTTP; returns the Authorization header."""
    password = "correct horse battery staple"
    servers.create_agent(site.proc.env, site.data, email, password, name, role)
    login = httpx.post(f"{site.url}/api/v1/agent/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['token']}"}


def satisfaction(site: Site, admin: dict[str, str], group_by: str) -> dict[str, Any]:
    """The satisfaction report over HTTP, polled briefly: the rating row is written right after the frame."""
    deadline = time.monotonic() + 10
    while True:
        resp = httpx.get(
            f"{site.url}/api/v1/reports/satisfaction", params={"group_by": group_by}, headers=admin
        )
        assert resp.status_code == 200, resp.text
        report: dict[str, Any] = resp.json()
        if report["count"] or time.monotonic() > deadline:
            return report
        time.sleep(0.2)


def rate(page: Any, score: int, comment: str, screenshot_dir: Path | None = None) -> None:
    """Answer the CSAT prompt with the keyboard: focus the score, Space picks it, then the comment."""
    page.wait_for_selector(f"{W} .csat", timeout=WAIT_MS)
    submit = page.locator(f"{W} .csat button[type=submit]")
    assert submit.is_disabled(), "nothing to send before a score is picked"
    page.locator(f"{W} .csat input[value='{score}']").focus()
    page.keyboard.press("Space")
    page.locator(f"{W} .csat textarea").fill(comment)
    if screenshot_dir is not None:
        shot(page, screenshot_dir, "csat")
    submit.click()
    page.wait_for_selector(f"{W} .thanks")


def shot(page: Any, screenshot_dir: Path, name: str) -> None:
    """A picture for docs/widget.md: on the shop as visitors see it, so the hostile sheet (which makes the
    host page look broken on purpose) is off while it is taken, except for the picture of that sheet."""
    calm = name != "hostile-css"
    toggle = "on => { const sheet = document.getElementById('hostile'); if (sheet) sheet.disabled = on; }"
    if calm:
        page.evaluate(toggle, True)
    page.screenshot(path=str(screenshot_dir / f"widget-{name}.png"))
    if calm:
        page.evaluate(toggle, False)


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


def last_user_text(body: dict[str, Any]) -> str:
    """The new customer message: the last text block (on a first turn the knowledge documents and the
    curated examples open the same user turn)."""
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return str([b.get("text", "") for b in content if b.get("type") == "text"][-1])


def echo_answers(fake: FakeAnthropic) -> None:
    """Triage says answer; the answer names the question, so each reply is distinguishable."""
    fake.add_rule(lambda body: triage_reply() if is_triage(body) else None)
    fake.add_rule(
        lambda body: Reply(text=f"Answer to: {last_user_text(body).split(chr(10))[-1]}")
        if is_answer(body) else None
    )  # fmt: skip


def stored_events(redis_url: str, page: Any) -> list[dict[bytes, bytes]]:
    """The conversation's persisted events, read straight from Redis (the widget's token names it)."""
    saved = json.loads(
        page.evaluate("Object.entries(localStorage).find(([k]) => k.startsWith('switchboard:'))[1]")
    )
    client = sync_redis_client_for(redis_url)
    try:
        return [fields for _id, fields in client.xrange(keys.conv_events(saved["conversationId"]))]
    finally:
        client.close()


def test_a_server_killed_mid_conversation_comes_back_with_nothing_lost_or_duplicated(
    page: Any, site: Site, fake_api: FakeAnthropic, redis_url: str, screenshot_dir: Path
) -> None:
    echo_answers(fake_api)
    open_panel(page)
    send(page, "Do you ship to Norway?")
    page.wait_for_selector(f"{W} .msg[data-role=assistant][data-seq]", timeout=WAIT_MS)

    site.kill()  # SIGKILL: no drain, the socket just dies
    page.wait_for_selector(f"{W} .state[data-state=offline]", timeout=WAIT_MS)
    send(page, "And what about Iceland?")  # typed while the server is down: queued, not lost
    page.wait_for_selector(f"{W} .msg.pending[data-role=customer]")
    assert "offline" in page.locator(f"{W} .state").inner_text().lower()
    outbox = json.loads(
        page.evaluate("Object.entries(localStorage).find(([k]) => k.startsWith('switchboard:'))[1]")
    )
    assert [m["text"] for m in outbox["outbox"]] == ["And what about Iceland?"]
    shot(page, screenshot_dir, "offline")

    site.start()  # same port, data directory and Redis
    page.wait_for_function(
        """() => document.querySelector('switchboard-widget').shadowRoot
                 .querySelectorAll('.msg[data-role=assistant][data-seq]').length === 2""",
        timeout=40_000,
    )
    expected_customer = ["Do you ship to Norway?", "And what about Iceland?"]
    expected_assistant = ["Answer to: Do you ship to Norway?", "Answer to: And what about Iceland?"]
    assert bubbles(page, "customer") == expected_customer
    assert bubbles(page, "assistant") == expected_assistant
    assert page.locator(f"{W} .msg.pending").count() == 0
    seqs = [
        int(s) for s in page.locator(f"{W} .log [data-seq]").evaluate_all("ns => ns.map(n => n.dataset.seq)")
    ]
    assert seqs == sorted(set(seqs)), "every persisted event once, in order"
    events = stored_events(redis_url, page)
    assert [e[b"text"].decode() for e in events if e[b"role"] == b"customer"] == expected_customer

    page.reload()  # a reload resumes the same conversation from the token in localStorage
    page.wait_for_function(
        """() => document.querySelector('switchboard-widget').shadowRoot
                 .querySelectorAll('.msg[data-role=assistant][data-seq]').length === 2""",
        timeout=WAIT_MS,
    )
    assert bubbles(page, "customer") == expected_customer
    assert bubbles(page, "assistant") == expected_assistant


def test_the_csat_prompt_after_resolution_submits_a_rating_the_report_counts(
    page: Any, site: Site, fake_api: FakeAnthropic, screenshot_dir: Path
) -> None:
    answer_with(fake_api, "Returns are free within 30 days.")
    open_panel(page)
    send(page, "Are returns free?")
    page.wait_for_selector(f"{W} .msg[data-role=assistant][data-seq]", timeout=WAIT_MS)
    admin = create_account(site, "lee@northwind.test", "Lee", role="admin")
    assert satisfaction(site, admin, "intent")["count"] == 0
    page.locator(f"{W} [data-act=end]").click()
    page.wait_for_selector(f"{W} .csat", timeout=WAIT_MS)
    assert page.locator(f"{W} .state").get_attribute("data-state") == "resolved"
    rate(page, 4, "Quick and clear", screenshot_dir)

    by_intent = satisfaction(site, admin, "intent")
    assert (by_intent["count"], by_intent["average"]) == (1, 4.0)
    assert [(g["key"], g["count"], g["distribution"]["4"]) for g in by_intent["groups"]] == [
        ("returns_refunds", 1, 1)
    ]
    by_resolution = satisfaction(site, admin, "resolution")
    assert [(g["key"], g["count"]) for g in by_resolution["groups"]] == [("bot", 1)]
    page.reload()  # the rating is remembered: a reload does not ask again
    page.wait_for_selector(f"{W} .sys[data-seq]", timeout=WAIT_MS)
    page.wait_for_function(
        "() => document.querySelector('switchboard-widget').shadowRoot.querySelector('.state').dataset.state"
        " === 'resolved'",
        timeout=WAIT_MS,
    )
    assert page.locator(f"{W} .csat").count() == 0


def test_a_handoff_shows_the_queue_then_the_agents_reply(
    page: Any, site: Site, fake_api: FakeAnthropic, screenshot_dir: Path
) -> None:
    fake_api.add_rule(lambda body: triage_reply(wants_human=True) if is_triage(body) else None)
    # The documented stub: calls made before widget.js loads are queued and replayed by it.
    page.context.add_init_script(
        STUB + "Switchboard.identify({id: 'u-42', name: 'Ada Lovelace', email: 'ada@example.test'});"
    )
    page.reload()
    open_panel(page)
    send(page, "I want to talk to a person about my broken stove")
    page.wait_for_selector(f"{W} .state[data-state=queued]", timeout=WAIT_MS)
    assert page.locator(f"{W} [data-act=human]").is_hidden(), "already waiting for a person"
    assert "waiting for a person" in page.locator(f"{W} .state").inner_text().lower()
    shot(page, screenshot_dir, "queued")

    # The agent side through the real agent HTTP API: claim, type, reply, resolve.
    auth = create_account(site, "sam@northwind.test", "Sam")
    queue = httpx.get(f"{site.url}/api/v1/agent/queue", headers=auth).json()
    assert len(queue) == 1
    assert "number 1" in page.locator(f"{W} .state").inner_text()
    cid = queue[0]["conversation_id"]
    assert queue[0]["customer"] == {"id": "u-42", "name": "Ada Lovelace", "email": "ada@example.test"}
    assert httpx.post(f"{site.url}/api/v1/agent/conversations/{cid}/claim", headers=auth).status_code == 200
    page.wait_for_selector(f"{W} .state[data-state=agent]", timeout=WAIT_MS)
    assert "Sam is helping you" in page.locator(f"{W} .state").inner_text()
    httpx.post(f"{site.url}/api/v1/agent/conversations/{cid}/typing", headers=auth)
    page.wait_for_selector(f"{W} .typing:has-text('Sam is typing')", timeout=WAIT_MS)
    sent = httpx.post(
        f"{site.url}/api/v1/agent/conversations/{cid}/messages",
        json={"text": "Hi, I'm Sam. Let's sort out that stove."},
        headers=auth,
    )
    assert sent.status_code == 201, sent.text
    page.wait_for_selector(f"{W} .msg[data-role=agent][data-seq]", timeout=WAIT_MS)
    assert bubbles(page, "agent") == ["Hi, I'm Sam. Let's sort out that stove."]
    assert page.locator(f"{W} .msg[data-role=agent] .who").inner_text() == "Sam"
    assert page.locator(f"{W} .typing").inner_text() == ""
    shot(page, screenshot_dir, "agent")

    resolved = httpx.post(f"{site.url}/api/v1/agent/conversations/{cid}/resolve", headers=auth)
    assert resolved.status_code == 200, resolved.text
    rate(page, 5, "Sam fixed it")
    admin = create_account(site, "lee@northwind.test", "Lee", role="admin")
    by_agent = satisfaction(site, admin, "agent")
    agent_id = httpx.get(f"{site.url}/api/v1/agent/me", headers=auth).json()["id"]
    assert [(g["key"], g["label"], g["count"], g["average"]) for g in by_agent["groups"]] == [
        (agent_id, "Sam", 1, 5.0)
    ]
    assert [g["key"] for g in satisfaction(site, admin, "resolution")["groups"]] == ["agent"]


def test_an_aborted_reply_drops_its_partial_text(
    tmp_path: Path, browser: Any, fake_api: FakeAnthropic, redis_url: str
) -> None:
    fake_api.add_rule(lambda body: triage_reply() if is_triage(body) else None)
    fake_api.add_rule(
        lambda body: Reply(text="Partial words that must vanish " * 6) if is_answer(body) else None
    )
    fake_api.set_latency(tps=20, model=ANSWER_MODEL)
    fake_api.error_mid_stream_next(after_events=8, match=is_answer)
    site = Site(tmp_path / "abort", fake_api, redis_url)
    site.env["SWITCHBOARD_LLM_MAX_ATTEMPTS"] = "1"
    site.start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{site.url}/demo/hostile?key=pk_test")
        open_panel(page)
        send(page, "Tell me about tents")
        page.wait_for_selector(f"{W} .msg.streaming", timeout=WAIT_MS)
        assert page.locator(f"{W} .msg.streaming .body").inner_text().startswith("Partial")
        page.wait_for_selector(f"{W} .state[data-state=queued]", timeout=WAIT_MS)
        page.wait_for_selector(f"{W} .msg.streaming", state="detached", timeout=WAIT_MS)
        assert page.locator(f"{W} .msg[data-role=assistant]").count() == 0
        assert "Partial words" not in page.locator(f"{W} .log").inner_text()
    finally:
        context.close()
        site.kill()


def test_the_js_api_opens_reports_events_and_forgets_the_chat_for_another_person(
    page: Any, fake_api: FakeAnthropic
) -> None:
    answer_with(fake_api, "We ship to Norway in 3-5 days.")
    page.evaluate(
        """() => { window.__events = [];
        for (const name of ['open', 'close', 'status', 'message'])
          Switchboard.on(name, (p) => window.__events.push([name, p.state || p.role || null]));
        Switchboard.identify({id: 'u-1', name: 'Ada'}); Switchboard.open(); }"""
    )
    page.wait_for_selector(f"{W} .state[data-state=bot]", timeout=WAIT_MS)
    send(page, "Do you ship to Norway?")
    page.wait_for_selector(f"{W} .msg[data-role=assistant][data-seq]", timeout=WAIT_MS)
    page.locator(f"{W} [data-act=human]").click()  # "Talk to a person"
    page.wait_for_selector(f"{W} .state[data-state=queued]", timeout=WAIT_MS)
    page.evaluate("Switchboard.close()")
    assert page.locator(f"{W} .panel").is_hidden()
    # queue position updates repeat the queued status (even after close: the widget stays connected)
    events = list(dict.fromkeys((name, detail) for name, detail in page.evaluate("window.__events")))
    assert events == [
        ("open", None), ("message", "customer"), ("message", "assistant"), ("status", "queued"),
        ("close", None),
    ]  # fmt: skip
    stored = "Object.entries(localStorage).find(([k]) => k.startsWith('switchboard:'))[1]"
    first = json.loads(page.evaluate(stored))["conversationId"]

    page.evaluate("Switchboard.identify({id: 'u-2', name: 'Grace'}); Switchboard.open()")
    new_conversation = (
        f"() => (JSON.parse({stored}).conversationId || {json.dumps(first)}) !== {json.dumps(first)}"
    )
    page.wait_for_function(new_conversation, timeout=WAIT_MS)
    page.wait_for_selector(f"{W} .state[data-state=bot]", timeout=WAIT_MS)
    assert page.locator(f"{W} .msg").count() == 0, "another person never sees the previous chat"
    page.reload()
    page.wait_for_selector(f"{W} .state[data-state=bot]", timeout=WAIT_MS)
    assert page.locator(f"{W} .panel").is_visible(), "open/closed is remembered across pages"
    assert page.locator(f"{W} .msg").count() == 0


def contrast(page: Any, selector: str) -> float:
    """WCAG contrast ratio of an element's text colour on its (own or nearest opaque) background."""
    ratio: float = page.evaluate(
        """(sel) => {
        const root = document.querySelector('switchboard-widget').shadowRoot;
        const el = root.querySelector(sel);
        const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 4).map(Number);
        let bgEl = el, bg = rgb(getComputedStyle(el).backgroundColor);
        while (bg.length === 4 && bg[3] === 0) { bgEl = bgEl.parentElement || bgEl.getRootNode().host;
          bg = rgb(getComputedStyle(bgEl).backgroundColor); }
        const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255;
          return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
          .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
        const [l1, l2] = [lum(rgb(getComputedStyle(el).color)), lum(bg)].sort((a, b) => b - a);
        return (l1 + 0.05) / (l2 + 0.05);
      }""",
        selector,
    )
    return ratio


READABLE = [
    ".state", ".msg[data-role=customer] .body", ".msg[data-role=assistant] .body", "h2",
    ".msg[data-role=assistant] .who", "#sb-input", "form.compose .primary",
]  # fmt: skip


def test_dark_mode_narrow_screens_and_a_second_language(
    browser: Any, site: Site, fake_api: FakeAnthropic, screenshot_dir: Path
) -> None:
    answer_with(fake_api, "Ja, wir liefern nach Österreich.")
    context = browser.new_context(viewport={"width": 320, "height": 640}, color_scheme="dark", locale="de-DE")
    try:
        page = context.new_page()
        page.goto(f"{site.url}/demo/hostile?key=pk_test")
        page.locator(f"{W} .launcher").click()
        page.wait_for_selector(f"{W} .state[data-state=bot]", timeout=WAIT_MS)
        assert page.locator(f"{W} form.compose .primary").inner_text() == "Senden"  # navigator.language
        send(page, "Liefert ihr nach Österreich?")
        page.wait_for_selector(f"{W} .msg[data-role=assistant][data-seq]", timeout=WAIT_MS)
        panel = page.locator(f"{W} .panel").bounding_box()
        assert (panel["x"], panel["width"]) == (0, 320), "the panel fills a 320 px screen"
        overflow = page.evaluate(
            """() => [...document.querySelector('switchboard-widget').shadowRoot.querySelectorAll('.panel *')]
                  .filter((n) => n.getBoundingClientRect().right > 320.5).map((n) => n.className)"""
        )
        assert overflow == [], "nothing sticks out of a 320 px screen"
        dark_bg = page.locator(f"{W} .panel").evaluate("n => getComputedStyle(n).backgroundColor")
        assert dark_bg == "rgb(22, 25, 29)"
        assert {s: round(contrast(page, s), 1) for s in READABLE if contrast(page, s) < 4.5} == {}
        shot(page, screenshot_dir, "dark-320")
        page.evaluate("Switchboard.setTheme('light'); Switchboard.setLocale('en')")
        assert (
            page.locator(f"{W} .panel").evaluate("n => getComputedStyle(n).backgroundColor")
            == "rgb(255, 255, 255)"
        )
        assert page.locator(f"{W} form.compose .primary").inner_text() == "Send"
        assert {s: round(contrast(page, s), 1) for s in READABLE if contrast(page, s) < 4.5} == {}
        shot(page, screenshot_dir, "light-320")
    finally:
        context.close()


def test_keyboard_only_use_with_dialog_log_and_status_roles(page: Any, fake_api: FakeAnthropic) -> None:
    answer_with(fake_api, "Our stores open at 9.")
    for _ in range(10):  # Tab from the top of the page until the widget's launcher has focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement?.shadowRoot?.activeElement?.className") == "launcher":
            break
    launcher = page.locator(f"{W} .launcher")
    assert launcher.get_attribute("aria-expanded") == "false"
    page.keyboard.press("Enter")
    assert launcher.get_attribute("aria-expanded") == "true"
    assert page.evaluate("document.activeElement.shadowRoot.activeElement.id") == "sb-input"
    assert page.locator(f"{W} [role=dialog]").get_attribute("aria-labelledby") == "sb-title"
    assert page.locator(f"{W} [role=log]").count() == 1
    assert page.locator(f"{W} [role=status]").count() == 1
    page.wait_for_selector(f"{W} .state[data-state=bot]", timeout=WAIT_MS)
    page.keyboard.type("When do you open?")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"{W} .msg[data-role=assistant][data-seq]", timeout=WAIT_MS)
    page.keyboard.press("Escape")
    assert page.locator(f"{W} .panel").is_hidden()
    assert page.evaluate("document.activeElement.shadowRoot.activeElement.className") == "launcher"
    outline = launcher.evaluate("n => getComputedStyle(n).outlineStyle")
    assert outline == "solid", "keyboard focus is visible"


def test_widget_js_is_served_small_cacheable_and_typed(site: Site) -> None:
    resp = httpx.get(f"{site.url}/widget.js")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "max-age=" in resp.headers["cache-control"]
    source = (Path(__file__).parents[2] / "web" / "widget" / "widget.js").read_bytes()
    assert resp.content == source
    assert len(gzip.compress(source, 9)) < 30 * 1024, "the widget stays under 30 KB gzipped"
    again = httpx.get(f"{site.url}/widget.js", headers={"If-None-Match": resp.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")
    demo = httpx.get(f"{site.url}/demo/hostile?key=pk_test")
    assert demo.headers["content-type"].startswith("text/html")
    assert '<script src="/widget.js" data-widget-key="pk_test" async></script>' in demo.text
    assert httpx.get(f"{site.url}/demo/hostile?key=nope").status_code == 404
