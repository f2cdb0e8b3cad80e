"""The lifetime of the answer prompt's shared system prefix (``SWITCHBOARD_LLM_SYSTEM_CACHE_TTL``): on a quiet
site, a 1-hour entry is still read after 10 minutes without answers, where the default 5-minute one has
expired and the next conversation writes the whole policy again."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from support.llm.answer import build_answer_request, draft_answer
from support.llm.gateway import ModelGateway
from support.llm.policy import load_policy
from support.llm.pricing import prices_for
from support.settings import DEFAULT_POLICY_PATH, LLMSettings
from support.testing.fake_anthropic import FakeAnthropic, cached_prefix_tokens
from tests.integration.llm_fixtures import SONNET, fake, gateway, ledger

__all__ = ["fake", "gateway"]  # fixtures used by name

QUIET_S = 600.0  # ten minutes without an answer: past the 5-minute TTL, well within the 1-hour one


def first_turn(message: str, ttl: str) -> dict[str, Any]:
    return build_answer_request(
        policy=load_policy(DEFAULT_POLICY_PATH), curated_examples=[], summary="", history=[],
        retrieved_examples=[], message=message, model=SONNET, max_tokens=200, system_cache_ttl=ttl,
    )  # fmt: skip


def prefix_tokens(request: dict[str, Any]) -> int:
    return cached_prefix_tokens(request)  # a first turn's: tools, system, documents, examples


def test_one_hour_ttl_marks_only_the_knowledge_blocks_and_bad_values_are_refused() -> None:
    request = build_answer_request(
        policy=load_policy(DEFAULT_POLICY_PATH), curated_examples=[], summary="",
        history=[("customer", "Hi"), ("assistant", "Hello!")], retrieved_examples=[], message="Returns?",
        model=SONNET, max_tokens=200, system_cache_ttl="1h",
    )  # fmt: skip
    assert all("cache_control" not in b for b in request["system"])  # cached with the documents
    marks = [b["cache_control"] for m in request["messages"] for b in m["content"] if "cache_control" in b]
    # the documents and the examples for an hour; the history stays at 5 minutes, after them
    assert marks == [{"type": "ephemeral", "ttl": "1h"}] * 2 + [{"type": "ephemeral"}]
    assert first_turn("Returns?", "5m")["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    with pytest.raises(ValueError, match="cache ttl"):
        first_turn("Returns?", "1d")


def test_the_setting_defaults_to_five_minutes() -> None:
    assert LLMSettings().system_cache_ttl == "5m"


@pytest.mark.parametrize(("ttl", "read_after_quiet"), [("5m", False), ("1h", True)])
async def test_after_ten_quiet_minutes_only_the_one_hour_prefix_is_still_read(
    fake: FakeAnthropic, gateway: ModelGateway, db_engine: AsyncEngine, ttl: str, read_after_quiet: bool
) -> None:
    for conversation, message in (("c1", "Can I return my tent?"), ("c2", "Do you ship to Austria?")):
        request = first_turn(message, ttl)
        async with draft_answer(gateway, request, conversation_id=conversation, policy_version="v") as answer:
            await answer.finish()
        fake.cache.advance(QUIET_S)

    prefix = prefix_tokens(first_turn("x", ttl))
    first, second = await ledger(db_engine)
    written = "cache_write_1h_tokens" if ttl == "1h" else "cache_write_5m_tokens"
    assert getattr(first, written) == prefix
    assert first.cache_read_tokens == 0
    if read_after_quiet:
        assert second.cache_read_tokens == prefix
        assert second.cache_write_1h_tokens == second.cache_write_5m_tokens == 0
    else:
        assert second.cache_read_tokens == 0
        assert second.cache_write_5m_tokens == prefix
    # The ledger prices a 1-hour write at the 1-hour rate (2x input), a 5-minute one at 1.25x.
    prices = prices_for(SONNET)
    rate = prices.cache_write_1h if ttl == "1h" else prices.cache_write_5m
    uncached = first.input_tokens * prices.input + first.output_tokens * prices.output
    assert first.cost_usd == (prefix * rate + uncached) / Decimal(1_000_000)
