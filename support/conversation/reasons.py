"""Handoff reason codes in words: what agents and report readers see next to each code.

Shared by the console (``handoff``) and the reports (``support.reports``); it lives on the conversation
side so that reports need not import ``handoff`` (layers run one way: handoff -> support)."""

from __future__ import annotations

from collections.abc import Mapping

# What agents read next to each code (routing's codes and the engine's own).
REASON_TEXT: Mapping[str, str] = {
    "wants_human": "Customer asked for a person",
    "customer_request": "Customer pressed “talk to a person”",
    "urgent": "Urgent (safety, fraud or money at stake)",
    "not_helped": "Bot answers did not help",
    "negative_sentiment": "Customer is upset",
    "too_many_bot_turns": "Long conversation with the bot, not resolved",
    "low_confidence": "Bot not confident enough to answer",
    "draft_declined": "Bot declined: not covered by the policy",
    "ungrounded": "Bot answer not grounded in the policy",
    "draft_failed": "Model unavailable",
    "timeout": "Answer took too long",
}
