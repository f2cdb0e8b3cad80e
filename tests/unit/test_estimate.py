"""The budget's prompt-size estimate: close to the JSON the SDK sends, without serialising it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support.llm.answer import build_answer_request
from support.llm.gateway import CHARS_PER_TOKEN, estimate_input_tokens
from support.llm.policy import load_policy

POLICY = Path(__file__).resolve().parents[2] / "support" / "policy" / "sample_policy.md"


def test_the_estimate_is_within_a_few_percent_of_the_serialised_request() -> None:
    request: dict[str, Any] = build_answer_request(
        policy=load_policy(POLICY),
        curated_examples=[],
        summary="The customer asked about returns.",
        history=[("user", "Can I return my tent?"), ("assistant", "Yes, within 30 days \u2014 unused.")],
        retrieved_examples=[],
        message="It was used once, is that a problem?",
        model="claude-sonnet-4-6",
        max_tokens=1024,
        system_cache_ttl="5m",
    )
    serialised = sum(
        len(json.dumps(request[part])) for part in ("system", "messages", "tools") if request.get(part)
    )
    estimate = estimate_input_tokens(request) * CHARS_PER_TOKEN
    assert abs(estimate - serialised) / serialised < 0.05


def test_strings_numbers_and_nothing_are_counted() -> None:
    assert estimate_input_tokens({}) == 1
    assert estimate_input_tokens({"system": "x" * 398}) == 101  # 398 chars + 2 quotes = 400 -> 100, +1
    assert estimate_input_tokens({"messages": [{"role": "user", "content": 12345}]}) > 1
