"""Summaries through the gateway against the fake model API."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from support.errors import ModelRetriesExhausted
from support.llm.gateway import ModelGateway
from support.llm.summarize import SUMMARY_MAX_TOKENS, summarize
from support.settings import LLMSettings
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests.integration.llm_fixtures import fake, gateway, ledger, message_posts

__all__ = ["fake", "gateway"]  # fixtures used by name

TURNS = [
    ("customer", "My order #A-1001 arrived with a torn sleeve."),
    ("assistant", "Sorry! I have started a refund; it takes 3-7 business days."),
]


async def test_summary_is_the_model_text_from_the_triage_model(
    fake: FakeAnthropic, gateway: ModelGateway, db_engine: AsyncEngine
) -> None:
    fake.add_rule(reply=Reply(text="  Ana: order #A-1001 torn sleeve; refund started (3-7 days).  "))
    model = LLMSettings().triage_model
    summary = await summarize(
        gateway, model=model, previous_summary="Customer Ana.", turns=TURNS, conversation_id="c9"
    )
    assert summary == "Ana: order #A-1001 torn sleeve; refund started (3-7 days)."
    [request] = message_posts(fake)
    body = request.body
    assert body["model"] == model
    assert body["max_tokens"] == SUMMARY_MAX_TOKENS
    assert "stream" not in body
    prompt = body["messages"][0]["content"]
    assert "Customer Ana." in prompt
    assert "#A-1001" in prompt
    assert "promise" in body["system"]
    [row] = await ledger(db_engine)
    assert (row.purpose, row.model, row.conversation_id) == ("summary", model, "c9")


async def test_no_new_turns_keeps_the_previous_summary_without_a_call(
    fake: FakeAnthropic, gateway: ModelGateway
) -> None:
    summary = await summarize(
        gateway, model="claude-haiku-4-5", previous_summary="Old.", turns=[("customer", "  ")]
    )
    assert summary == "Old."
    assert message_posts(fake) == []


async def test_model_errors_propagate(fake: FakeAnthropic, gateway: ModelGateway) -> None:
    fake.fail_next(529, n=5)
    with pytest.raises(ModelRetriesExhausted):
        await summarize(gateway, model="claude-haiku-4-5", previous_summary="", turns=TURNS)
