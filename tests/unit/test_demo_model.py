"""The demo model: message -> triage verdict (intent, confidence, wants_human, ...) and policy-grounded
answers, as the routing and the answer pipeline will read them."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic import Anthropic

from handoff.routing import RoutingPolicy
from support.llm.answer import build_answer_request, draft_from_message
from support.llm.policy import Policy
from support.llm.triage import Triage, build_triage_prompt, triage_tool
from support.settings import DEFAULT_INTENTS, DEFAULT_POLICY_PATH, HandoffSettings
from support.testing.demo_model import DemoModel, detect_language
from support.testing.fake_anthropic import FakeAnthropic

POLICY = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def model() -> DemoModel:
    return DemoModel(POLICY)


def passes_routing(intent: str, confidence: float) -> bool:
    handoff = HandoffSettings()
    policy = RoutingPolicy(handoff.confidence_threshold, handoff.intent_thresholds)
    return confidence >= policy.threshold_for(intent)


@pytest.mark.parametrize(
    ("message", "intent"),
    [
        ("How long do I have to return an item?", "returns_refunds"),
        ("How much does standard shipping cost to the UK?", "shipping"),
        ("What payment methods do you accept?", "payments_billing"),
        ("My tent pole is broken, is it covered by the warranty?", "warranty_repairs"),
        ("Do you ship to Switzerland?", "shipping"),
    ],
)
def test_questions_the_policy_answers_get_their_intent_and_a_confidence_routing_accepts(
    model: DemoModel, message: str, intent: str
) -> None:
    verdict = model.triage(message, DEFAULT_INTENTS)
    assert verdict.intent == intent
    assert not verdict.wants_human
    assert verdict.language == "en"
    assert passes_routing(verdict.intent, verdict.confidence), verdict
    Triage.model_validate(verdict.tool_input(), context={"taxonomy": DEFAULT_INTENTS})


@pytest.mark.parametrize(
    "message",
    ["zorblat quixx vemmuth plonk", "hi", "What's the weather in Paris?", "Where is my order 123456?"],
)
def test_messages_the_policy_does_not_answer_get_a_low_confidence(model: DemoModel, message: str) -> None:
    verdict = model.triage(message, DEFAULT_INTENTS)
    assert not passes_routing(verdict.intent, verdict.confidence), verdict
    assert not verdict.wants_human


@pytest.mark.parametrize(
    "message",
    ["Can I talk to a person?", "I want to speak with a real human", "agent please",
     "Ich möchte mit einem Mitarbeiter sprechen"],
)  # fmt: skip
def test_asking_for_a_person_is_wants_human(model: DemoModel, message: str) -> None:
    verdict = model.triage(message, DEFAULT_INTENTS)
    assert verdict.wants_human
    assert not passes_routing(verdict.intent, verdict.confidence)


def test_sentiment_urgency_and_language_follow_the_message(model: DemoModel) -> None:
    angry = model.triage("This is unacceptable, my boots arrived damaged!!", DEFAULT_INTENTS)
    assert angry.sentiment == "negative"
    assert model.triage("Thanks, that was great", DEFAULT_INTENTS).sentiment == "positive"
    assert model.triage("Someone made a fraudulent charge on my card", DEFAULT_INTENTS).urgency == "urgent"
    assert model.triage("I need the tent today for my trip", DEFAULT_INTENTS).urgency == "high"
    assert model.triage("Do you ship to Norway?", DEFAULT_INTENTS).urgency == "low"
    assert detect_language("Wie lange habe ich Zeit, um einen Artikel zurückzugeben?") == "de"
    assert detect_language("Je voudrais retourner mon sac, comment faire ?") == "fr"
    assert detect_language("¿Cómo puedo devolver mi pedido?") == "es"
    assert detect_language("qwzx vbnm") == "und"


def test_the_intent_comes_from_the_taxonomy_the_request_offers(model: DemoModel) -> None:
    taxonomy = ("gift_cards", "delivery", "other")
    assert model.triage("Can I pay with a gift card?", taxonomy).intent == "gift_cards"
    assert model.triage("What is the weather like?", taxonomy).intent == "other"


def test_answers_are_the_best_passage_sentences_and_uncovered_questions_escalate(model: DemoModel) -> None:
    returns = model.answer("How long do I have to return an item?")
    assert returns.text is not None
    assert "within 30 days of delivery" in returns.text
    shipping = model.answer("How much does standard shipping cost to the UK?")
    assert shipping.text is not None
    assert "Zone UK: GBP 3.95" in shipping.text
    assert "Zone US" not in shipping.text, "only the list item the question names"
    assert len(shipping.text) < 700
    for message in ("zorblat quixx", "Can I talk to a person?"):
        declined = model.answer(message)
        assert declined.text is None
        assert declined.tool_use is not None
        assert declined.tool_use["name"] == "escalate_to_human"


def test_a_request_shaped_as_the_app_sends_it_gets_a_reply_the_app_parses(model: DemoModel) -> None:
    """The rule reads the app's own requests (the triage prompt and tool, the answer prompt with the
    policy in its system block) and the fake turns its reply into the real Messages API shape."""
    triage_body: dict[str, Any] = {
        "model": "claude-haiku-4-5", "max_tokens": 400,
        "tools": [triage_tool(DEFAULT_INTENTS)],
        "tool_choice": {"type": "tool", "name": "record_triage"},
        "messages": [{"role": "user", "content": build_triage_prompt(
            message="Do you ship to Switzerland?", summary="", recent=[("user", "hello")]
        )}],
    }  # fmt: skip
    reply = model.reply(triage_body)
    assert reply is not None
    assert reply.tool_use is not None
    assert reply.tool_use["input"]["intent"] == "shipping"
    answer_body = build_answer_request(
        policy=Policy.from_text(POLICY),
        curated_examples=[], summary="", history=[], retrieved_examples=[],
        message="Do you ship to Switzerland?", model="claude-sonnet-4-6", max_tokens=800,
    )  # fmt: skip
    with FakeAnthropic() as fake:
        fake.add_rule(model.reply)
        with Anthropic(base_url=fake.url, api_key="test-key", max_retries=0) as client:
            message = client.messages.create(**answer_body)
    draft = draft_from_message(message)
    assert not draft.declined
    assert "do not currently ship to Switzerland" in draft.text
    assert message.usage.cache_creation_input_tokens is not None


def test_other_calls_fall_through_to_the_fakes_default(model: DemoModel) -> None:
    summary_like = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    assert model.reply(summary_like) is None
