"""When a turn goes to a human, and why: a pure policy over the triage verdict.

The full routing policy (per-intent thresholds, history signals) is the handoff issue's; this is the
part the conversation core needs: wants_human, urgency and confidence against a threshold, each
handoff with a reason code.
"""

from __future__ import annotations

from dataclasses import dataclass

# Below this "answerable from policy" confidence the bot does not answer: a wrong confident answer costs
# a support team more than a short wait for a person.
DEFAULT_CONFIDENCE_THRESHOLD = 0.6

HUMAN_PHRASES = (
    "talk to a person", "talk to a human", "speak to a person", "speak to a human", "real person",
    "human agent", "speak to someone", "talk to someone", "customer service agent", "an agent please",
)  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """Answer, or hand off with a reason code."""

    answer: bool
    reason: str


def asks_for_human(text: str) -> bool:
    """Phrases like "talk to a person" always hand off, whatever the model thinks."""
    lowered = " ".join(text.lower().split())
    return any(phrase in lowered for phrase in HUMAN_PHRASES)


def decide(
    *, wants_human: bool, confidence: float, urgency: str | None, message: str,
    threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
) -> Verdict:  # fmt: skip
    """The routing verdict for one turn."""
    if wants_human or asks_for_human(message):
        return Verdict(False, "wants_human")
    if urgency == "urgent":
        return Verdict(False, "urgent")
    if confidence < threshold:
        return Verdict(False, "low_confidence")
    return Verdict(True, "confident")
