"""Prompt construction (pure): the answer request layout, the policy version, token estimates, triage."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest

from support.errors import ConfigurationError
from support.llm.answer import (
    CONVERSATION_START,
    ESCALATE_TOOL_NAME,
    MAX_CACHE_BREAKPOINTS,
    NO_CURATED_EXAMPLES,
    Example,
    build_answer_request,
    count_breakpoints,
)
from support.llm.policy import Policy, load_policy
from support.llm.tokens import TokenEstimator, estimate_tokens
from support.llm.triage import DEFAULT_TAXONOMY, Triage, build_triage_prompt, fallback_triage, triage_tool
from support.testing._schema_instance import generate_instance
from support.testing.fake_anthropic import _Ids, build_content

POLICY = Policy.from_text("# Policy\nReturns within 30 days.")
RETRIEVED = [Example("RETRIEVED-Q", "RETRIEVED-A")]


def build(
    history: list[tuple[str, str]],
    *,
    summary: str = "",
    retrieved: list[Example] | None = None,
    curated: list[Example] | None = None,
    message: str = "NEW MESSAGE",
) -> dict[str, Any]:
    return build_answer_request(
        policy=POLICY,
        curated_examples=curated or [],
        summary=summary,
        history=history,
        retrieved_examples=retrieved or [],
        message=message,
        model="claude-sonnet-4-6",
        max_tokens=300,
    )


# The knowledge head of the first user turn: one document per knowledge document, then the examples.
HEAD = 2


def blocks(request: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The conversation's blocks, after the knowledge head."""
    return [(m["role"], b) for m in request["messages"] for b in m["content"]][HEAD:]


def marked_texts(request: dict[str, Any]) -> list[str]:
    return [b["text"] for _, b in blocks(request) if "cache_control" in b]


HISTORY = [
    ("customer", "u1"),
    ("assistant", "a1"),
    ("customer", "u2"),
    ("agent", "a2"),
]


