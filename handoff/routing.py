"""When a turn goes to a human, and why: a pure policy over triage, the draft and the history.

Inputs are plain values (no I/O), so every rule is a unit test. Checked in this order, the first rule
that fires names the reason code the agent sees:

1. ``wants_human``: the customer asked for a person (triage said so, or a phrase such as "talk to a
   person" appears; the phrase list wins over the model, whatever its confidence).
2. ``urgent``: safety, fraud, money being lost right now.
3. ``not_helped``: the customer says the last answer did not help, or repeats an earlier question after
   a bot answer (word-overlap similarity at or above ``repeat_similarity``).
4. ``negative_sentiment``: a negative customer who already had a bot answer this conversation; a first
   angry message is still answered if the bot is confident (often it is a simple "where is my order").
5. ``too_many_bot_turns``: ``max_bot_turns`` bot answers in a row without a person or resolution.
6. ``low_confidence``: triage confidence below the intent's threshold (``intent_thresholds``) or the
   default ``confidence_threshold``.

The engine adds the reasons that come from the draft itself (``draft_declined``: the model called the
escalation tool; ``draft_failed``; ``timeout``) and from the customer's ``request_human`` frame
(``customer_request``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from support.conversation.reasons import REASON_TEXT as REASON_TEXT  # re-exported for the console

DEFAULT_CONFIDENCE_THRESHOLD = 0.6

HUMAN_PHRASES = (
    "talk to a person", "talk to a human", "speak to a person", "speak to a human", "real person",
    "human agent", "speak to someone", "talk to someone", "customer service agent", "an agent please",
    "talk to an agent", "speak to an agent", "speak with a person", "speak with someone",
    "mit einem menschen", "mit einem mitarbeiter", "parler à un humain", "parler à quelqu'un",
)  # fmt: skip

NOT_HELPED_PHRASES = (
    "didn't help", "did not help", "doesn't help", "does not help", "not helpful", "that's not what i",
    "that is not what i", "not what i asked", "you're not listening", "you are not listening",
    "doesn't answer", "does not answer", "didn't answer", "still not working", "still doesn't work",
    "still does not work", "useless", "that's wrong", "that is wrong", "wrong answer",
)  # fmt: skip

_WORD = re.compile(r"[\w']+", re.UNICODE)


class Reason:
    """Reason codes routing produces (strings, so they travel in frames and SQL unchanged)."""

    WANTS_HUMAN = "wants_human"
    URGENT = "urgent"
    NOT_HELPED = "not_helped"
    NEGATIVE_SENTIMENT = "negative_sentiment"
    TOO_MANY_BOT_TURNS = "too_many_bot_turns"
    LOW_CONFIDENCE = "low_confidence"
    CONFIDENT = "confident"


@dataclass(frozen=True)
class RoutingPolicy:
    """Thresholds (from ``HandoffSettings``)."""

    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    intent_thresholds: Mapping[str, float] = field(default_factory=dict)
    negative_sentiment: bool = True
    max_bot_turns: int = 8
    repeat_similarity: float = 0.8

    def threshold_for(self, intent: str | None) -> float:
        """The confidence an answer needs for this intent."""
        if intent is not None and intent in self.intent_thresholds:
            return self.intent_thresholds[intent]
        return self.confidence_threshold

    def decide(
        self,
        *,
        wants_human: bool,
        confidence: float,
        urgency: str | None,
        message: str,
        intent: str | None = None,
        sentiment: str | None = None,
        history: Sequence[tuple[str, str]] = (),
    ) -> Verdict:
        """:func:`decide` under these thresholds: the routing port a turn is given
        (``support.conversation.ports.RoutingPort``)."""
        return decide(
            wants_human=wants_human, confidence=confidence, urgency=urgency, message=message,
            intent=intent, sentiment=sentiment, history=history, policy=self,
        )  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """Answer, or hand off with a reason code."""

    answer: bool
    reason: str


def _normal(text: str) -> str:
    return " ".join(text.lower().replace("’", "'").split())


def asks_for_human(text: str) -> bool:
    """Phrases like "talk to a person" always hand off, whatever the model thinks."""
    lowered = _normal(text)
    return any(phrase in lowered for phrase in HUMAN_PHRASES)


def says_not_helped(text: str) -> bool:
    """The customer says the answer did not help."""
    lowered = _normal(text)
    return any(phrase in lowered for phrase in NOT_HELPED_PHRASES)


def similarity(a: str, b: str) -> float:
    """Word-set overlap (Jaccard) of two messages, 0..1; short filler words count like any other."""
    wa, wb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


def bot_turns_in_a_row(history: Sequence[tuple[str, str]]) -> int:
    """Bot answers since the last agent message (history is ``(role, text)``, oldest first)."""
    count = 0
    for role, _text in reversed(history):
        if role == "agent":
            break
        if role == "assistant":
            count += 1
    return count


def repeats_after_answer(message: str, history: Sequence[tuple[str, str]], min_similarity: float) -> bool:
    """The customer asks again what they asked before a bot answer."""
    answered = False
    for role, text in reversed(history):
        if role == "assistant":
            answered = True
        elif role == "customer" and answered and similarity(message, text) >= min_similarity:
            return True
    return False


def decide(
    *,
    wants_human: bool,
    confidence: float,
    urgency: str | None,
    message: str,
    intent: str | None = None,
    sentiment: str | None = None,
    history: Sequence[tuple[str, str]] = (),
    policy: RoutingPolicy | None = None,
) -> Verdict:
    """The routing verdict for one turn. ``history`` holds ``(role, text)`` before this message."""
    policy = policy or RoutingPolicy()
    if wants_human or asks_for_human(message):
        return Verdict(False, Reason.WANTS_HUMAN)
    if urgency == "urgent":
        return Verdict(False, Reason.URGENT)
    bot_turns = bot_turns_in_a_row(history)
    if bot_turns and (
        says_not_helped(message) or repeats_after_answer(message, history, policy.repeat_similarity)
    ):
        return Verdict(False, Reason.NOT_HELPED)
    if policy.negative_sentiment and sentiment == "negative" and bot_turns:
        return Verdict(False, Reason.NEGATIVE_SENTIMENT)
    if bot_turns >= policy.max_bot_turns:
        return Verdict(False, Reason.TOO_MANY_BOT_TURNS)
    if confidence < policy.threshold_for(intent):
        return Verdict(False, Reason.LOW_CONFIDENCE)
    return Verdict(True, Reason.CONFIDENT)


PRIORITIES = ("urgent", "high", "normal", "low")


def priority_of(*, reason: str, urgency: str | None, sentiment: str | None) -> str:
    """Queue priority of a handoff: urgency first; an upset or unhelped customer waits at least at
    ``high``. (A lapsed claim keeps its original place in the queue, so it needs no priority of its own.)"""
    if urgency == "urgent" or reason == Reason.URGENT:
        return "urgent"
    if urgency == "high" or sentiment == "negative" or reason == Reason.NOT_HELPED:
        return "high"
    if urgency == "low":
        return "low"
    return "normal"
