"""The routing policy: every rule, its order, and the thresholds it reads."""

from __future__ import annotations

import pytest

from handoff.routing import (
    RoutingPolicy,
    Verdict,
    bot_turns_in_a_row,
    decide,
    priority_of,
    similarity,
)

CONFIDENT = {"wants_human": False, "confidence": 0.9, "urgency": "normal"}


def test_confident_answerable_message_is_answered() -> None:
    assert decide(**CONFIDENT, message="How long do returns take?") == Verdict(True, "confident")


@pytest.mark.parametrize(
    "message",
    ["Can I talk to a person?", "I want to SPEAK TO A HUMAN now", "real person please", "talk to an agent"],
)
def test_human_phrases_always_hand_off_even_when_confident(message: str) -> None:
    assert decide(**CONFIDENT, message=message) == Verdict(False, "wants_human")


def test_triage_wants_human_hands_off() -> None:
    verdict = decide(wants_human=True, confidence=0.99, urgency="normal", message="hmm")
    assert verdict == Verdict(False, "wants_human")


def test_urgent_hands_off() -> None:
    verdict = decide(wants_human=False, confidence=0.99, urgency="urgent", message="my card was charged 5x")
    assert verdict == Verdict(False, "urgent")


def test_threshold_is_per_intent() -> None:
    policy = RoutingPolicy(confidence_threshold=0.6, intent_thresholds={"payments_billing": 0.8})
    common = {"wants_human": False, "urgency": "normal", "message": "x", "policy": policy}
    assert decide(**common, confidence=0.7, intent="shipping").answer is True
    assert decide(**common, confidence=0.7, intent="payments_billing") == Verdict(False, "low_confidence")
    assert decide(**common, confidence=0.85, intent="payments_billing").answer is True
    assert decide(**common, confidence=0.59, intent=None) == Verdict(False, "low_confidence")


def test_not_helped_needs_a_bot_answer_before() -> None:
    history = [("customer", "Where is my order 123?"), ("assistant", "It shipped yesterday.")]
    assert decide(**CONFIDENT, message="That didn't help at all", history=history) == Verdict(
        False, "not_helped"
    )
    # the same words with no bot answer yet are just a message
    assert decide(**CONFIDENT, message="That didn't help at all", history=[]).answer is True


def test_repeating_the_question_after_an_answer_hands_off() -> None:
    history = [("customer", "where is my order 123"), ("assistant", "It shipped yesterday.")]
    verdict = decide(**CONFIDENT, message="Where is my order 123??", history=history)
    assert verdict == Verdict(False, "not_helped")
    different = decide(**CONFIDENT, message="Can I also return a tent?", history=history)
    assert different.answer is True


def test_negative_sentiment_after_a_bot_answer_hands_off_but_not_on_first_contact() -> None:
    history = [("customer", "hi"), ("assistant", "Hello!")]
    assert decide(
        **CONFIDENT, sentiment="negative", message="ugh, and my parcel?", history=history
    ) == Verdict(False, "negative_sentiment")
    assert decide(**CONFIDENT, sentiment="negative", message="where is my parcel?!").answer is True
    off = RoutingPolicy(negative_sentiment=False)
    assert decide(**CONFIDENT, sentiment="negative", message="and?", history=history, policy=off).answer


def test_too_many_bot_turns_hands_off_and_an_agent_message_resets_the_count() -> None:
    history = [
        ("customer", f"question {i}") if i % 2 == 0 else ("assistant", f"answer {i}") for i in range(6)
    ]
    assert bot_turns_in_a_row(history) == 3
    policy = RoutingPolicy(max_bot_turns=3, repeat_similarity=1.0)
    assert decide(**CONFIDENT, message="one more thing", history=history, policy=policy) == Verdict(
        False, "too_many_bot_turns"
    )
    with_agent = [*history[:3], ("agent", "I'm here"), *history[3:]]
    assert bot_turns_in_a_row(with_agent) == 2
    assert decide(**CONFIDENT, message="one more thing", history=with_agent, policy=policy).answer


def test_rule_order_names_the_most_important_reason() -> None:
    history = [("customer", "x"), ("assistant", "y")]
    verdict = decide(
        wants_human=False, confidence=0.1, urgency="urgent", sentiment="negative", message="didn't help",
        history=history,
    )  # fmt: skip
    assert verdict.reason == "urgent"


def test_similarity_is_word_overlap() -> None:
    assert similarity("a b c", "a b c") == 1.0
    assert similarity("a b", "c d") == 0.0
    assert similarity("", "a") == 0.0


@pytest.mark.parametrize(
    ("reason", "urgency", "sentiment", "expected"),
    [
        ("low_confidence", "urgent", "neutral", "urgent"),
        ("urgent", "normal", "neutral", "urgent"),
        ("low_confidence", "high", "neutral", "high"),
        ("low_confidence", "normal", "negative", "high"),
        ("not_helped", "normal", "neutral", "high"),
        ("low_confidence", "normal", "neutral", "normal"),
        ("low_confidence", "low", "positive", "low"),
        ("customer_request", None, None, "normal"),
    ],
)
def test_priority(reason: str, urgency: str | None, sentiment: str | None, expected: str) -> None:
    assert priority_of(reason=reason, urgency=urgency, sentiment=sentiment) == expected


def test_a_policy_passed_to_the_turn_as_its_routing_port_decides_under_its_own_thresholds() -> None:
    strict = RoutingPolicy(confidence_threshold=0.95, intent_thresholds={"billing": 0.5})
    assert strict.decide(**CONFIDENT, message="Where is my parcel?") == Verdict(False, "low_confidence")
    assert strict.decide(**CONFIDENT, message="Why two charges?", intent="billing") == Verdict(
        True, "confident"
    )
    history = [("customer", "Hi"), ("assistant", "Hello!")]
    assert RoutingPolicy(max_bot_turns=1).decide(
        **CONFIDENT, message="And refunds?", history=history
    ) == Verdict(False, "too_many_bot_turns")