def test_roles_alternate_starting_with_user_and_same_role_turns_merge_as_blocks() -> None:
    request = build([("customer", "u1"), ("customer", "u1b"), ("assistant", "a1"), ("bot", "a1b")])
    roles = [m["role"] for m in request["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert [b["text"] for b in request["messages"][0]["content"][HEAD:]] == ["u1", "u1b"]
    assert [b["text"] for b in request["messages"][1]["content"]] == ["a1", "a1b"]


def test_history_starting_with_the_assistant_gets_a_fixed_opening_user_block() -> None:
    request = build([("assistant", "Welcome!"), ("customer", "hi")])
    assert request["messages"][0]["role"] == "user"
    assert request["messages"][0]["content"][HEAD:] == [{"type": "text", "text": CONVERSATION_START}]
    assert [m["role"] for m in request["messages"]] == ["user", "assistant", "user"]


def test_history_ending_with_the_customer_merges_the_new_message_into_that_turn() -> None:
    request = build([("customer", "u1"), ("assistant", "a1"), ("customer", "unanswered")])
    last = request["messages"][-1]
    assert last["role"] == "user"
    assert [b["text"] for b in last["content"]] == ["unanswered", "NEW MESSAGE"]


def test_blank_turns_are_dropped_and_unknown_roles_rejected() -> None:
    request = build([("customer", "u1"), ("assistant", "  "), ("customer", "u2")])
    assert [b["text"] for _, b in blocks(request)] == ["u1", "u2", "NEW MESSAGE"]
    with pytest.raises(ValueError, match="unknown history role"):
        build([("system", "x")])
    with pytest.raises(ValueError, match="empty"):
        build([], message="   ")


def test_the_knowledge_opens_the_first_user_turn_as_cited_documents_then_the_cached_examples() -> None:
    request = build([], curated=[Example("CQ", "CA")])
    (system,) = request["system"]
    assert "cache_control" not in system  # cached with the documents, by their breakpoint
    assert "Returns within 30 days." not in system["text"]
    document, examples = request["messages"][0]["content"][:HEAD]
    assert document["type"] == "document"
    assert document["citations"] == {"enabled": True}
    assert document["source"]["type"] == "content"
    assert [b["text"] for b in document["source"]["content"]] == ["# Policy\nReturns within 30 days."]
    assert document["cache_control"] == {"type": "ephemeral"}
    assert examples["cache_control"] == {"type": "ephemeral"}
    assert "CQ" in examples["text"]
    assert "CA" in examples["text"]
    assert build([])["messages"][0]["content"][1]["text"] == NO_CURATED_EXAMPLES


def test_breakpoints_on_last_history_block_and_previous_turns_end_never_more_than_four() -> None:
    request = build(HISTORY, retrieved=RETRIEVED)
    assert count_breakpoints(request) == MAX_CACHE_BREAKPOINTS
    # the previous turn (history u1, a1 + message u2) marked a1; this one marks a1 again and a2
    assert marked_texts(request) == ["a1", "a2"]
    assert all("cache_control" not in tool for tool in request["tools"])


def test_first_turn_has_only_the_system_breakpoints_and_summary_is_the_first_cached_block() -> None:
    assert count_breakpoints(build([])) == 2
    request = build([], summary="Order #A-1001.")
    first = request["messages"][0]["content"][HEAD]
    assert first["text"].startswith("<conversation_summary>")
    assert "#A-1001" in first["text"]
    assert first["cache_control"] == {"type": "ephemeral"}
    assert count_breakpoints(request) == 3
    request = build([("customer", "u1"), ("assistant", "a1")], summary="S")
    # the previous turn's breakpoint was the summary block, the newest is a1
    assert len(marked_texts(request)) == 2
    assert marked_texts(request)[1] == "a1"
    assert request["messages"][0]["content"][HEAD]["text"].startswith("<conversation_summary>")


def test_nothing_after_the_last_breakpoint_leaks_before_it() -> None:
    request = build(HISTORY, retrieved=RETRIEVED)
    flat = blocks(request)
    last_marked = max(i for i, (_, b) in enumerate(flat) if "cache_control" in b)
    before = json.dumps([request["tools"], request["system"], flat[: last_marked + 1]])
    assert "RETRIEVED" not in before
    assert "NEW MESSAGE" not in before
    after = [b["text"] for _, b in flat[last_marked + 1 :]]
    assert "RETRIEVED-Q" in after[0]
    assert after[-1] == "NEW MESSAGE"
    assert all("cache_control" not in b for _, b in flat[last_marked + 1 :])


def test_next_turn_extends_the_previous_prefix_byte_for_byte() -> None:
    turn1 = build(HISTORY[:2], summary="S", retrieved=RETRIEVED, message="u2")
    turn2 = build(HISTORY, summary="S", message="u3")

    def bare(request: dict[str, Any]) -> list[str]:
        return [
            json.dumps({"role": r, **{k: v for k, v in b.items() if k != "cache_control"}}, sort_keys=True)
            for r, b in blocks(request)
        ]

    cut = max(i for i, (_, b) in enumerate(blocks(turn1)) if "cache_control" in b) + 1
    assert bare(turn2)[:cut] == bare(turn1)[:cut]
    assert "cache_control" in blocks(turn2)[cut - 1][1]  # and this turn marks it, so it reads it
    assert json.dumps([turn1["tools"], turn1["system"]]) == json.dumps([turn2["tools"], turn2["system"]])


def test_the_request_is_deterministic_and_offers_the_escalation_tool() -> None:
    assert build(HISTORY, retrieved=RETRIEVED) == build(HISTORY, retrieved=RETRIEVED)
    request = build(HISTORY)
    assert [t["name"] for t in request["tools"]] == [ESCALATE_TOOL_NAME]
    assert request["tools"][0]["input_schema"]["required"] == ["reason"]
    assert request["tool_choice"] == {"type": "auto"}
    assert (request["model"], request["max_tokens"]) == ("claude-sonnet-4-6", 300)


# --- policy ---------------------------------------------------------------------------------------


def test_policy_version_is_the_sha256_prefix_of_the_file_bytes(tmp_path: Path) -> None:
    path = tmp_path / "policy.md"
    path.write_bytes("# Rückgabe\n30 Tage.\n".encode())
    policy = load_policy(path)
    assert policy.version == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert policy.text == "# Rückgabe\n30 Tage.\n"
    assert Policy.from_text(policy.text) == policy


def test_unreadable_or_empty_policy_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        load_policy(tmp_path / "missing.md")
    (tmp_path / "empty.md").write_text("  \n")
    with pytest.raises(ConfigurationError):
        load_policy(tmp_path / "empty.md")


# --- tokens ---------------------------------------------------------------------------------------


def test_uncalibrated_estimate_is_chars_over_four_rounded_up() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcde") == 2
    assert TokenEstimator().estimate("x" * 400) == 100


def test_observations_move_the_ratio_towards_the_actual_counts() -> None:
    estimator = TokenEstimator(smoothing=0.5)
    estimator.observe(100, 150)
    assert estimator.ratio == pytest.approx(1.5)
    estimator.observe(100, 100)
    assert estimator.ratio == pytest.approx(1.25)
    assert estimator.estimate("x" * 400) == math.ceil(100 * 1.25)
    estimator.observe(0, 50)  # nothing to learn from
    estimator.observe(100, 0)
    assert estimator.observations == 2
    estimator.observe(1, 10_000)  # absurd: clamped
    assert estimator.ratio <= 4.0


# --- triage schema --------------------------------------------------------------------------------


def test_triage_tool_schema_enumerates_the_taxonomy_and_a_generated_instance_validates() -> None:
    tool = triage_tool(("a", "b"))
    schema = tool["input_schema"]
    assert schema["properties"]["intent"]["enum"] == ["a", "b"]
    assert set(schema["required"]) == set(Triage.model_fields)
    instance = generate_instance(schema)
    assert Triage.model_validate(instance, context={"taxonomy": ("a", "b")}).intent == "a"


def test_solved_is_asked_for_but_an_old_reply_without_it_validates_and_the_fake_says_it_when_told() -> None:
    old = generate_instance(triage_tool(("a",))["input_schema"])
    old.pop("solved")
    assert Triage.model_validate(old, context={"taxonomy": ("a",)}).solved is False

    def verdict(message: str, recent: list[tuple[str, str]]) -> Any:
        prompt = build_triage_prompt(message=message, summary="", recent=recent)
        body = {
            "tools": [triage_tool(("a",))], "tool_choice": {"type": "tool", "name": "record_triage"},
            "messages": [{"role": "user", "content": prompt}], "max_tokens": 100,
        }  # fmt: skip
        content, _ = build_content(body, None, _Ids())
        return Triage.model_validate(content[-1]["input"], context={"taxonomy": ("a",)})

    assert verdict("Thanks, that worked!", []).solved is True
    # only the new message counts, not an earlier turn
    assert verdict("Where is my parcel?", [("customer", "that worked")]).solved is False


def test_intent_outside_the_taxonomy_is_invalid_and_the_fallback_claims_nothing() -> None:
    data = {
        "intent": "orders",
        "urgency": "low",
        "sentiment": "neutral",
        "language": "en",
        "wants_human": False,
        "confidence": 0.5,
        "reason": "r",
    }
    with pytest.raises(ValueError, match="intent"):
        Triage.model_validate(data, context={"taxonomy": ("billing",)})
    assert fallback_triage(DEFAULT_TAXONOMY).confidence == 0.0
    assert fallback_triage(("billing",)).intent == "billing"
