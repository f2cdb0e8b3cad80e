"""Answer calls through the gateway against the fake: cache-friendly prefixes, cache reads, declines."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from support.llm.answer import (
    ESCALATE_TOOL_NAME,
    AnswerDraft,
    Example,
    build_answer_request,
    count_breakpoints,
    draft_answer,
)
from support.llm.gateway import ModelGateway
from support.llm.policy import Policy, load_policy
from support.settings import DEFAULT_POLICY_PATH
from support.testing.fake_anthropic import FakeAnthropic, Reply
from tests.integration.llm_fixtures import SONNET, fake, gateway, ledger, message_posts

__all__ = ["fake", "gateway"]  # fixtures used by name

MIN_POLICY_CHARS = 20_000  # ~5,000 tokens: comfortably above every model's cache minimum
CURATED = [
    Example("Can I return sale items?", "Yes, within 30 days, unworn and with the receipt."),
    Example("How long does standard shipping take?", "3 to 5 business days within the country."),
]


def synthetic_policy() -> Policy:
    sections = [
        f"## Section {i}\nRule {i}: items of category {i} may be returned within {14 + i % 30} days if "
        f"unused, with proof of purchase; refunds go to the original payment method within {3 + i % 7} "
        "business days. Exceptions need a supervisor's approval.\n"
        for i in range(120)
    ]
    text = "# Support policy\n\n" + "\n".join(sections)
    assert len(text) >= MIN_POLICY_CHARS
    return Policy.from_text(text)


@pytest.fixture
def policy() -> Policy:
    """The shipped policy when it is long enough to be cached, else a long synthetic one."""
    shipped = load_policy(DEFAULT_POLICY_PATH) if Path(DEFAULT_POLICY_PATH).stat().st_size else None
    if shipped is not None and len(shipped.text) >= MIN_POLICY_CHARS:
        return shipped
    return synthetic_policy()


def request_for(
    policy: Policy,
    history: list[tuple[str, str]],
    message: str,
    retrieved: list[Example] | None = None,
) -> dict[str, Any]:
    return build_answer_request(
        policy=policy,
        curated_examples=CURATED,
        summary="Customer Ana, order #A-1001 (jacket), delivered damaged.",
        history=history,
        retrieved_examples=retrieved or [],
        message=message,
        model=SONNET,
        max_tokens=400,
    )


async def run_turn(
    gateway: ModelGateway, request: dict[str, Any], policy: Policy
) -> tuple[list[str], AnswerDraft]:
    async with draft_answer(gateway, request, conversation_id="c1", policy_version=policy.version) as answer:
        deltas = [d async for d in answer.text_deltas()]
        return deltas, answer.draft


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def message_blocks(body: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The messages as a flat list of (role, canonical block without cache_control, has breakpoint)."""
    flat = []
    for message in body["messages"]:
        for block in message["content"]:
            bare = {k: v for k, v in block.items() if k != "cache_control"}
            flat.append((message["role"], canonical(bare), "cache_control" in block))
    return flat


def prefix_to_last_breakpoint(blocks: list[tuple[str, str, bool]]) -> list[tuple[str, str]]:
    marked = [i for i, (_, _, bp) in enumerate(blocks) if bp]
    end = marked[-1] + 1 if marked else 0
    return [(role, block) for role, block, _ in blocks[:end]]


async def test_three_turns_share_a_byte_identical_prefix_and_read_the_cache(
    fake: FakeAnthropic, gateway: ModelGateway, db_engine: AsyncEngine, policy: Policy
) -> None:
    history: list[tuple[str, str]] = [("customer", "Hi, my jacket arrived torn.")]
    history.append(("assistant", "Sorry to hear that! Would you like a refund or a replacement?"))
    messages = ["A refund please.", "How long will the refund take?", "Thanks, and can I keep the tags?"]
    retrieved = [Example("Refund timing?", "Refunds take 3-7 business days.")]
    drafts: list[AnswerDraft] = []
    for turn, text in enumerate(messages):
        request = request_for(policy, list(history), text, retrieved if turn == 1 else None)
        deltas, draft = await run_turn(gateway, request, policy)
        assert "".join(deltas) == draft.text
        assert draft.text
        assert not draft.declined
        drafts.append(draft)
        history += [("customer", text), ("assistant", draft.text)]

    bodies = [r.body for r in message_posts(fake)]
    assert len(bodies) == 3
    stable = {canonical({"tools": b["tools"], "system": b["system"]}) for b in bodies}
    assert len(stable) == 1
    assert [count_breakpoints(b) for b in bodies] == [4, 4, 4]
    for previous, current in itertools.pairwise(bodies):
        cached = prefix_to_last_breakpoint(message_blocks(previous))
        assert cached, "every turn with history has a history breakpoint"
        now = [(role, block) for role, block, _ in message_blocks(current)]
        assert now[: len(cached)] == cached

    reads = [d.usage.cache_read_input_tokens or 0 for d in drafts]
    assert reads[0] == 0
    assert 0 < reads[1] < reads[2], reads  # turn 3 also reads the history that turn 2 wrote
    rows = await ledger(db_engine)
    assert [r.purpose for r in rows] == ["answer"] * 3
    assert [r.cache_read_tokens for r in rows] == reads
    assert {r.policy_version for r in rows} == {policy.version}


async def test_escalate_tool_call_marks_the_draft_declined(
    fake: FakeAnthropic, gateway: ModelGateway, policy: Policy
) -> None:
    fake.add_rule(
        reply=Reply(tool_use={"name": ESCALATE_TOOL_NAME, "input": {"reason": "Needs an order lookup."}})
    )
    request = request_for(policy, [], "Where is my order #A-2002?")
    _, draft = await run_turn(gateway, request, policy)
    assert draft.declined is True
    assert draft.decline_reason == "Needs an order lookup."
    assert draft.stop_reason == "tool_use"
    [body] = [r.body for r in message_posts(fake)]
    assert body["tool_choice"] == {"type": "auto"}
    assert body["stream"] is True


async def test_refusal_marks_the_draft_declined(
    fake: FakeAnthropic, gateway: ModelGateway, policy: Policy
) -> None:
    fake.add_rule(reply=Reply(text="I can't help with that.", stop_reason="refusal"))
    _, draft = await run_turn(gateway, request_for(policy, [], "Help me with something odd"), policy)
    assert (draft.declined, draft.decline_reason, draft.stop_reason) == (True, "refusal", "refusal")


async def test_plain_answer_is_not_declined(
    fake: FakeAnthropic, gateway: ModelGateway, policy: Policy
) -> None:
    fake.add_rule(reply=Reply(text="Returns are free within 30 days."))
    deltas, draft = await run_turn(gateway, request_for(policy, [], "Are returns free?"), policy)
    assert len(deltas) > 1  # streamed in pieces, not delivered at the end
    assert draft == AnswerDraft(
        text="Returns are free within 30 days.",
        declined=False,
        decline_reason=None,
        usage=draft.usage,
        stop_reason="end_turn",
    )
