"""Triage through the gateway against the fake model API: forced tool call, validation, retry, fallback."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from support.errors import ModelRejected
from support.llm.gateway import ModelGateway
from support.llm.triage import (
    DEFAULT_TAXONOMY,
    FALLBACK_REASON,
    TOOL_NAME,
    Triage,
    triage,
)
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests.integration.llm_fixtures import HAIKU, fake, gateway, ledger, message_posts

__all__ = ["fake", "gateway"]  # fixtures used by name

VALID: dict[str, Any] = {
    "intent": "returns_refunds",
    "urgency": "normal",
    "sentiment": "negative",
    "language": "de",
    "wants_human": False,
    "confidence": 0.8,
    "reason": "Asks how to return a damaged jacket.",
}


def tool_reply(tool_input: dict[str, Any]) -> Reply:
    return Reply(tool_use={"name": TOOL_NAME, "input": tool_input})


async def run(gateway: ModelGateway, **overrides: Any) -> Any:
    params: dict[str, Any] = {
        "model": HAIKU,
        "message": "Meine Jacke ist kaputt angekommen, wie schicke ich sie zurück?",
        "summary": "Customer bought jacket order #A-1001.",
        "recent": [("customer", "Hi"), ("assistant", "Hello! How can I help?")],
        "conversation_id": "c1",
        "policy_version": "abc123def456",
    }
    params.update(overrides)
    return await triage(gateway, **params)


async def test_schema_generated_forced_tool_input_is_a_valid_triage(
    fake: FakeAnthropic, gateway: ModelGateway, db_engine: AsyncEngine
) -> None:
    result = await run(gateway)
    assert isinstance(result.triage, Triage)
    assert result.triage.intent in DEFAULT_TAXONOMY
    assert (result.fallback, result.attempts) == (False, 1)
    [row] = await ledger(db_engine)
    assert (row.purpose, row.model, row.policy_version, row.conversation_id) == (
        "triage",
        HAIKU,
        "abc123def456",
        "c1",
    )


async def test_request_forces_the_tool_with_the_taxonomy_as_enum_and_small_max_tokens(
    fake: FakeAnthropic, gateway: ModelGateway
) -> None:
    taxonomy = ("orders", "billing", "other")
    fake.add_rule(reply=tool_reply({**VALID, "intent": "billing"}))
    result = await run(gateway, taxonomy=taxonomy)
    assert result.triage.intent == "billing"
    [request] = message_posts(fake)
    body = request.body
    assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    [tool] = body["tools"]
    assert tool["name"] == TOOL_NAME
    assert tool["input_schema"]["properties"]["intent"]["enum"] == list(taxonomy)
    assert body["max_tokens"] <= 500
    assert "Meine Jacke" in body["messages"][0]["content"]


async def test_model_reply_is_returned_as_validated(fake: FakeAnthropic, gateway: ModelGateway) -> None:
    fake.add_rule(reply=tool_reply({**VALID, "language": "PT_br", "wants_human": True}))
    result = await run(gateway)
    assert result.triage == Triage.model_validate({**VALID, "language": "pt-BR", "wants_human": True})


async def test_invalid_input_once_is_retried_and_the_second_reply_is_used(
    fake: FakeAnthropic, gateway: ModelGateway, db_engine: AsyncEngine
) -> None:
    fake.add_rule(reply=tool_reply(VALID))
    fake.add_rule(reply=tool_reply({**VALID, "intent": "teleportation", "confidence": 7}), times=1)
    result = await run(gateway)
    assert (result.fallback, result.attempts) == (False, 2)
    assert result.triage.intent == "returns_refunds"
    assert "intent" in result.problems[0]
    _, second = message_posts(fake)
    assert second.body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    assert "previous record_triage call was invalid" in second.body["messages"][0]["content"]
    assert len(await ledger(db_engine)) == 2


async def test_missing_tool_call_counts_as_invalid(fake: FakeAnthropic, gateway: ModelGateway) -> None:
    fake.add_rule(reply=tool_reply(VALID))
    fake.add_rule(reply=Reply(tool_use={"name": "something_else", "input": {}}), times=1)
    result = await run(gateway)
    assert (result.fallback, result.attempts) == (False, 2)
    assert "no record_triage tool call" in result.problems[0]


async def test_invalid_twice_gives_a_low_confidence_fallback(
    fake: FakeAnthropic, gateway: ModelGateway
) -> None:
    fake.add_rule(reply=tool_reply({**VALID, "reason": "x" * 500}))
    result = await run(gateway)
    assert result.fallback is True
    assert result.attempts == 2
    assert len(message_posts(fake)) == 2
    assert result.triage.confidence == 0.0
    assert result.triage.reason == FALLBACK_REASON
    assert result.triage.intent == "other"
    assert len(result.problems) == 2


async def test_model_errors_propagate_to_the_caller(fake: FakeAnthropic, gateway: ModelGateway) -> None:
    fake.fail_next(400)
    with pytest.raises(ModelRejected):
        await run(gateway)
