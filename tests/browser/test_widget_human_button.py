"""The widget's "Talk to a person" button, in real Chromium: offered only while the bot has the
conversation. Waiting for a person, with an agent, and after the conversation is resolved it is hidden
(the server refuses ``request_human`` on a resolved conversation); writing again reopens the conversation
with the bot and the button comes back.
"""

from __future__ import annotations

from typing import Any

from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests.browser.test_finished_look import Shop, shop, tabs, widget_on
from tests.browser.test_widget import WAIT_MS, W, open_panel, send
from tests.integration.test_widget_ws import is_answer, is_triage, triage_reply

__all__ = ["shop", "tabs"]  # the fixtures this module uses


def human_button_offered(page: Any) -> bool:
    offered: bool = page.locator(f"{W} [data-act=human]").is_visible()
    return offered


def test_talk_to_a_person_is_offered_only_while_the_bot_has_the_conversation(
    tabs: Any, shop: Shop, fake: FakeAnthropic
) -> None:
    fake.add_rule(lambda body: triage_reply() if is_triage(body) else None)
    fake.add_rule(lambda body: Reply(text="Returns are free within 30 days.") if is_answer(body) else None)
    agent = shop.account("sam@northwind.test", "Sam")
    page = widget_on(tabs(1280), shop)
    open_panel(page)
    send(page, "Can I return my tent?")
    page.wait_for_selector(f"{W} .msg[data-role=assistant][data-seq]", timeout=WAIT_MS)
    assert human_button_offered(page), "the bot has it: asking for a person makes sense"

    page.locator(f"{W} [data-act=human]").click()  # as the customer clicks it
    page.wait_for_selector(f"{W} .state[data-state=queued]", timeout=WAIT_MS)
    assert not human_button_offered(page), "offered while a person is already awaited"

    [item] = shop.api("GET", "/api/v1/agent/queue", agent)
    base = f"/api/v1/agent/conversations/{item['conversation_id']}"
    shop.api("POST", f"{base}/claim", agent)
    page.wait_for_selector(f"{W} .state[data-state=agent]", timeout=WAIT_MS)
    assert not human_button_offered(page), "offered while a person is helping"

    shop.api("POST", f"{base}/resolve", agent)
    page.wait_for_selector(f"{W} .state[data-state=resolved]", timeout=WAIT_MS)
    page.wait_for_selector(f"{W} .csat", timeout=WAIT_MS)
    assert page.locator(f"{W} .state").inner_text() == "This conversation is resolved"
    assert not human_button_offered(page), "offered after the conversation was resolved"
    assert not page.locator(f"{W} [data-act=end]").is_visible()

    send(page, "One more thing: can I return boots too?")  # writing again reopens it with the bot
    page.wait_for_selector(f"{W} .state[data-state=bot]", timeout=WAIT_MS)
    assert human_button_offered(page), "the bot has it again"
